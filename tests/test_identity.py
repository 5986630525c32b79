"""The identity reading: tlgan's reader of dlib's network files, the PyTorch port of dlib's face-recognition
ResNet, and dlib-style alignment, checked against dlib itself (dlib-bin, test-only)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _dlib_files import enc_float, enc_int, face_resnet_bytes, face_resnet_layers, net_bytes
from tlgan.errors import TlganError
from tlgan.models.extractors.identity import (CHIP_SIZE, IdentityModel, build_resnet, chip_template, dlib_chip_affine,
                                              fit_similarity, identity_distance, sample_chips)
from tlgan.models.formats.dlib_dnn import parse_dlib_net, read_dlib_net
from tlgan.sampling.latents import latent_for_seed

DLIB_5 = np.array([(0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                   (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                   (0.4901123135679, 0.6277975316475)])


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------- the format, on planted files


@pytest.mark.parametrize("value", [0, 1, 2, 255, 256, -1, -300, 2**40, -(2**62)])
def test_integer_encoding_round_trips(value):
    from tlgan.models.formats.dlib_dnn import _Reader

    assert _Reader(enc_int(value), "x").integer("v") == value


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 0.04, 122.782, 1e-7, -3.0e5])
def test_float_encoding_round_trips(value):
    from tlgan.models.formats.dlib_dnn import _Reader

    assert _Reader(enc_float(value), "x").real("v") == pytest.approx(value, rel=1e-6, abs=0)


def test_planted_network_is_read_layer_by_layer():
    layers = face_resnet_layers(seed=3)
    net = parse_dlib_net(net_bytes(layers, mean=(10.0, 20.0, 30.0)), "planted")
    assert net.loss == "loss_metric" and net.loss_config["distance_threshold"] == pytest.approx(0.6)
    assert net.input == "input_rgb_image_sized" and (net.input_config["nr"], net.input_config["nc"]) == (150, 150)
    assert (net.input_config["avg_red"], net.input_config["avg_blue"]) == pytest.approx((10.0, 30.0))
    assert net.kinds() == [layer[0] for layer in layers]
    for planted, read in zip(layers, net.layers):
        if planted[0] == "con":
            np.testing.assert_array_equal(read.weights["filters"], planted[1])
            np.testing.assert_array_equal(read.weights["biases"], planted[2])
            assert (read.config["stride_y"], read.config["padding_x"]) == (planted[3], planted[4])
        elif planted[0] == "affine":
            np.testing.assert_array_equal(read.weights["gamma"], planted[1])
            np.testing.assert_array_equal(read.weights["beta"], planted[2])
        elif planted[0] == "fc":
            np.testing.assert_array_equal(read.weights["weights"], planted[1])
            assert not read.config["use_bias"]


def test_planted_port_matches_dlib():
    dlib = pytest.importorskip("dlib")
    data = face_resnet_bytes(seed=1)
    net = build_resnet(parse_dlib_net(data, "planted"))
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dat") as handle:
        handle.write(data)
        handle.flush()
        rec = dlib.face_recognition_model_v1(handle.name)
        rng = np.random.default_rng(0)
        for _ in range(2):
            chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
            ref = np.array(rec.compute_face_descriptor(chip))
            with torch.no_grad():
                ours = net(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
            assert ref.shape == ours.shape == (8,)
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_batch_norm_records_are_read_as_the_affine_layers_dlib_makes_of_them(tmp_path):
    dlib = pytest.importorskip("dlib")
    layers = face_resnet_layers(seed=2)
    rng = np.random.default_rng(5)
    k = layers[1][1].size
    mean, var = rng.normal(0, 0.5, k).astype(np.float32), rng.uniform(0.2, 2.0, k).astype(np.float32)
    layers[1] = ("bn", layers[1][1], layers[1][2], mean, var, 1e-5)
    path = tmp_path / "bn.dat"
    path.write_bytes(net_bytes(layers))
    read = read_dlib_net(path).layers[1]
    assert read.kind == "affine"
    np.testing.assert_allclose(read.weights["gamma"], layers[1][1] / np.sqrt(var + 1e-5), rtol=1e-6)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    with torch.no_grad():
        ours = build_resnet(read_dlib_net(path))(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
    ref = np.array(dlib.face_recognition_model_v1(str(path)).compute_face_descriptor(chip))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_other_dlib_files_are_refused_in_one_line():
    from tlgan.assets import package_file

    for name, words in (("shape_predictor_5_face_landmarks.dat", "not a readable dlib network"),
                        ("mmod_human_face_detector.dat", "unsupported loss layer 'loss_mmod")):
        try:
            path = package_file("face_recognition_models", f"models/{name}")
        except TlganError:
            pytest.skip("face-recognition-models is not installed")
        with pytest.raises(TlganError) as exc:
            read_dlib_net(path)
        assert words in _one_line(exc)


def test_truncated_files_are_one_line_errors(tmp_path):
    data = face_resnet_bytes(seed=0)
    for cut in (1, 2, 17, 60, len(data) // 3, len(data) // 2, len(data) - 5, len(data) - 1):
        path = tmp_path / f"cut{cut}.dat"
        path.write_bytes(data[:cut])
        with pytest.raises(TlganError) as exc:
            read_dlib_net(path)
        assert str(path) in _one_line(exc)


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a readable dlib network"),
    (b"BZh91AY&SY" + bytes(50), "bzip2"),
    (b"\x01\x01\x01\x05hello", "unsupported loss"),
    (b"", "empty"),
])
def test_foreign_files_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "foreign.dat"
    path.write_bytes(content)
    with pytest.raises(TlganError) as exc:
        read_dlib_net(path)
    assert words in _one_line(exc)


def test_trailing_bytes_and_huge_tensors_are_refused(tmp_path):
    data = face_resnet_bytes(seed=0)
    with pytest.raises(TlganError, match="unexpected bytes"):
        parse_dlib_net(data + b"\x00", "extra")
    # A tensor header claiming 2**40 values is refused from the header, before anything is allocated.
    marker = enc_int(2) + enc_int(3 * 7 * 7 * 3 + 3)
    at = data.index(marker)
    forged = data[:at] + enc_int(2) + enc_int(2**40) + data[at + len(marker):]
    with pytest.raises(TlganError) as exc:
        parse_dlib_net(forged, "forged")
    assert "truncated" in _one_line(exc)
    with pytest.raises(TlganError):
        read_dlib_net(tmp_path / "missing.dat")


def test_a_network_of_another_layout_is_refused():
    layers = face_resnet_layers(seed=0)
    del layers[2]                                   # the stem's relu
    with pytest.raises(TlganError) as exc:
        build_resnet(parse_dlib_net(net_bytes(layers), "other"))
    assert "not dlib's face-recognition ResNet" in _one_line(exc)


# ---------------------------------------------------------------- alignment math


def test_fit_similarity_recovers_a_planted_transform():
    angle, scale, shift = 0.3, 1.7, torch.tensor([5.0, -2.0], dtype=torch.float64)
    rot = scale * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    src = chip_template()
    dst = src @ rot.T + shift
    m = fit_similarity(src, dst)
    torch.testing.assert_close(m[:, :2], rot)
    torch.testing.assert_close(m[:, 2], shift)


def test_sample_chips_reads_the_pixels_the_affine_points_at():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(1, 3, 20, 30)
    affine = torch.tensor([[[1.0, 0.0, 4.0], [0.0, 1.0, 3.0]]])     # chip pixel (u, v) -> image pixel (u + 4, v + 3)
    chip = sample_chips(image, affine, size=10)
    torch.testing.assert_close(chip, image[:, :, 3:13, 4:14])
    # Outside the image reads 0 (black), as dlib's chips do.
    far = sample_chips(image, torch.tensor([[[1.0, 0.0, 100.0], [0.0, 1.0, 100.0]]]), size=4)
    assert far.abs().max() == 0


def test_each_chip_in_a_batch_goes_down_its_own_pyramid_level():
    images = torch.rand(2, 3, 400, 400, generator=torch.Generator().manual_seed(0)) * 255
    near = torch.tensor([[0.8, 0.0, 100.0], [0.0, 0.8, 100.0]])
    far = torch.tensor([[2.5, 0.0, 10.0], [0.0, 2.5, 10.0]])     # shrinks 2.5x: one pyramid level
    batch = sample_chips(images, torch.stack([near, far]), size=40)
    torch.testing.assert_close(batch[0:1], sample_chips(images[0:1], near[None], size=40))
    torch.testing.assert_close(batch[1:2], sample_chips(images[1:2], far[None], size=40))
    # The pyramid level blurs: the shrunk chip of noise varies far less than the unshrunk one.
    assert batch[1].std() < 0.6 * batch[0].std()


# ---------------------------------------------------------------- the real model (slow: 22 MB file)


@pytest.fixture(scope="module")
def identity():
    from tlgan.models.extractors.identity import load_identity

    return load_identity("cpu")


@pytest.fixture(scope="module")
def dlib_models():
    dlib = pytest.importorskip("dlib")
    from tlgan.assets import package_file

    rec = dlib.face_recognition_model_v1(
        str(package_file("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")))
    sp = dlib.shape_predictor(str(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat")))
    return dlib, rec, sp


@pytest.fixture(scope="module")
def faces(digiface):
    z = torch.stack([latent_for_seed(s, digiface.latent_dim) for s in range(24)])
    with torch.no_grad():
        return digiface(z)


def _uint8(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(((image.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy())


@pytest.mark.slow
def test_port_matches_dlib_on_chips_of_generated_faces_and_a_photo(identity, dlib_models, faces):
    skdata = pytest.importorskip("skimage.data")
    dlib, rec, sp = dlib_models
    reading = identity.read(faces[:6])
    with torch.no_grad():
        chips = identity.align(faces[:6], reading.points)
    chips8 = [np.ascontiguousarray(c.permute(1, 2, 0).clamp(0, 255).round().byte().numpy()) for c in chips]
    astro = skdata.astronaut()
    chips8.append(dlib.get_face_chip(astro, sp(astro, dlib.get_frontal_face_detector()(astro, 1)[0]), 150, 0.25))
    ref = np.stack([np.array(rec.compute_face_descriptor(c)) for c in chips8])
    with torch.no_grad():
        ours = identity.resnet(torch.from_numpy(np.stack(chips8)).permute(0, 3, 1, 2).float()).numpy()
    assert np.abs(ours - ref).max() <= 1e-3


@pytest.mark.slow
def test_chips_are_cut_as_dlib_cuts_them(identity, dlib_models, faces):
    """tlgan's sampling at dlib's own five points gives dlib's get_face_chip (dlib stores 8-bit pixels)."""
    dlib, rec, sp = dlib_models
    big = F.interpolate(faces[:4], size=(256, 256), mode="bilinear", align_corners=False)
    template5 = torch.from_numpy((0.25 + DLIB_5) / 1.5 * CHIP_SIZE)
    for image in big:
        arr = _uint8(image)
        shape = sp(arr, dlib.rectangle(48, 48, 208, 208))
        chip = dlib.get_face_chip(arr, shape, CHIP_SIZE, 0.25).astype(np.float32)
        pts = torch.tensor([(shape.part(k).x, shape.part(k).y) for k in range(5)], dtype=torch.float64)
        ours = sample_chips(torch.from_numpy(arr).permute(2, 0, 1)[None].float(),
                            dlib_chip_affine(fit_similarity(template5[None], pts[None])).float())[0].permute(1, 2, 0).numpy()
        diff = np.abs(ours - chip)
        assert diff.mean() < 1.0 and np.percentile(diff, 99) < 2.0


