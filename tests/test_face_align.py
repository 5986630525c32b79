"""MTCNN detection and alignment on generated faces pasted into larger pictures, with planted positions and scales."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tlgan.photos import align, detect, paste
from tlgan.errors import TlganError
from tlgan.imaging import to_pil
from tlgan.models.extractors.mtcnn import nms
from tlgan.sampling.latents import latent_for_seed


@pytest.fixture(scope="module")
def detector():
    from tlgan.models.extractors.mtcnn import load_mtcnn

    return load_mtcnn("cpu")


@pytest.fixture(scope="module")
def layout(digiface, detector, tmp_path_factory):
    # The same cache folder as the CLI and web tests: the default layout is measured once per test session.
    return align.face_layout(digiface, detector, directory=tmp_path_factory.getbasetemp() / "tlgan-cache" / "layouts")


def _face(generator, seed: int) -> torch.Tensor:
    with torch.inference_mode():
        return generator.synthesize(latent_for_seed(seed, generator.latent_dim)[None])[0]


def _native_points(detector, face: torch.Tensor) -> torch.Tensor:
    """The face's landmarks in generator pixels, found the way the layout is measured (4x, reflect-padded)."""
    big = torch.nn.functional.interpolate(face[None], scale_factor=4, mode="bicubic", align_corners=False).clamp(-1, 1)
    big = torch.nn.functional.pad(big, (128, 128, 128, 128), mode="reflect")[0]
    found = detector.detect((big + 1) * 127.5, min_face=100)
    return (torch.tensor(found[0].points, dtype=torch.float64) - 128) / 4


