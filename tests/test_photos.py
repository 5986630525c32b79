"""Safe photo decoding: every bad or unusual input becomes an upright RGB picture or a one-line error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from tlgan.errors import TlganError
from tlgan.photos import encode_photo, open_photo, save_photo


def _bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _one_line_error(source, **kwargs) -> str:
    with pytest.raises(TlganError) as info:
        open_photo(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_not_an_image(tmp_path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello, this is not a photo")
    assert "not an image" in _one_line_error(path)
    assert "does not exist" in _one_line_error(tmp_path / "missing.jpg")
    assert "empty" in _one_line_error(b"")


def test_format_outside_the_whitelist_is_refused() -> None:
    ppm = _bytes(Image.new("RGB", (8, 8), "red"), "PPM")
    assert Image.open(io.BytesIO(ppm)).format == "PPM"  # Pillow itself would read it
    assert "not an image in a supported format" in _one_line_error(ppm)


def test_truncated_file() -> None:
    rng = np.random.default_rng(0)
    data = _bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG", quality=90)
    assert "truncated" in _one_line_error(data[: len(data) // 2])
    png = _bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    assert "truncated" in _one_line_error(png[: len(png) // 2])


def test_decompression_bomb_refused_before_decoding() -> None:
    big = _bytes(Image.new("1", (8_000, 8_000)), "PNG")  # 64 MP in a few kB: over tlgan's 50 MP limit
    assert len(big) < 100_000
    message = _one_line_error(big)
    assert "64 MP" in message and "limit" in message
    # Far beyond: Pillow's own guard fires while reading the header, turned into the same kind of error.
    bomb = _bytes(Image.new("1", (15_000, 15_000)), "PNG")
    assert "decompression bomb" in _one_line_error(bomb, max_pixels=10**9)


def test_size_limit_on_bytes() -> None:
    data = _bytes(Image.new("RGB", (32, 32), "blue"), "PNG")
    assert "limit" in _one_line_error(data, max_bytes=10)


def test_cmyk_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    photo = open_photo(_bytes(cmyk, "JPEG", quality=95))
    assert photo.image.mode == "RGB"
    r, g, b = photo.array().reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60
    assert photo.icc_profile is None  # a CMYK profile does not describe the RGB pixels


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    photo = open_photo(_bytes(Image.fromarray(values), "PNG"))
    assert photo.image.mode == "RGB"
    row = photo.array()[0, :, 0].tolist()
    assert row == [0, 64, 128, 255]


def test_palette_with_transparency_and_grey_alpha_are_composited_on_white() -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    photo = open_photo(_bytes(pal, "PNG", transparency=0))
    pixels = photo.array()
    assert pixels[0, 0].tolist() == [0, 0, 255]       # opaque blue palette entry
    assert pixels[1, 1].tolist() == [255, 255, 255]   # transparent red -> white background
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (50, 255))
    pixels = open_photo(_bytes(la, "PNG")).array()
    assert pixels[0, 0].tolist() == [50, 50, 50] and pixels[2, 2].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 8, 8))              # red block at the stored image's top-left
    exif = Image.Exif()
    exif[0x0112] = 6                                      # display rotated 90° clockwise
    photo = open_photo(_bytes(image, "JPEG", quality=95, exif=exif.tobytes()))
    assert photo.size == (20, 40)
    pixels = photo.array()
    assert pixels[2, 17, 0] > 200 and pixels[2, 17, 1] < 80   # the block is now at the top-right
    assert pixels[37, 2, 1] > 200


def test_icc_profile_is_kept_through_save(tmp_path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = open_photo(_bytes(Image.new("RGB", (8, 8), "green"), "JPEG", icc_profile=icc))
    assert photo.icc_profile == icc
    out = tmp_path / "out.jpg"
    save_photo(photo.image, out, photo.icc_profile)
    assert Image.open(out).info.get("icc_profile") == icc
    assert Image.open(io.BytesIO(encode_photo(photo.image, photo.icc_profile))).info.get("icc_profile") == icc
    with pytest.raises(TlganError, match="must end in"):
        save_photo(photo.image, tmp_path / "out.gif")
