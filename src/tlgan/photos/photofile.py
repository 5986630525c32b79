"""Reading users' photos safely: one function that turns a file or upload into an upright 8-bit RGB picture.

Photos come from anywhere (phones, scanners, the web), so decoding is defensive:
only whitelisted formats are opened; the pixel count is checked from the
header before any pixels are decoded (Pillow's decompression-bomb guard, with a
tlgan limit); truncated or corrupt files become one-line TlganErrors; EXIF
orientation is applied; CMYK (through its ICC profile when it has one),
16-bit, palette, grey+alpha and alpha images are converted to RGB properly
(alpha composited on white, 16-bit scaled rather than clipped). The photo's
ICC profile is kept so that outputs can carry it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tlgan.errors import TlganError

# Formats a photo may come in (phones' MPO files open through the JPEG decoder).
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
MAX_PIXELS = 50_000_000        # 50 MP: a 8660x5770 camera photo; larger is refused before decoding
MAX_BYTES = 64 * 1024 * 1024   # files above this are refused before opening


@dataclass
class Photo:
    """An upright RGB photo: ``image`` (PIL, mode RGB, 8 bit), the ICC profile bytes it came with (or None)."""

    image: Image.Image
    icc_profile: bytes | None
    source_format: str
    name: str = "photo"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after EXIF orientation."""
        return self.image.size

    def array(self) -> np.ndarray:
        """(H, W, 3) uint8 pixels."""
        return np.asarray(self.image)


def open_photo(source: str | Path | bytes, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES,
               name: str | None = None) -> Photo:
    """Decode a photo file (path) or upload (bytes) into an upright 8-bit RGB Photo, or raise one-line TlganError."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "upload"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise TlganError(f"photo {label} does not exist")
        if path.stat().st_size > max_bytes:
            raise TlganError(f"photo {label} is {path.stat().st_size / 2**20:.0f} MiB; the limit is {max_bytes // 2**20} MiB")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise TlganError(f"photo {label} is {len(data) / 2**20:.0f} MiB; the limit is {max_bytes // 2**20} MiB")
    if not data:
        raise TlganError(f"photo {label} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
            width, height = im.size
            if width * height > max_pixels:
                raise TlganError(f"photo {label} has {width}x{height} = {width * height / 1e6:.0f} MP; "
                                 f"the limit is {max_pixels / 1e6:.0f} MP (downscale it first)")
            fmt = im.format or "?"
            im.load()
            icc = im.info.get("icc_profile")
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, icc)
    except TlganError:
        raise
    except UnidentifiedImageError:
        raise TlganError(f"{label} is not an image in a supported format ({', '.join(PHOTO_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TlganError(f"photo {label} is too large to decode safely (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's truncated/corrupt-file errors
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise TlganError(f"cannot decode photo {label}: {reason} (truncated or corrupt file?)") from None
    # Only an RGB profile describes the RGB pixels returned (CMYK was converted to sRGB, grey to RGB).
    keep = icc if icc and len(icc) >= 20 and icc[16:20] == b"RGB " else None
    return Photo(rgb, keep, fmt, label)


def _to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Any decoded Pillow mode -> 8-bit RGB, alpha composited on white, high bit depths scaled (not clipped)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "CMYK":
        out = None
        if icc:
            try:
                from PIL import ImageCms

                profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                out = ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
            except Exception:  # a broken embedded profile: fall back to Pillow's plain conversion
                out = None
        return out or im.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255) else 255.0
        if mode == "F":
            top = max(1.0, float(a.max(initial=1.0)))
        grey = np.clip(np.round(a / top * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, YCbCr, LAB, HSV


def save_photo(image: Image.Image, path: str | Path, icc_profile: bytes | None = None, quality: int = 95) -> None:
    """Write a photo atomically at full size; format from the extension (.jpg/.jpeg/.png/.webp), ICC profile kept."""
    from tlgan.atomic import atomic_path

    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG"}.get(suffix)
    if fmt is None:
        raise TlganError(f"output must end in .jpg, .png or .webp: {path}")
    options: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=quality)
    with atomic_path(path) as tmp:
        image.save(tmp, fmt, **options)


def encode_photo(image: Image.Image, icc_profile: bytes | None = None, fmt: str = "JPEG", quality: int = 95) -> bytes:
    """The bytes of ``image`` as JPEG (or PNG) with the ICC profile kept: for downloads."""
    buffer = io.BytesIO()
    options: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
