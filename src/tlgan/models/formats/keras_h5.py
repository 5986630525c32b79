"""Reading weights out of Keras 2 HDF5 files with h5py (no TensorFlow, no Keras).

Two layouts exist: a full model (``model.save``: weights under the group
``model_weights``, architecture JSON in the root attribute ``model_config``)
and weights only (``model.save_weights``: weights at the root). In both, the
weights group lists ``layer_names`` and each layer group lists its
``weight_names`` such as ``conv1/kernel:0``. Weights come back keyed
"layer/param" (``conv1/kernel``) in Keras layouts: conv kernels (kh, kw, in,
out), depthwise (kh, kw, C, multiplier), dense (in, out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlgan.errors import TlganError


@dataclass
class KerasWeights:
    """Weights keyed 'layer/param', per-layer configs from model_config (empty for weights-only files)."""

    weights: dict[str, np.ndarray]
    layer_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    keras_version: str = ""
    source: str = ""

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The weight ``key`` ('layer/param'); TlganError if missing or (when given) of another shape."""
        if key not in self.weights:
            raise TlganError(f"{self.source}: Keras weight '{key}' is missing; not the expected model")
        value = self.weights[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise TlganError(f"{self.source}: Keras weight '{key}' has shape {tuple(value.shape)}, expected {tuple(shape)}")
        return value

    def input_shape(self) -> tuple[int, ...] | None:
        """The model's input shape without the batch axis (e.g. (128, 128, 3)), when model_config says."""
        for config in self.layer_configs.values():
            shape = config.get("batch_input_shape") or config.get("batch_shape")
            if shape:
                return tuple(shape[1:])
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _collect_layers(config: Any, out: dict[str, dict[str, Any]]) -> None:
    """Walk a Keras model_config (functional/sequential, possibly nested) collecting layer configs by name."""
    if isinstance(config, dict):
        layer_config = config.get("config")
        if isinstance(layer_config, dict) and "name" in layer_config and config.get("class_name"):
            out.setdefault(layer_config["name"], {**layer_config, "class_name": config["class_name"]})
        for value in config.values():
            _collect_layers(value, out)
    elif isinstance(config, list):
        for value in config:
            _collect_layers(value, out)


def read_keras_h5(path: str | Path) -> KerasWeights:
    """Read all weights of a Keras 2 HDF5 model or weights file; every problem is a one-line TlganError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TlganError(f"Keras HDF5 file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise TlganError(f"{path} is not a readable HDF5 file: {str(exc).splitlines()[0]}") from None
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise TlganError(f"{path} is not a Keras HDF5 model or weights file (no 'layer_names')")
        weights: dict[str, np.ndarray] = {}
        try:
            for layer in map(_text, group.attrs["layer_names"]):
                layer_group = group[layer]
                for weight_name in map(_text, layer_group.attrs.get("weight_names", [])):
                    parts = weight_name.split("/")
                    key = f"{parts[-2] if len(parts) > 1 else layer}/{parts[-1].split(':')[0]}"
                    if key in weights:
                        raise TlganError(f"{path}: Keras weight '{key}' appears twice")
                    weights[key] = np.asarray(layer_group[weight_name][()])
        except KeyError as exc:
            raise TlganError(f"{path}: the weights index names an entry that is missing: {exc}") from None
        layer_configs: dict[str, dict[str, Any]] = {}
        if "model_config" in handle.attrs:
            try:
                _collect_layers(json.loads(_text(handle.attrs["model_config"])), layer_configs)
            except json.JSONDecodeError:
                raise TlganError(f"{path}: its model_config is not valid JSON") from None
        version = _text(handle.attrs.get("keras_version", group.attrs.get("keras_version", "")))
    return KerasWeights(weights=weights, layer_configs=layer_configs, keras_version=version, source=str(path))
