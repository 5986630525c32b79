"""Reading the variables of a TensorFlow-1 ``tfutil.Network`` pickle without TensorFlow.

The PG-GAN release pickles ``(G, D, Gs)``, three ``tfutil.Network`` objects
whose state is a dict: version, name, static_kwargs, build_module_src,
build_func_name and variables, a list of (local name, ndarray). Unpickling
normally executes ``build_module_src``; here the class is mapped to a plain
holder, so the source is kept as an inert string and never run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlgan.errors import TlganError

from .unpickle import (
    NUMPY_ARRAYS,
    NUMPY_SCALARS,
    PlainHolder,
    holder_for,
    load_pickle,
    reconstructor_for,
)

_PGGAN_NETWORK = holder_for("tfutil.Network")
_DNNLIB_NETWORK = holder_for("dnnlib.tflib.network.Network")


class _PlainDict(dict):
    """Stand-in for EasyDict-style dict subclasses that may appear in static_kwargs."""


TF1_ALLOWED: dict[tuple[str, str], Any] = {
    **NUMPY_ARRAYS,
    **NUMPY_SCALARS,
    ("tfutil", "Network"): _PGGAN_NETWORK,
    ("dnnlib.tflib.network", "Network"): _DNNLIB_NETWORK,
    ("config", "EasyDict"): _PlainDict,
    ("dnnlib.util", "EasyDict"): _PlainDict,
    # Pickle protocols 0 and 1 rebuild plain objects through copyreg.
    ("copyreg", "_reconstructor"): reconstructor_for((_PGGAN_NETWORK, _DNNLIB_NETWORK)),
    ("copy_reg", "_reconstructor"): reconstructor_for((_PGGAN_NETWORK, _DNNLIB_NETWORK)),
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
}


@dataclass
class TF1Network:
    """The data of one pickled tfutil.Network: its name, build function, static kwargs and variables."""

    name: str
    build_func_name: str
    static_kwargs: dict[str, Any]
    variables: dict[str, np.ndarray] = field(repr=False)
    pickled_class: str = "tfutil.Network"


def _network_from_holder(holder: PlainHolder, path: Path) -> TF1Network:
    state = holder.state
    if not isinstance(state, dict):
        raise TlganError(f"{path}: a pickled Network has no state dict; not a TF1 network pickle")
    missing = [k for k in ("name", "build_func_name", "variables") if k not in state]
    if missing:
        raise TlganError(f"{path}: pickled Network state lacks {', '.join(missing)}")
    variables: dict[str, np.ndarray] = {}
    entries = state["variables"]
    if not isinstance(entries, (list, tuple)):
        raise TlganError(f"{path}: Network 'variables' is not a list of (name, array)")
    for entry in entries:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise TlganError(f"{path}: Network 'variables' holds an entry that is not (name, array)")
        name, value = entry
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise TlganError(f"{path}: variable '{name}' has unsupported dtype {value.dtype}")
        variables[name] = value
    kwargs = state.get("static_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise TlganError(f"{path}: Network 'static_kwargs' is not a dict")
    return TF1Network(
        name=str(state["name"]), build_func_name=str(state["build_func_name"]), static_kwargs=dict(kwargs),
        variables=variables, pickled_class=holder.original,
    )


def read_tf1_networks(path: str | Path) -> list[TF1Network]:
    """All tfutil.Network objects pickled in ``path`` (a single network or a tuple such as (G, D, Gs))."""
    path = Path(path)
    obj = load_pickle(path, TF1_ALLOWED, "TensorFlow-1 network pickle")
    items = list(obj) if isinstance(obj, (tuple, list)) else [obj]
    if not items or not all(isinstance(item, PlainHolder) for item in items):
        raise TlganError(f"{path} does not hold pickled tfutil.Network objects")
    return [_network_from_holder(item, path) for item in items]


def _built_by_g(network: TF1Network) -> bool:
    """Whether a G_* function (G_paper, G_style, ...) built the network: a generator, not a discriminator."""
    return network.build_func_name.startswith("G_")


def pick_generator(networks: list[TF1Network], path: str | Path) -> TF1Network:
    """The network to render with: Gs (the moving average of G), as the original code used.

    Release pickles are the positional tuple ``(G, D, Gs)``; networks converted by
    Karras' legacy code are named after their build function (``G_paper``,
    ``D_paper``, ``G_paper``), so the third one is taken when a G_* function built
    it, whatever the names. Other layouts: the one named 'Gs', else the only generator.
    """
    if len(networks) == 3 and _built_by_g(networks[2]):
        return networks[2]
    named = [n for n in networks if n.name == "Gs"]
    if len(named) == 1:
        return named[0]
    generators = [n for n in networks if _built_by_g(n)]
    if len(generators) == 1:
        return generators[0]
    raise TlganError(f"{path}: cannot tell which of the networks {[n.name for n in networks]} "
                     f"(built by {[n.build_func_name for n in networks]}) is the generator; "
                     "expected (G, D, Gs) or a single G_* network")


def plain_json(value: Any) -> Any:
    """``value`` with NumPy scalars turned into Python ones; None for anything JSON cannot hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    return None
