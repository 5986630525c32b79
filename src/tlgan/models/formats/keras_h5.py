"""Reading weights out of Keras HDF5 files with h5py (no TensorFlow, no Keras).

Two layouts exist: a full model (``model.save``: weights under the group
``model_weights``, architecture JSON in the root attribute ``model_config``)
and weights only (``model.save_weights``: weights at the root). In both, the
weights group lists ``layer_names`` and each layer group lists its
``weight_names``: ``conv1/kernel:0`` from Keras 2, ``conv1/kernel`` from
Keras 3's legacy ``.h5`` (which also names a depthwise kernel ``kernel``, calls
the model class ``Functional`` and the input shape ``batch_shape``). Weights
come back keyed "layer/param" (``conv1/kernel``) in Keras layouts: conv kernels
(kh, kw, in, out), depthwise (kh, kw, C, multiplier), dense (in, out).

Files whose data lies outside them (external links, external storage,
virtual datasets) are refused before anything is read: ``refuse_external_data``.
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

    def get(self, key: str, shape: tuple[int, ...] | None = None, also: tuple[str, ...] = ()) -> np.ndarray:
        """The weight ``key`` ('layer/param'), or the first of ``also`` present (other Keras versions' names).

        TlganError if none is present or (when ``shape`` is given) the weight has another shape.
        """
        key = next((k for k in (key, *also) if k in self.weights), key)
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


def refuse_external_data(handle: Any, path: str | Path) -> None:
    """TlganError if any part of the open HDF5 file lies outside it: external links, external storage, virtual datasets.

    Walks every group through its links without following them, so nothing
    outside the file is opened or read (a dataset stored "externally" in
    /etc/passwd would otherwise read as weights).
    """
    import h5py

    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", handle)]
    while stack:
        where, group = stack.pop()
        if hash(group.id) in seen:
            continue
        seen.add(hash(group.id))
        for name in group:
            full = f"{where}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise TlganError(f"{path}: '{full}' is an external link to {link.filename!r}; "
                                 "tlgan reads only self-contained HDF5 files")
            if not isinstance(link, h5py.HardLink):
                continue  # soft links point inside the file, at objects this walk reaches anyway
            item = group[name]
            if isinstance(item, h5py.Group):
                stack.append((full, item))
            elif isinstance(item, h5py.Dataset):
                if item.external:
                    raise TlganError(f"{path}: dataset '{full}' keeps its data in another file "
                                     f"({item.external[0][0]!r}); tlgan reads only self-contained HDF5 files")
                if item.is_virtual:
                    raise TlganError(f"{path}: dataset '{full}' is a virtual dataset (data from other files); "
                                     "tlgan reads only self-contained HDF5 files")


def open_hdf5(path: str | Path, what: str) -> Any:
    """An open, read-only h5py.File of ``path`` whose data all lies inside it; one-line TlganError otherwise.

    what: the kind of file for messages ("Keras model").
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TlganError(f"{what} not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise TlganError(f"{path} is not a readable HDF5 file: {str(exc).splitlines()[0]}") from None
    try:
        refuse_external_data(handle, path)
    except BaseException:
        handle.close()
        raise
    return handle


MAX_WEIGHT_BYTES = 1 << 30  # one weight; compressed datasets can claim far more than the file holds


def read_array(dataset: Any, what: str) -> np.ndarray:
    """The numeric contents of an h5py dataset, after checking its kind and size (what: names it in messages)."""
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise TlganError(f"{what} is not a dataset")
    if dataset.dtype.kind not in "fiub":
        raise TlganError(f"{what} has dtype {dataset.dtype}, not numbers")
    if dataset.size * dataset.dtype.itemsize > MAX_WEIGHT_BYTES:
        raise TlganError(f"{what} claims {dataset.size * dataset.dtype.itemsize:,} bytes; refusing more than "
                         f"{MAX_WEIGHT_BYTES:,}")
    return np.asarray(dataset[()])


def zero_padding(config: dict[str, Any], layer: str) -> tuple[int, int, int, int]:
    """A ZeroPadding2D layer's padding as (left, right, top, bottom), from any of Keras' spellings.

    Keras accepts n, (rows, cols) and ((top, bottom), (left, right)); only channels_last data is read.
    """
    if config.get("data_format", "channels_last") not in ("channels_last", None):
        raise TlganError(f"Keras layer '{layer}': only channels_last data is supported")
    value = config.get("padding", 1)
    try:
        if isinstance(value, int):
            rows = cols = (value, value)
        elif isinstance(value[0], int):
            rows, cols = (value[0], value[0]), (value[1], value[1])
        else:
            rows, cols = tuple(value[0]), tuple(value[1])
        top, bottom = (int(v) for v in rows)
        left, right = (int(v) for v in cols)
    except (TypeError, ValueError, IndexError):
        raise TlganError(f"Keras layer '{layer}': padding {value!r} is not understood") from None
    if min(top, bottom, left, right) < 0:
        raise TlganError(f"Keras layer '{layer}': negative padding {value!r}")
    return left, right, top, bottom


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _collect_layers(config: Any, out: dict[str, dict[str, Any]]) -> None:
    """Walk a Keras model_config (functional or sequential, nested models too) collecting layer configs by name.

    Each entry is the layer's ``config`` plus its ``class_name``.
    """
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner  # Keras <= 2.2.2 Sequential: a bare list
    if not isinstance(layers, list):
        return
    for layer in layers:
        if isinstance(layer, dict) and isinstance(layer.get("config"), dict):
            name = layer.get("name") or layer["config"].get("name")
            if isinstance(name, str):
                out.setdefault(name, {**layer["config"], "class_name": layer.get("class_name")})
            _collect_layers(layer, out)


def read_keras_h5(path: str | Path) -> KerasWeights:
    """Read all weights of a Keras 2 or 3 HDF5 model or weights file; every problem is a one-line TlganError."""
    path = Path(path)
    with open_hdf5(path, "Keras HDF5 file") as handle:
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
                    weights[key] = read_array(layer_group[weight_name], f"{path}: Keras weight '{key}'")
        except KeyError as exc:
            raise TlganError(f"{path}: the weights index names an entry that is missing: {exc}") from None
        except OSError as exc:  # h5py reports damaged or truncated datasets when they are read
            raise TlganError(f"{path}: a weight cannot be read: {str(exc).splitlines()[0]}") from None
        layer_configs: dict[str, dict[str, Any]] = {}
        if "model_config" in handle.attrs:
            try:
                _collect_layers(json.loads(_text(handle.attrs["model_config"])), layer_configs)
            except (json.JSONDecodeError, RecursionError):
                raise TlganError(f"{path}: its model_config is not valid JSON (or nested too deeply)") from None
        version = _text(handle.attrs.get("keras_version", group.attrs.get("keras_version", "")))
    return KerasWeights(weights=weights, layer_configs=layer_configs, keras_version=version, source=str(path))
