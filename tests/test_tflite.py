"""TensorFlow Lite files read without TensorFlow, and MediaPipe's face mesh run from the file in the mediapipe wheel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _tflite_files import Graph, write_tflite

from tlgan.errors import TlganError
from tlgan.models.extractors.facemesh import MESH_SIZE, load_facemesh, mesh_geometry
from tlgan.models.extractors.tflite_graph import TfliteGraph
from tlgan.models.formats.tflite_file import read_tflite

SAME, VALID = 0, 1
DATA = Path(__file__).parent / "data"


# ---- an independent reference of TFLite's float kernels (NHWC, loops) --------------------------------------------
def _same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    def pads(n: int) -> tuple[int, int]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    return np.pad(x, (pads(x.shape[0]), pads(x.shape[1]), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: int, s: int):
    for i in range((x.shape[0] - k) // s + 1):
        for j in range((x.shape[1] - k) // s + 1):
            yield i, j, x[i * s:i * s + k, j * s:j * s + k]


def ref_conv(x, w, b, s):      # x (H, W, C), w (O, k, k, C)
    xp = _same(x, w.shape[1], s)
    out = np.zeros((math.ceil(x.shape[0] / s), math.ceil(x.shape[1] / s), w.shape[0]))
    for i, j, patch in _windows(xp, w.shape[1], s):
        out[i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2])) + b
    return out


def ref_depthwise(x, w, b):     # w (1, k, k, C), stride 1
    xp = _same(x, w.shape[1], 1)
    out = np.zeros_like(x)
    for i, j, patch in _windows(xp, w.shape[1], 1):
        out[i, j] = (patch * w[0]).sum((0, 1)) + b
    return out


def ref_maxpool(x, k, s):
    xp = _same(x, k, s, -np.inf)
    out = np.zeros((math.ceil(x.shape[0] / s), math.ceil(x.shape[1] / s), x.shape[2]))
    for i, j, patch in _windows(xp, k, s):
        out[i, j] = patch.max((0, 1))
    return out


def small_graph(rng: np.random.Generator) -> tuple[Graph, int, int, dict]:
    """input (1, 9, 9, 2) -> conv 3x3/2 SAME -> PReLU -> depthwise 3x3 SAME -> + (ReLU fused) -> max pool 2/2 SAME
    -> PAD 2 channels -> (1, 3, 3, 6); weights float16 behind DEQUANTIZE, as the converter writes them."""
    w = {"conv": rng.normal(size=(4, 3, 3, 2)), "conv_b": rng.normal(size=4), "alpha": rng.uniform(0.1, 0.3, (1, 1, 4)),
         "dw": rng.normal(size=(1, 3, 3, 4)), "dw_b": rng.normal(size=4)}
    w = {k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}   # what the file can hold
    g = Graph()
    x = g.tensor("input", (1, 9, 9, 2))
    c = g.op("CONV_2D", [x, g.weight("conv/Kernel", w["conv"]), g.weight("conv/Bias", w["conv_b"])], (1, 5, 5, 4),
             "conv", Padding=SAME, StrideW=2, StrideH=2, DilationWFactor=1, DilationHFactor=1)
    p = g.op("PRELU", [c, g.weight("prelu/Alpha", w["alpha"])], (1, 5, 5, 4), "prelu")
    d = g.op("DEPTHWISE_CONV_2D", [p, g.weight("dw/Kernel", w["dw"]), g.weight("dw/Bias", w["dw_b"])], (1, 5, 5, 4),
             "dw", Padding=SAME, StrideW=1, StrideH=1, DepthMultiplier=1, DilationWFactor=1, DilationHFactor=1)
    a = g.op("ADD", [p, d], (1, 5, 5, 4), "add", FusedActivationFunction=1)
    m = g.op("MAX_POOL_2D", [a], (1, 3, 3, 4), "pool", Padding=SAME, StrideW=2, StrideH=2, FilterWidth=2,
             FilterHeight=2)
    pads = g.tensor("pads", (4, 2), np.array([[0, 0], [0, 0], [0, 0], [0, 2]], dtype=np.int32))
    out = g.op("PAD", [m, pads], (1, 3, 3, 6), "out")
    return g, x, out, w


def reference(x: np.ndarray, w: dict) -> np.ndarray:
    c = ref_conv(x, w["conv"], w["conv_b"], 2)
    p = np.where(c >= 0, c, w["alpha"][0, 0] * c)
    a = np.maximum(p + ref_depthwise(p, w["dw"], w["dw_b"]), 0)
    return np.pad(ref_maxpool(a, 2, 2), ((0, 0), (0, 0), (0, 2)))


def test_a_tflite_file_runs_as_tflite_defines_its_operators(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    graph, x, out, w = small_graph(rng)
    model = read_tflite(write_tflite(tmp_path / "small.tflite", graph, [x], [out]))
    assert not any(op.kind == "DEQUANTIZE" for op in model.operators)   # folded into float32 constants
    net = TfliteGraph(model)
    for size, out_size in ((9, 3), (8, 2)):   # 8: the stride-2 convolution pads only its bottom and right, as TFLite
        images = rng.normal(size=(2, size, size, 2)).astype(np.float32)
        (got,) = net(torch.from_numpy(images))
        assert got.shape == (2, out_size, out_size, 6)
        for n in range(2):
            np.testing.assert_allclose(got[n].numpy(), reference(images[n].astype(np.float64), w), atol=1e-4)


def test_files_that_are_not_float_tflite_models_get_one_line_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    graph, x, out, _ = small_graph(rng)
    good = write_tflite(tmp_path / "small.tflite", graph, [x], [out]).read_bytes()
    (tmp_path / "text.tflite").write_text("not a model")
    with pytest.raises(TlganError, match="not a TensorFlow Lite model"):
        read_tflite(tmp_path / "text.tflite")
    (tmp_path / "cut.tflite").write_bytes(good[: len(good) // 3])
    with pytest.raises(TlganError, match="damaged TensorFlow Lite model"):
        read_tflite(tmp_path / "cut.tflite")
    with pytest.raises(TlganError, match="does not exist"):
        read_tflite(tmp_path / "missing.tflite")
    graph.op("TANH", [out], (1, 3, 3, 6), "tanh")
    model = read_tflite(write_tflite(tmp_path / "tanh.tflite", graph, [x], [len(graph.tensors) - 1]))
    with pytest.raises(TlganError, match="operator TANH is not supported"):
        TfliteGraph(model)
    with pytest.raises(TlganError, match="not MediaPipe's face mesh"):
        load_facemesh(str(tmp_path / "small.tflite"))
    pixelwise = Graph()
    x = pixelwise.tensor("input", (1, 3, 3, 2))
    y = pixelwise.op("PRELU", [x, pixelwise.weight("alpha", rng.uniform(0.1, 0.3, (3, 3, 2)).astype(np.float32))],
                     (1, 3, 3, 2), "prelu")
    model = read_tflite(write_tflite(tmp_path / "pixelwise.tflite", pixelwise, [x], [y]))
    with pytest.raises(TlganError, match=r"PRELU slopes of shape \(3, 3, 2\) are not supported"):
        TfliteGraph(model)


# ---- the face mesh ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mesh():
    return load_facemesh(None, "cpu")


def test_the_mesh_gives_what_googles_runtime_gives(mesh) -> None:
    """tests/data/face_mesh_litert.npz: LiteRT 2.3 (ai-edge-litert) running the wheel's face_landmark.tflite on
    this input; our port must agree to a thousandth of a pixel."""
    h, w, c = np.meshgrid(np.arange(MESH_SIZE), np.arange(MESH_SIZE), np.arange(3), indexing="ij")
    x = (0.5 + 0.4 * np.sin(0.07 * h * (c + 1) + 0.05 * w) * np.cos(0.03 * w * (c + 2))).astype(np.float32)[None]
    ref = np.load(DATA / "face_mesh_litert.npz")
    with torch.no_grad():
        points, logit = mesh.mesh(torch.from_numpy(x))
    np.testing.assert_allclose(points.reshape(-1).numpy(), ref["points"], atol=2e-3)
    np.testing.assert_allclose(logit.reshape(-1).numpy(), ref["logit"], atol=1e-3)


def test_the_mesh_finds_generated_faces_and_reads_them_mirror_symmetrically(mesh) -> None:
    from tlgan.models.generators import load_generator

    gen = load_generator("digiface", "cpu")
    with torch.no_grad():
        faces = gen.synthesize(torch.randn(4, gen.latent_dim, generator=torch.Generator().manual_seed(3)))
        points, logit = mesh.detect(faces)
        _, blank = mesh.detect(torch.zeros(1, 3, 64, 64))
        readings, mirrored = mesh(faces), mesh(faces.flip(-1))
    assert bool((logit > 0).all()) and float(blank[0]) < 0
    assert points.shape == (4, 468, 2) and bool(((points > 0) & (points < 64)).all())
    torch.testing.assert_close(readings, mirrored, atol=1e-5, rtol=0)
    assert bool((readings[:, 1:] > 0).all())   # lips and eyelids apart by a positive distance


def test_mesh_geometry_reads_a_planted_smile() -> None:
    points = torch.zeros(1, 468, 2)
    points[0, [33, 133], 0], points[0, [362, 263], 0] = torch.tensor([0.0, 2.0]), torch.tensor([8.0, 10.0])  # iod 8
    points[0, [61, 291]] = torch.tensor([[2.0, 19.0], [8.0, 19.0]])   # corners 1 above ...
    points[0, [0, 13, 14, 17], 1] = torch.tensor([18.0, 19.5, 20.5, 22.0])   # ... the lips' middle (20)
    points[0, [159, 145, 386, 374], 1] = torch.tensor([-1.0, 1.0, -0.5, 0.5])
    lift, opened, eyes = mesh_geometry(points)[0].tolist()
    assert lift == pytest.approx(1 / 8) and opened == pytest.approx(1 / 8) and eyes == pytest.approx(1.5 / 8)
