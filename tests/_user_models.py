"""Test helpers: users' own models as tlgan expects them (entry points, TorchScript, ONNX) and typical mistakes.

This file doubles as the entry-point module of the tests (``entrypoint:_user_models:good_generator``):
each factory returns a model; the ``bad_*`` ones make one mistake each that check-model must catch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

LATENT = 8
SIZE = 8


class TinyGenerator(nn.Module):
    """z (N, 8) -> (N, 3, 8, 8) in [-1, 1]: a linear map then tanh."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.latent_dim = LATENT
        torch.manual_seed(seed)
        self.fc = nn.Linear(LATENT, 3 * SIZE * SIZE)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).reshape(-1, 3, 8, 8)


class ByteRangeNHWC(TinyGenerator):
    """Declares output_range [0, 255] and NHWC layout, and outputs exactly that."""

    output_range = (0, 255)
    output_layout = "NHWC"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((super().forward(z) + 1) * 127.5).permute(0, 2, 3, 1)


class TinyExtractor(nn.Module):
    """(N, 3, 16, 16) in [-1, 1] -> redness (real) and brightness (probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = [{"name": "redness", "kind": "real", "group": "lighting and colour"},
                         {"name": "bright", "kind": "probability", "description": "mean level above mid-grey"}]
        self.input_size = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        redness = mean[:, 0] - 0.5 * (mean[:, 1] + mean[:, 2])
        return torch.stack([redness, torch.sigmoid(4 * mean.mean(1))], dim=1)


def good_generator(device):
    return TinyGenerator().to(device)


def byte_nhwc_generator():
    return ByteRangeNHWC()


def good_extractor():
    return TinyExtractor()


class _Mistake(TinyGenerator):
    def __init__(self, mistake: str) -> None:
        super().__init__()
        self.mistake = mistake
        self.drop = nn.Dropout(0.5)
        self.norm = nn.BatchNorm1d(3 * SIZE * SIZE)

    def forward(self, z: torch.Tensor):
        m = self.mistake
        if m == "noise":
            return super().forward(z + 0.5 * torch.randn_like(z))
        if m == "batchnorm":
            return torch.tanh(self.norm(self.fc(z))).reshape(-1, 3, SIZE, SIZE)
        x = super().forward(z)
        if m == "nhwc":
            return x.permute(0, 2, 3, 1)
        if m == "range":
            return 3 * x
        if m == "float64":
            return x.double()
        if m == "uint8":
            return ((x + 1) * 127.5).round().to(torch.uint8)
        if m == "nan":
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
            return x
        if m == "ignores_z":
            return torch.tanh(self.fc.bias).reshape(1, 3, SIZE, SIZE).expand(z.shape[0], -1, -1, -1)
        if m == "numpy_list":
            return [x.numpy(), x.numpy()]
        if m == "raises":
            raise ValueError("shapes do not match inside the user's model")
        raise AssertionError(m)


def bad_generator_nhwc():
    return _Mistake("nhwc")


def bad_generator_range():
    return _Mistake("range")


def bad_generator_float64():
    return _Mistake("float64")


def bad_generator_uint8():
    return _Mistake("uint8")


def bad_generator_nan():
    return _Mistake("nan")


def bad_generator_noise():
    return _Mistake("noise")


def bad_generator_batchnorm():
    model = _Mistake("batchnorm")
    model.train = lambda mode=True: model  # a model whose .eval() does nothing: BN keeps using batch statistics
    nn.Module.train(model, True)
    return model


def bad_generator_ignores_z():
    return _Mistake("ignores_z")


def bad_generator_returns_list():
    return _Mistake("numpy_list")


def bad_generator_raises():
    return _Mistake("raises")


def bad_generator_no_latent_dim():
    model = TinyGenerator()
    del model.latent_dim
    return model


def bad_factory_raises():
    raise RuntimeError("weights file missing on the user's side")


class _BadExtractor(TinyExtractor):
    def __init__(self, mistake: str) -> None:
        super().__init__()
        self.mistake = mistake

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.mistake == "count":
            return torch.cat([out, out[:, :1]], dim=1)
        if self.mistake == "logits":
            return torch.stack([out[:, 0], 10 * (out[:, 1] - 0.5)], dim=1)
        if self.mistake == "nan":
            return out / 0 * 0
        if self.mistake == "noise":
            return out + torch.rand_like(out) * 0.01
        raise AssertionError(self.mistake)


def bad_extractor_count():
    return _BadExtractor("count")


def bad_extractor_logits():
    return _BadExtractor("logits")


def bad_extractor_nan():
    return _BadExtractor("nan")


def bad_extractor_noise():
    return _BadExtractor("noise")


def bad_extractor_no_features():
    model = TinyExtractor()
    del model.features
    return model


# --- ONNX files built directly with onnx.helper ------------------------------------------------------
def onnx_generator(path: Path, weight: np.ndarray, bias: np.ndarray, meta: dict | None = None) -> Path:
    """ONNX: z (N, 8) -> Gemm -> Reshape (N, 3, 8, 8) -> Tanh, latent size from the input shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gemm", ["z", "W", "b"], ["h"]),
        helper.make_node("Reshape", ["h", "shape"], ["r"]),
        helper.make_node("Tanh", ["r"], ["images"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", LATENT])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "W"),
                     numpy_helper.from_array(bias.astype(np.float32), "b"),
                     numpy_helper.from_array(np.array([-1, 3, SIZE, SIZE], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if meta is not None:
        helper.set_model_props(model, {"tlgan": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_extractor(path: Path, meta: dict | None = None) -> Path:
    """ONNX: images (N, 3, H, W) -> per-channel means (N, 3) -> Sigmoid: three 'probability' features."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["p"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_extractor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(np.array([2, 3], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if meta is not None:
        helper.set_model_props(model, {"tlgan": json.dumps(meta)})
    onnx.save(model, str(path))
    return path
