"""Reading NVlabs' PyTorch network pickles (stylegan2-ada-pytorch, stylegan3) without running their code.

A release pickle is a dict (``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``). Every
network module in it is pickled through ``torch_utils.persistence``: the pickle calls
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name, state}``,
where ``module_src`` is the source of the module that defined the class, which NVlabs' loader
*executes*, and ``state`` is the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
``_init_args``, ``_init_kwargs`` and plain attributes).

Here that call builds a ``PersistentModule`` holding the class name and state; ``module_src`` is
dropped unread. Tensors are rebuilt through torch's own safe paths: a storage's bytes (a small
``torch.save`` file) are read with ``torch.load(weights_only=True)``. Everything else a pickle might
name is refused before it is called.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tlgan.errors import TlganError

from .unpickle import NUMPY_ARRAYS, NUMPY_SCALARS, PlainHolder, load_pickle


@dataclass
class PersistentModule(PlainHolder):
    """One pickled NVlabs network module: its class name and ``__dict__``; the module source is never kept.

    A PlainHolder, so that the unpickler's array pass reaches the NumPy values in ``state``.
    """

    class_name: str
    state: dict[str, Any] = field(repr=False)
    version: int = 0

    @property
    def children(self) -> dict[str, PersistentModule]:
        modules = self.state.get("_modules") or {}
        return {k: v for k, v in modules.items() if isinstance(v, PersistentModule)}

    def child(self, name: str) -> PersistentModule:
        child = self.children.get(name)
        if child is None:
            raise TlganError(f"the pickled {self.class_name} has no submodule '{name}'")
        return child

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the module (NumPy scalars turned into Python numbers)."""
        value = self.state.get(name, default)
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple[Any, ...]:
        return tuple(self.state.get("_init_args") or ())

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """(dotted name, tensor) for every parameter and persistent buffer, as ``state_dict`` names them."""
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise TlganError(f"{self.class_name}.{name} is not a tensor in the pickle")
                yield prefix + name, value
        for name, child in self.children.items():
            yield from child.tensors(f"{prefix}{name}.")


def _reconstruct_persistent_obj(meta: Any) -> PersistentModule:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: keeps the state, never the source."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise TlganError("a persistent object record is malformed (expected type 'class' and a class name)")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise TlganError(f"the persistent {meta['class_name']} has no state dict")
    return PersistentModule(class_name=meta["class_name"], state=dict(state), version=int(meta.get("version") or 0))


def _load_from_bytes(data: Any) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the bytes of a torch.save file, read weights-only."""
    if not isinstance(data, (bytes, bytearray)):
        raise TlganError("a tensor storage record does not hold bytes")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad bytes; weights_only refusals included
        raise TlganError(f"a tensor storage record is not a plain torch storage: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise TlganError(f"a tensor storage record holds {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a view of a storage read by ``_load_from_bytes``."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise TlganError("a tensor record does not refer to a storage")
    if not (isinstance(storage_offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        raise TlganError("a tensor record has a malformed shape or stride")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), False, OrderedDict())


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *state: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter(_with_state)``: the plain tensor (no hooks, no grads)."""
    if not isinstance(data, torch.Tensor):
        raise TlganError("a parameter record does not hold a tensor")
    return data


class _EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access): a plain dict here."""


PERSISTENCE_ALLOWED: dict[tuple[str, str], Any] = {
    **NUMPY_ARRAYS,
    **NUMPY_SCALARS,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocols 0-2 spell builtins the Python 2 way
    ("__builtin__", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}


def read_nvlabs_pickle(path: str | Path) -> dict[str, Any]:
    """The top-level dict of an NVlabs PyTorch pickle, with network modules as PersistentModule holders."""
    try:
        data = load_pickle(path, PERSISTENCE_ALLOWED, "NVlabs network pickle")
    except TlganError as exc:
        if "dnnlib.tflib" in str(exc):
            raise TlganError(f"{path} is a TensorFlow StyleGAN pickle (dnnlib.tflib.Network), not a PyTorch one; "
                             "load it with stylegan:FILE, which reads both") from None
        raise
    if isinstance(data, PersistentModule):
        return {"G_ema": data}
    if not isinstance(data, dict):
        raise TlganError(f"{path} does not hold a dict of networks (got {type(data).__name__})")
    return data


def pick_generator(data: dict[str, Any], path: str | Path) -> PersistentModule:
    """``G_ema`` (the moving average NVlabs renders with), else ``G``."""
    for key in ("G_ema", "G"):
        net = data.get(key)
        if isinstance(net, PersistentModule):
            return net
    raise TlganError(f"{path} holds no generator network (keys: {', '.join(map(str, data))}); expected 'G_ema'")