@pytest.mark.slow
def test_chips_of_an_enlarged_photo_follow_dlibs_pyramid(identity, dlib_models):
    """A face 4x larger than the chip wants: dlib goes down its image pyramid before sampling; so does tlgan."""
    skdata = pytest.importorskip("skimage.data")
    dlib, rec, sp = dlib_models
    astro = skdata.astronaut()
    box = dlib.get_frontal_face_detector()(astro, 1)[0]
    big = np.asarray(Image.fromarray(astro).resize((2048, 2048), Image.BICUBIC))
    shape = sp(big, dlib.rectangle(box.left() * 4, box.top() * 4, box.right() * 4, box.bottom() * 4))
    ref = np.array(rec.compute_face_descriptor(dlib.get_face_chip(big, shape, CHIP_SIZE, 0.25)))
    template5 = torch.from_numpy((0.25 + DLIB_5) / 1.5 * CHIP_SIZE)
    pts = torch.tensor([(shape.part(k).x, shape.part(k).y) for k in range(5)], dtype=torch.float64)
    affine = dlib_chip_affine(fit_similarity(template5[None], pts[None])).float()
    assert torch.linalg.vector_norm(affine[0, :, 0]) > 3                 # one pyramid level at least
    with torch.no_grad():
        ours = identity.resnet(sample_chips(torch.from_numpy(big.copy()).permute(2, 0, 1)[None].float(), affine))[0]
    assert np.linalg.norm(ours.numpy() - ref) < 0.02


