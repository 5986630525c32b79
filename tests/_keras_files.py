"""Test helpers: Keras-2-layout HDF5 files of the TL-GAN feature CNN written with h5py, and a NumPy forward pass.

The file layout is what ``keras.Model.save`` (Keras 2.2, TensorFlow backend)
writes: root attributes keras_version, backend, model_config (JSON); group
``model_weights`` with attribute layer_names; one group per layer with
attribute weight_names (e.g. b'conv1/kernel:0') and the datasets at
``model_weights/<layer>/<weight name>``. ``weights_only=True`` writes the
``save_weights`` layout (layers at the root, no model_config).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


def celeba_cnn_layers(alpha: float = 0.25, outputs: int = 40, hidden: int = 256, seed: int = 0,
                      size: int = 128) -> list[tuple[str, str, dict, list[tuple[str, np.ndarray]]]]:
    """(layer name, Keras class, config, [(weight name, array)]) in model order, random weights."""
    rng = np.random.default_rng(seed)
    layers: list = [("input_1", "InputLayer", {"batch_input_shape": [None, size, size, 3], "dtype": "float32"}, [])]

    def bn(name: str, channels: int) -> None:
        layers.append((name, "BatchNormalization", {"axis": -1, "momentum": 0.99, "epsilon": 0.001}, [
            (f"{name}/gamma:0", rng.uniform(0.8, 1.2, channels).astype(np.float32)),
            (f"{name}/beta:0", rng.normal(0.1, 0.1, channels).astype(np.float32)),
            (f"{name}/moving_mean:0", rng.normal(0, 0.2, channels).astype(np.float32)),
            (f"{name}/moving_variance:0", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        ]))

    def kernel(*shape: int, fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    first = int(32 * alpha)
    layers.append(("conv1_pad", "ZeroPadding2D", {"padding": [[0, 1], [0, 1]]}, []))
    layers.append(("conv1", "Conv2D", {"filters": first, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid",
                                       "use_bias": False}, [("conv1/kernel:0", kernel(3, 3, 3, first, fan_in=27))]))
    bn("conv1_bn", first)
    layers.append(("conv1_relu", "ReLU", {"max_value": 6.0}, []))
    cin = first
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        cout = int(filters * alpha)
        if stride == 2:
            layers.append((f"conv_pad_{i}", "ZeroPadding2D", {"padding": [[0, 1], [0, 1]]}, []))
        layers.append((f"conv_dw_{i}", "DepthwiseConv2D", {"kernel_size": [3, 3], "strides": [stride, stride],
                       "padding": "same" if stride == 1 else "valid", "depth_multiplier": 1, "use_bias": False},
                       [(f"conv_dw_{i}/depthwise_kernel:0", kernel(3, 3, cin, 1, fan_in=9))]))
        bn(f"conv_dw_{i}_bn", cin)
        layers.append((f"conv_dw_{i}_relu", "ReLU", {"max_value": 6.0}, []))
        layers.append((f"conv_pw_{i}", "Conv2D", {"filters": cout, "kernel_size": [1, 1], "strides": [1, 1],
                       "padding": "same", "use_bias": False}, [(f"conv_pw_{i}/kernel:0", kernel(1, 1, cin, cout, fan_in=cin))]))
        bn(f"conv_pw_{i}_bn", cout)
        layers.append((f"conv_pw_{i}_relu", "ReLU", {"max_value": 6.0}, []))
        cin = cout
    layers.append(("fc0_pool", "GlobalAveragePooling2D", {"data_format": "channels_last"}, []))
    layers.append(("fc1_dense", "Dense", {"units": hidden, "activation": "relu"}, [
        ("fc1_dense/kernel:0", kernel(cin, hidden, fan_in=cin)),
        ("fc1_dense/bias:0", rng.normal(0, 0.1, hidden).astype(np.float32))]))
    layers.append(("fc2_dense", "Dense", {"units": outputs, "activation": "tanh"}, [
        ("fc2_dense/kernel:0", (0.3 * kernel(hidden, outputs, fan_in=hidden))),
        ("fc2_dense/bias:0", rng.normal(0, 0.1, outputs).astype(np.float32))]))
    return layers


def write_keras_h5(path: Path, layers: list, weights_only: bool = False) -> Path:
    with h5py.File(path, "w") as f:
        if weights_only:
            group = f
        else:
            f.attrs["keras_version"] = b"2.2.2"
            f.attrs["backend"] = b"tensorflow"
            config = {"class_name": "Model", "config": {"name": "model_1", "layers": [
                {"name": name, "class_name": cls, "config": {"name": name, "trainable": True, **cfg}, "inbound_nodes": []}
                for name, cls, cfg, _ in layers]}}
            f.attrs["model_config"] = json.dumps(config).encode()
            f.attrs["training_config"] = json.dumps({"loss": "mean_squared_error"}).encode()
            group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([name.encode() for name, *_ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.2.2"
        for name, _, _, weights in layers:
            g = group.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for weight_name, value in weights:
                g.create_dataset(weight_name, data=value)
    return path


# --- independent NumPy forward pass (NHWC, as Keras computes) --------------------------------------
def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    pads = []
    for n in x.shape[1:3]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv(x: np.ndarray, w: np.ndarray, s: int, depthwise: bool) -> np.ndarray:
    k = w.shape[0]
    xp = _same_pad(x, k, s)
    ho, wo = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    out = 0.0
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s, :]
            out = out + (patch * w[dy, dx, :, 0] if depthwise else np.einsum("nhwc,co->nhwo", patch, w[dy, dx]))
    return out


def numpy_celeba_cnn(layers: list, x_nchw: np.ndarray) -> np.ndarray:
    """Keras model on preprocessed input (N, 3, S, S) in [-1, 1] -> (N, outputs)."""
    w = {wn.split(":")[0]: v.astype(np.float64) for _, _, _, ws in layers for wn, v in ws}
    x = x_nchw.astype(np.float64).transpose(0, 2, 3, 1)

    def bn_relu6(x: np.ndarray, name: str) -> np.ndarray:
        y = (x - w[f"{name}/moving_mean"]) / np.sqrt(w[f"{name}/moving_variance"] + 1e-3) * w[f"{name}/gamma"] + w[f"{name}/beta"]
        return np.clip(y, 0, 6)

    x = bn_relu6(_conv(x, w["conv1/kernel"], 2, False), "conv1_bn")
    for i, (_, stride) in enumerate(BLOCKS, start=1):
        x = bn_relu6(_conv(x, w[f"conv_dw_{i}/depthwise_kernel"], stride, True), f"conv_dw_{i}_bn")
        x = bn_relu6(_conv(x, w[f"conv_pw_{i}/kernel"], 1, False), f"conv_pw_{i}_bn")
    h = x.mean(axis=(1, 2))
    h = np.maximum(h @ w["fc1_dense/kernel"] + w["fc1_dense/bias"], 0)
    return np.tanh(h @ w["fc2_dense/kernel"] + w["fc2_dense/bias"])
