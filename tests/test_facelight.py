"""Face-region light and colour: CIE Lab conversion, the landmark ellipse, and readings on planted pictures."""

from __future__ import annotations

import pytest
import torch

from tlgan.models.extractors import load_extractor
from tlgan.models.extractors.facelight import HEAD, SKIN, SURROUND, ellipse_radius, region_light, srgb_to_lab


def test_srgb_to_lab_matches_reference_colours():
    # CIE Lab (D65) of sRGB primaries and greys, as published colour tables give them
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                        [0.5, 0.5, 0.5]])
    expected = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18],
                             [32.30, 79.19, -107.86], [53.39, 0.0, 0.0]])
    lab = srgb_to_lab(rgb[:, :, None, None])[:, :, 0, 0]
    assert torch.allclose(lab, expected, atol=0.05)


def points_of(eye_l, eye_r, mouth_l, mouth_r, nose=None) -> torch.Tensor:
    nose = nose or ((eye_l[0] + eye_r[0]) / 2, (eye_l[1] + mouth_l[1]) / 2)
    return torch.tensor([[eye_l, eye_r, nose, mouth_l, mouth_r]], dtype=torch.float32)


def test_the_ellipse_sits_between_eyes_and_mouth_and_turns_with_the_eye_line():
    # eyes 20 px apart at y 24, mouth 20 px below: centre (32, 34), half-axes 0.85*20 across, 1.0*20 down
    r2 = ellipse_radius(points_of((22, 24), (42, 24), (25, 44), (39, 44)), (64, 64), HEAD)[0]
    assert r2.shape == (64, 64)
    # pixel centres are at k + 0.5: pixel (row 33, col 31) is at (31.5, 33.5), next to the centre
    assert float(r2[33, 31]) < 0.01
    across, down = HEAD.half_width * 20, HEAD.half_height * 20
    assert float(r2[33, 31 + round(across)]) == pytest.approx(((31.5 + round(across) - 32) / across) ** 2 + (0.5 / down) ** 2, abs=1e-5)
    # rotating the face by 90° (eye line vertical) swaps which image direction is 'across'
    rotated = ellipse_radius(points_of((42, 22), (42, 42), (22, 25), (22, 39)), (64, 64), HEAD)[0]
    centre = (32, 32)  # eyes' midpoint (42, 32), mouth's (22, 32)
    assert float(rotated[centre[1] + 10, centre[0]]) == pytest.approx((10.5 / across) ** 2 + (0.5 / down) ** 2, abs=1e-4)


def test_readings_of_a_planted_face_and_background():
    points = points_of((22, 24), (42, 24), (25, 44), (39, 44))
    r2 = ellipse_radius(points, (64, 64), HEAD)[0]
    face_rgb = torch.tensor([0.8, 0.6, 0.5])    # a light skin colour
    back_rgb = torch.tensor([0.1, 0.2, 0.3])
    # the face colour reaches halfway from the face ellipse to the surround's edge, the background the rest
    image = torch.where((r2 < ((1 + SURROUND) / 2) ** 2)[None], face_rgb[:, None, None], back_rgb[:, None, None])[None] * 2 - 1
    light, red, yellow, surround = region_light(image, points)[0].tolist()
    face_lab = srgb_to_lab(face_rgb[None, :, None, None])[0, :, 0, 0].tolist()
    back_lab = srgb_to_lab(back_rgb[None, :, None, None])[0, :, 0, 0].tolist()
    # soft mask edges leak a little of the other region in: within 0.5 Lab units
    assert light == pytest.approx(face_lab[0], abs=0.5) and red == pytest.approx(face_lab[1], abs=0.5)
    assert yellow == pytest.approx(face_lab[2], abs=0.5) and surround == pytest.approx(back_lab[0], abs=0.5)


def test_the_skin_region_leaves_out_eyes_and_mouth():
    # a face of skin colour whose eyes and mouth (teeth) are white: the skin readings see only the skin
    points = points_of((22, 24), (42, 24), (25, 44), (39, 44))
    skin_rgb = torch.tensor([0.7, 0.5, 0.4])
    image = skin_rgb[:, None, None].expand(3, 64, 64).clone()
    for x, y in ((22, 24), (42, 24)):
        image[:, y - 2:y + 3, x - 4:x + 5] = 1.0
    image[:, 42:48, 25:40] = 1.0
    light, red, yellow, _ = region_light(image[None] * 2 - 1, points)[0].tolist()
    skin_lab = srgb_to_lab(skin_rgb[None, :, None, None])[0, :, 0, 0].tolist()
    # the soft edge lets in a trace of the white (0.1% of the weight: < 0.2 L*; read, it would be several L*)
    assert [light, red, yellow] == pytest.approx(skin_lab, abs=0.2)
    # the skin ellipse is centred SKIN.down of the way from the eyes to the mouth: (32, 24 + 0.45 * 20) = (32, 33)
    r2 = ellipse_radius(points, (64, 64), SKIN)[0]
    assert float(r2[32, 31]) < 0.02 and float(r2[24, 22]) > 1 and float(r2[44, 32]) > 1


def test_the_extractor_reads_generated_faces_differentiably(digiface):
    extractor = load_extractor("facelight", "cpu")
    assert extractor.feature_names == ["face_light", "face_red", "face_yellow", "surround_light"]
    z = torch.randn(4, digiface.latent_dim, generator=torch.Generator().manual_seed(5))
    images = digiface(z).detach().requires_grad_(True)
    readings = extractor(images)
    assert readings.shape == (4, 4) and bool(torch.isfinite(readings).all())
    assert bool(((readings[:, 0] >= 0) & (readings[:, 0] <= 100)).all())
    readings[:, 0].sum().backward()
    assert float(images.grad.abs().sum()) > 0
    # brighter pixels on the face raise face_light
    with torch.no_grad():
        brighter = extractor((images + 0.2).clamp(-1, 1))
    assert bool((brighter[:, 0] > readings[:, 0].detach()).all())


def test_facelight_takes_an_onet_file_and_names_a_missing_one(tmp_path):
    from tlgan.errors import TlganError

    with pytest.raises(TlganError, match="facelight: .*does not exist"):
        load_extractor(f"facelight:{tmp_path / 'none.pt'}", "cpu")