@pytest.mark.slow
def test_whole_reading_agrees_with_dlibs_pipeline(identity, dlib_models, faces):
    """tlgan (ONet points on the 64 px face, mean-face template, port) vs dlib's own pipeline (256 px upsample,
    HOG detector, 5-point predictor, get_face_chip, descriptor) on the faces dlib's detector finds.
    Margin: median distance < 0.25, every face < 0.45 (measured on 35 faces: median 0.16, max 0.33;
    docs/models.md reports the figures; dlib's own same-person threshold is 0.6)."""
    dlib, rec, sp = dlib_models
    reading = identity.read(faces)
    big = F.interpolate(faces, size=(256, 256), mode="bilinear", align_corners=False)
    hog = dlib.get_frontal_face_detector()
    dists = []
    for i in range(len(faces)):
        if not reading.found[i]:
            continue
        arr = _uint8(big[i])
        dets = hog(arr, 0)
        if not len(dets):
            continue
        chip = dlib.get_face_chip(arr, sp(arr, dets[0]), CHIP_SIZE, 0.25)
        dists.append(np.linalg.norm(reading.descriptors[i].detach().numpy() - np.array(rec.compute_face_descriptor(chip))))
    assert len(dists) >= 0.5 * len(faces)
    assert np.median(dists) < 0.25 and max(dists) < 0.45