def _photo(faces: list[tuple[torch.Tensor, int, tuple[int, int]]], size=(640, 480), seed=0) -> Image.Image:
    """A random-noise background with each (face, side, (x, y)) pasted in."""
    rng = np.random.default_rng(seed)
    photo = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    for face, side, xy in faces:
        photo.paste(to_pil(face, side), xy)
    return photo


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4.0]])
    scores = torch.tensor([0.8, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]        # box 0 overlaps box 1 (IoU 0.68)
    assert nms(boxes, scores, 0.5, "min").tolist() == [1, 2]    # box 3 lies inside box 1: overlap-over-min 1
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_similarity_fit_recovers_a_planted_transform() -> None:
    angle, scale, shift = math.radians(20), 1.7, torch.tensor([5.0, -3.0], dtype=torch.float64)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    src = torch.tensor([[10, 10], [30, 12], [20, 25], [12, 35], [28, 36.0]], dtype=torch.float64)
    dst = src @ (scale * rot).T + shift
    m = align.fit_similarity(src, dst)
    assert torch.allclose(align.apply(m, src), dst, atol=1e-9)
    assert align.scale_of(m) == pytest.approx(scale)
    back = align.apply(align.invert_similarity(m), dst)
    assert torch.allclose(back, src, atol=1e-9)
    with pytest.raises(TlganError, match="degenerate"):
        align.fit_similarity(torch.zeros(5, 2), dst)


def test_layout_is_measured_once_and_cached(digiface, detector, layout, tmp_path, monkeypatch) -> None:
    assert layout.resolution == 64 and layout.faces >= 16
    (lx, ly), (rx, ry), (nx, ny) = layout.points[:3]
    assert lx < nx < rx and ny > max(ly, ry)                       # eyes either side of and above the nose
    first = align.face_layout(digiface, detector, n=8, directory=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    monkeypatch.setattr(align, "measure_layout", lambda *a, **k: pytest.fail("measured again"))
    assert align.face_layout(digiface, detector, n=8, directory=tmp_path) == first


@pytest.mark.parametrize("side,xy", [(256, (300, 150)), (192, (40, 260))])
def test_detection_recovers_position_and_scale(digiface, detector, layout, side, xy) -> None:
    face = _face(digiface, 1001)
    native = _native_points(detector, face)
    photo = _photo([(face, side, xy)])
    faces = detect.find_faces(photo, detector)
    assert len(faces) == 1
    points = torch.tensor(faces[0].points, dtype=torch.float64)
    expected = native * side / 64 + torch.tensor(xy, dtype=torch.float64)
    assert (points - expected).norm(dim=1).max() < 0.03 * side        # within 3% of the face's size
    # The alignment maps the photo face onto the generator frame as the native face is mapped.
    m_photo = align.alignment(faces[0], layout)
    m_native = align.fit_similarity(native, layout.tensor())
    assert align.scale_of(m_photo) == pytest.approx(align.scale_of(m_native) * 64 / side, rel=0.05)
    origin = align.apply(m_photo, torch.tensor(xy, dtype=torch.float64))   # the pasted square's corner
    assert (origin - align.apply(m_native, torch.zeros(2, dtype=torch.float64))).norm() < 2.5   # of 64 px
    crop = align.warp_face(photo, m_photo, 64)
    reference = align.warp_face(to_pil(face), m_native, 64)
    centres = torch.arange(64, dtype=torch.float64) + 0.5
    uv = torch.stack(torch.meshgrid(centres, centres, indexing="ij")[::-1], -1)
    inside = paste.face_mask(uv, layout) > 0.5                              # the face, not the background
    assert float(((crop - reference) ** 2)[:, inside].mean()) < 0.02        # the same aligned face (PSNR > 23 dB)


def test_several_faces_largest_first_and_face_index(digiface, detector) -> None:
    photo = _photo([(_face(digiface, 1002), 160, (40, 60)), (_face(digiface, 1003), 260, (330, 120))])
    faces = detect.find_faces(photo, detector)
    assert len(faces) == 2
    assert faces[0].box[0] > 300 and faces[1].box[0] < 200
    assert detect.pick_face(faces, None) is faces[0]
    assert detect.pick_face(faces, 1) is faces[1]
    with pytest.raises(TlganError, match="has 2 face"):
        detect.pick_face(faces, 2)


def test_no_face_is_a_clear_error(detector) -> None:
    photo = _photo([], size=(320, 240))
    with pytest.raises(TlganError, match="no face found in beach.jpg"):
        detect.pick_face(detect.find_faces(photo, detector), None, "beach.jpg")


@pytest.mark.slow
def test_huge_photo_is_detected_on_a_bounded_copy(digiface, detector, monkeypatch) -> None:
    photo = Image.new("RGB", (8000, 6000), (90, 110, 130))
    photo.paste(to_pil(_face(digiface, 1001), 1600), (5000, 2500))
    seen = []
    original = detector.detect
    monkeypatch.setattr(detector, "detect", lambda image, **k: seen.append(tuple(image.shape)) or original(image, **k))
    start = time.perf_counter()
    faces = detect.find_faces(photo, detector)
    elapsed = time.perf_counter() - start
    assert seen == [(3, 768, 1024)]                        # the detector never saw more than max_side pixels
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 4900 < x1 < 5400 and 2400 < y1 < 3200 and 1000 < x2 - x1 < 1800   # in the full photo's pixels
    assert elapsed < 60


def test_paste_back_keeps_size_and_untouched_pixels(digiface, detector, layout) -> None:
    face = _face(digiface, 1001)
    photo = _photo([(face, 256, (300, 150))])
    m = align.alignment(detect.find_faces(photo, detector)[0], layout)
    edited = -face  # a very different face, so every masked pixel changes
    out = paste.paste_back(photo, edited, m, layout)
    assert out.size == photo.size
    before, after = np.asarray(photo).astype(int), np.asarray(out).astype(int)
    changed = np.abs(before - after).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    # Only pixels whose generator-frame position lies where the mask is positive may change.
    grid = torch.stack(torch.meshgrid(torch.arange(480) + 0.5, torch.arange(640) + 0.5, indexing="ij")[::-1], -1)
    mask = paste.face_mask(align.apply(m, grid.double()), layout).numpy()
    assert not changed[mask == 0].any()
    assert changed[mask > 0.5].mean() > 0.95
    assert 280 <= xs.min() and xs.max() < 576 and 130 <= ys.min() and ys.max() < 426   # around the pasted square


def test_exif_rotated_photo_is_found_upright(digiface, detector) -> None:
    import io

    from tlgan.photos import open_photo

    upright = _photo([(_face(digiface, 1001), 200, (100, 60))], size=(400, 320))
    stored = upright.transpose(Image.Transpose.ROTATE_90)       # what a phone held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6                                             # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    photo = open_photo(buffer.getvalue())
    assert photo.size == upright.size
    faces = detect.find_faces(photo.image, detector)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert abs((x1 + x2) / 2 - 200) < 25 and abs((y1 + y2) / 2 - 160) < 30   # where the upright face is
    (lx, ly), (rx, ry) = faces[0].points[:2]
    assert abs(ry - ly) < 0.2 * (rx - lx)                        # eyes level: the face is upright


def test_paste_back_into_a_grey_photo_stays_grey(digiface, detector, layout) -> None:
    face = _face(digiface, 1001)
    photo = _photo([(face, 256, (300, 150))]).convert("L").convert("RGB")
    m = align.alignment(detect.find_faces(photo, detector)[0], layout)
    out = np.asarray(paste.paste_back(photo, face, m, layout)).astype(int)
    assert np.abs(out - out.mean(axis=2, keepdims=True)).max() <= 1
