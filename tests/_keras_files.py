"""Test helpers: Keras-2-layout HDF5 files of the TL-GAN feature CNN written with h5py, and a NumPy forward pass.

The file layout is what ``keras.Model.save`` (Keras 2.2, TensorFlow backend)
writes: root attributes keras_version, backend, model_config (JSON); group
``model_weights`` with attribute layer_names; one group per layer with
attribute weight_names (e.g. b'conv1/kernel:0') and the datasets at
``model_weights/<layer>/<weight name>``. ``weights_only=True`` writes the
``save_weights`` layout (layers at the root, no model_config).

Styles of MobileNet (``celeba_cnn_layers(style=...)``): "2.2.4" pads
asymmetrically ((0, 1), (0, 1)) before each stride-2 conv; "2.2.0" pads
symmetrically (1, 1) before conv1 and every depthwise conv, all 'valid';
"keras3" has no conv1_pad (conv1 'same'), names the depthwise kernel
``kernel`` and writes weight names without ``:0`` (with ``write_keras_h5(...,
keras3=True)``: config class ``Functional``, ``batch_shape``).
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
                      size: int = 128, style: str = "2.2.4") -> list[tuple[str, str, dict, list[tuple[str, np.ndarray]]]]:
    """(layer name, Keras class, config, [(weight name, array)]) in model order, random weights."""
    assert style in ("2.2.4", "2.2.0", "keras3")
    rng = np.random.default_rng(seed)
    suffix = "" if style == "keras3" else ":0"
    shape_key = "batch_shape" if style == "keras3" else "batch_input_shape"
    layers: list = [("input_1", "InputLayer", {shape_key: [None, size, size, 3], "dtype": "float32"}, [])]

    def bn(name: str, channels: int) -> None:
        layers.append((name, "BatchNormalization", {"axis": -1, "momentum": 0.99, "epsilon": 0.001}, [
            (f"{name}/gamma{suffix}", rng.uniform(0.8, 1.2, channels).astype(np.float32)),
            (f"{name}/beta{suffix}", rng.normal(0.1, 0.1, channels).astype(np.float32)),
            (f"{name}/moving_mean{suffix}", rng.normal(0, 0.2, channels).astype(np.float32)),
            (f"{name}/moving_variance{suffix}", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        ]))

    def kernel(*shape: int, fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    first = int(32 * alpha)
    symmetric = [[1, 1], [1, 1]] if style == "2.2.0" else [[0, 1], [0, 1]]
    if style != "keras3":
        layers.append(("conv1_pad", "ZeroPadding2D", {"padding": symmetric}, []))
    layers.append(("conv1", "Conv2D", {"filters": first, "kernel_size": [3, 3], "strides": [2, 2],
                                       "padding": "same" if style == "keras3" else "valid", "use_bias": False},
                   [(f"conv1/kernel{suffix}", kernel(3, 3, 3, first, fan_in=27))]))
    bn("conv1_bn", first)
    layers.append(("conv1_relu", "ReLU", {"max_value": 6.0}, []))
    cin = first
    dw_name = "kernel" if style == "keras3" else "depthwise_kernel"
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        cout = int(filters * alpha)
        padded = style == "2.2.0" or stride == 2
        if padded:
            layers.append((f"conv_pad_{i}", "ZeroPadding2D", {"padding": symmetric}, []))
        layers.append((f"conv_dw_{i}", "DepthwiseConv2D", {"kernel_size": [3, 3], "strides": [stride, stride],
                       "padding": "valid" if padded else "same", "depth_multiplier": 1, "use_bias": False},
                       [(f"conv_dw_{i}/{dw_name}{suffix}", kernel(3, 3, cin, 1, fan_in=9))]))
        bn(f"conv_dw_{i}_bn", cin)
        layers.append((f"conv_dw_{i}_relu", "ReLU", {"max_value": 6.0}, []))
        layers.append((f"conv_pw_{i}", "Conv2D", {"filters": cout, "kernel_size": [1, 1], "strides": [1, 1],
                       "padding": "same", "use_bias": False}, [(f"conv_pw_{i}/kernel{suffix}", kernel(1, 1, cin, cout, fan_in=cin))]))
        bn(f"conv_pw_{i}_bn", cout)
        layers.append((f"conv_pw_{i}_relu", "ReLU", {"max_value": 6.0}, []))
        cin = cout
    layers.append(("fc0_pool", "GlobalAveragePooling2D", {"data_format": "channels_last"}, []))
    layers.append(("fc1_dense", "Dense", {"units": hidden, "activation": "relu"}, [
        (f"fc1_dense/kernel{suffix}", kernel(cin, hidden, fan_in=cin)),
        (f"fc1_dense/bias{suffix}", rng.normal(0, 0.1, hidden).astype(np.float32))]))
    layers.append(("fc2_dense", "Dense", {"units": outputs, "activation": "tanh"}, [
        (f"fc2_dense/kernel{suffix}", (0.3 * kernel(hidden, outputs, fan_in=hidden))),
        (f"fc2_dense/bias{suffix}", rng.normal(0, 0.1, outputs).astype(np.float32))]))
    return layers


def write_keras_h5(path: Path, layers: list, weights_only: bool = False, keras3: bool = False) -> Path:
    version = b"3.6.0" if keras3 else b"2.2.2"
    with h5py.File(path, "w") as f:
        if weights_only:
            group = f
        else:
            f.attrs["keras_version"] = version
            f.attrs["backend"] = b"tensorflow"
            dtype = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}
            config = {"class_name": "Functional" if keras3 else "Model", "config": {"name": "model_1", "layers": [
                {"name": name, "class_name": cls, "config": {"name": name, "trainable": True, **cfg,
                                                             **({"dtype": dtype} if keras3 and cls != "InputLayer" else {})},
                 "inbound_nodes": []}
                for name, cls, cfg, _ in layers]}}
            f.attrs["model_config"] = json.dumps(config).encode()
            f.attrs["training_config"] = json.dumps({"loss": "mean_squared_error"}).encode()
            group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([name.encode() for name, *_ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = version
        for name, _, _, weights in layers:
            g = group.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for weight_name, value in weights:
                g.create_dataset(weight_name, data=value)
    return path


# --- Keras 3's legacy .h5 layout, rewritten from a Keras 2 whole-model file ----------------------------
def _keras3_node(inbound: list) -> list:
    """Keras 2's [[[name, 0, 0, {}], ...]] as Keras 3 writes it: {'args': [tensor] or [[tensor, ...]]}."""
    if not inbound:
        return []
    tensors = [{"class_name": "__keras_tensor__", "config": {"shape": [None], "dtype": "float32",
                                                            "keras_history": [entry[0], entry[1], entry[2]]}}
               for entry in inbound[0]]
    return [{"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}]


def write_as_keras3(src, dst, flat_refs: bool = False) -> None:
    """Rewrite a Keras 2 model file as Keras 3's ``model.save('x.h5')`` lays it out (same weights)."""
    with h5py.File(src, "r") as old, h5py.File(dst, "w") as new:
        config = json.loads(old.attrs["model_config"])
        config["class_name"] = "Functional"
        for layer in config["config"]["layers"]:
            layer["inbound_nodes"] = _keras3_node(layer["inbound_nodes"])
            cfg = layer["config"]
            if "batch_input_shape" in cfg:
                cfg["batch_shape"] = cfg.pop("batch_input_shape")
            cfg["dtype"] = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}
        if flat_refs:
            for key in ("input_layers", "output_layers"):
                config["config"][key] = config["config"][key][0]
        new.attrs["model_config"] = json.dumps(config).encode()
        new.attrs["keras_version"] = b"3.6.0"
        root = new.create_group("model_weights")
        old_root = old["model_weights"]
        root.attrs["layer_names"] = old_root.attrs["layer_names"]
        root.create_group("top_level_model_weights").attrs["weight_names"] = np.array([], dtype="S1")
        for layer in old_root.attrs["layer_names"]:
            layer = layer.decode()
            group = root.create_group(layer)
            names = []
            for raw in old_root[layer].attrs.get("weight_names", []):
                role = raw.decode().rsplit("/", 1)[-1].split(":")[0]
                names.append(f"{layer}/{role}".encode())
                group.create_dataset(names[-1].decode(), data=np.asarray(old_root[layer][raw.decode()]))
            group.attrs["weight_names"] = np.array(names, dtype="S64") if names else np.array([], dtype="S1")


# --- independent NumPy forward pass (NHWC, as Keras computes) --------------------------------------
def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    pads = []
    for n in x.shape[1:3]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _pad_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(padding[0]), tuple(padding[1])


def _conv_valid(x: np.ndarray, w: np.ndarray, s: int, depthwise: bool) -> np.ndarray:
    k = w.shape[0]
    ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    out = 0.0
    for dy in range(k):
        for dx in range(k):
            patch = x[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s, :]
            out = out + (patch * w[dy, dx, :, 0] if depthwise else np.einsum("nhwc,co->nhwo", patch, w[dy, dx]))
    return out


def numpy_celeba_cnn(layers: list, x_nchw: np.ndarray) -> np.ndarray:
    """Keras model on preprocessed input (N, 3, S, S) in [-1, 1] -> (N, outputs), layer by layer as configured."""
    x = x_nchw.astype(np.float64).transpose(0, 2, 3, 1)
    for name, cls, cfg, weights in layers:
        w = {wn.split(":")[0].rsplit("/", 1)[-1]: v.astype(np.float64) for wn, v in weights}
        if cls == "ZeroPadding2D":
            rows, cols = _pad_pairs(cfg["padding"])
            x = np.pad(x, ((0, 0), rows, cols, (0, 0)))
        elif cls in ("Conv2D", "DepthwiseConv2D"):
            depthwise = cls == "DepthwiseConv2D"
            kernel = w["kernel"] if "kernel" in w else w["depthwise_kernel"]
            stride = cfg["strides"][0]
            if cfg["padding"] == "same":
                x = _same_pad(x, kernel.shape[0], stride)
            x = _conv_valid(x, kernel, stride, depthwise)
        elif cls == "BatchNormalization":
            x = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "ReLU":
            x = np.clip(x, 0, cfg["max_value"])
        elif cls == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        elif cls == "Dense":
            x = x @ w["kernel"] + w["bias"]
            x = np.maximum(x, 0) if cfg["activation"] == "relu" else np.tanh(x)
    return x


# --- small functional graphs (several outputs) in Keras 2.0's layout ---------------------------------
def write_functional_h5(path: Path, layers: list, outputs: list[str], version: bytes = b"2.0.6") -> Path:
    """A whole-model file as Keras 2.0.6's ``model.save`` writes it (yu4u's age/gender model is one).

    layers: (name, Keras class, config, [inbound layer names], {role: array}) in model order, the
    first an InputLayer. Weights at ``model_weights/<layer>/<layer>/<role>:0``; ``output_layers``
    lists ``outputs`` in order.
    """
    config = {"class_name": "Model", "config": {
        "name": "model_1",
        "layers": [{"name": name, "class_name": cls, "config": {"name": name, "trainable": True, **cfg},
                    "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else []}
                   for name, cls, cfg, inbound, _ in layers],
        "input_layers": [[layers[0][0], 0, 0]],
        "output_layers": [[name, 0, 0] for name in outputs]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([name.encode() for name, *_ in layers])
        for name, _, _, _, weights in layers:
            group = root.create_group(name)
            names = [f"{name}/{role}:0" for role in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S") if names else np.array([], dtype="S1")
            for weight_name, value in zip(names, weights.values()):
                group.create_dataset(weight_name, data=np.asarray(value, dtype=np.float32))
    return path


def numpy_avg_pool_same(x: np.ndarray, k: int) -> np.ndarray:
    """TF AveragePooling2D(pool k, stride 1, 'same') on NHWC: each window averages the cells inside the image."""
    total = k - 1
    before = total // 2
    n, h, w, c = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            window = x[:, max(i - before, 0):min(i - before + k, h), max(j - before, 0):min(j - before + k, w)]
            out[:, i, j] = window.mean(axis=(1, 2))
    return out


def numpy_functional(layers: list, outputs: list[str], x_nchw: np.ndarray) -> list[np.ndarray]:
    """The graph written by ``write_functional_h5`` run in NumPy (NHWC, float64), outputs in order."""
    values = {layers[0][0]: x_nchw.astype(np.float64).transpose(0, 2, 3, 1)}
    for name, cls, cfg, inbound, weights in layers[1:]:
        w = {role: np.asarray(v, dtype=np.float64) for role, v in weights.items()}
        x = values[inbound[0]]
        if cls == "Conv2D":
            stride = cfg["strides"][0]
            if cfg["padding"] == "same":
                x = _same_pad(x, w["kernel"].shape[0], stride)
            x = _conv_valid(x, w["kernel"], stride, depthwise=False)
            if cfg.get("use_bias", True):
                x = x + w["bias"]
        elif cls == "BatchNormalization":
            x = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "Activation":
            x = np.maximum(x, 0) if cfg["activation"] == "relu" else x
        elif cls == "Add":
            x = sum(values[i] for i in inbound)
        elif cls == "AveragePooling2D":
            assert cfg["padding"] == "same" and cfg["strides"] == [1, 1]
            x = numpy_avg_pool_same(x, cfg["pool_size"][0])
        elif cls == "Flatten":
            x = x.reshape(len(x), -1)  # NHWC rows: h, then w, then c
        elif cls == "Dropout":
            pass
        elif cls == "Dense":
            x = x @ w["kernel"] + (w["bias"] if cfg.get("use_bias", True) else 0.0)
            if cfg["activation"] == "softmax":
                x = np.exp(x - x.max(axis=1, keepdims=True))
                x = x / x.sum(axis=1, keepdims=True)
        else:
            raise AssertionError(cls)
        values[name] = x
    return [values[name] for name in outputs]