@pytest.mark.slow
def test_whole_reading_of_a_photo_agrees_with_dlib(identity, dlib_models):
    skdata = pytest.importorskip("skimage.data")
    from tlgan.models.extractors.mtcnn import load_mtcnn

    dlib, rec, sp = dlib_models
    astro = skdata.astronaut()
    face = load_mtcnn("cpu").detect(torch.from_numpy(astro).permute(2, 0, 1))[0]
    image = torch.from_numpy(astro).permute(2, 0, 1)[None].float() / 127.5 - 1
    ours = identity.descriptors(image, torch.tensor([face.points], dtype=torch.float32))[0].detach().numpy()
    chip = dlib.get_face_chip(astro, sp(astro, dlib.get_frontal_face_detector()(astro, 1)[0]), CHIP_SIZE, 0.25)
    assert np.linalg.norm(ours - np.array(rec.compute_face_descriptor(chip))) < 0.25


@pytest.mark.slow
def test_same_face_stays_well_under_different_faces(identity, faces):
    reading = identity.read(faces)
    ok = reading.found
    base = reading.descriptors.detach()[ok]
    sel = faces[ok]
    shifted = F.pad(sel, (2, 0, 2, 0), mode="replicate")[..., :64, :64]
    rescaled = F.interpolate(sel, size=(80, 80), mode="bilinear", align_corners=False)
    jpeg = []
    for im in sel:
        buf = io.BytesIO()
        Image.fromarray(_uint8(im)).save(buf, format="JPEG", quality=75)
        jpeg.append(torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())))).permute(2, 0, 1).float() / 127.5 - 1)
    same = []
    for variant in (shifted, rescaled, torch.stack(jpeg)):
        r = identity.read(variant)
        same.append(identity_distance(r.descriptors.detach()[r.found], base[r.found]))
    same = torch.cat(same)
    pair = torch.triu_indices(len(base), len(base), 1)
    different = identity_distance(base[pair[0]], base[pair[1]])
    assert same.max() < 0.6 <= different.median()          # dlib's threshold separates them
    assert torch.quantile(same, 0.9) < torch.quantile(different, 0.1)
    assert same.median() < 0.5 * different.median()


@pytest.mark.slow
def test_gradients_flow_from_descriptors_to_the_image(identity, faces):
    image = faces[:2].clone()
    points = identity.read(image).points
    x = image.clone().requires_grad_(True)
    ref = identity.descriptors(image, points).detach()
    d = identity.distance(x, ref.flip(0), points)
    d.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # A step against the gradient meant to lower the summed distance by 0.02 does so (landmarks held fixed).
    grad = x.grad
    step = -0.02 * grad / (grad ** 2).sum()
    with torch.no_grad():
        moved = identity.distance(image + step, ref.flip(0), points).sum()
    change = float(moved - d.sum().detach())
    assert -0.026 < change < -0.014


@pytest.mark.slow
def test_readings_stay_float32_under_autocast(identity, faces):
    plain = identity.read(faces[:2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fixed = identity.read(faces[:2], plain.points).descriptors
        auto = identity.read(faces[:2]).descriptors
    assert fixed.dtype == auto.dtype == torch.float32
    torch.testing.assert_close(fixed, plain.descriptors, rtol=0, atol=1e-5)
    # ONet's convolutions do run in bfloat16 (landmarks.py): its points move a little.
    torch.testing.assert_close(auto, plain.descriptors, rtol=0, atol=5e-3)


@pytest.mark.slow
def test_faces_not_found_are_flagged_never_silently_read(identity, faces):
    blank = torch.full((1, 3, 64, 64), -1.0)
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = torch.cat([faces[:2], blank, noise])
    reading = identity.read(batch)
    assert reading.found.tolist()[2:] == [False, False]
    with pytest.raises(TlganError) as exc:
        identity.descriptors(batch)
    assert "2, 3" in _one_line(exc)
    with pytest.raises(TlganError):
        identity.descriptors(faces[:1], torch.zeros(1, 5, 2))      # degenerate landmarks


def test_identity_distance_is_euclidean():
    a, b = torch.zeros(3, 128), torch.ones(128)
    torch.testing.assert_close(identity_distance(a, b), torch.full((3,), math.sqrt(128)))
    assert isinstance(IdentityModel, type)
