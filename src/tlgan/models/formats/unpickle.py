"""Reading legacy pickles without running code from them.

A pickle names the callables that rebuild its objects (``module.name``), and
the standard unpickler imports and calls whatever is named: that is how a
pickle runs code. ``load_pickle`` allows only a fixed table of names, each
mapped to a harmless stand-in (NumPy array reconstruction with object arrays
refused, or a plain holder class); any other name is refused with a
TlganError before anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from numpy._core import multiarray as _multiarray

from tlgan.errors import TlganError


def _checked_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise TlganError("refusing a NumPy array of Python objects in a pickle")
    return dtype


def _dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """Stand-in for ``numpy.dtype`` as pickles call it: dtype('f8', False, True)."""
    if isinstance(spec, str) and spec.startswith("O"):
        raise TlganError("refusing a NumPy array of Python objects in a pickle")
    return np.dtype(spec, align=bool(align), copy=bool(copy))


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``: an empty plain ndarray, filled by BUILD."""
    if subtype is not np.ndarray:
        raise TlganError(f"refusing to rebuild an array of type {subtype!r} from a pickle")
    return _multiarray._reconstruct(np.ndarray, shape, typecode)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """Stand-in for ``numpy.core.numeric._frombuffer`` (protocol-5 arrays)."""
    dtype = _checked_dtype(dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _scalar(dtype: Any, data: Any = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar``: a NumPy scalar of a non-object dtype."""
    dtype = _checked_dtype(dtype)
    return _multiarray.scalar(dtype, data)


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocols 0-2 use to pickle bytes (e.g. array data)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise TlganError("refusing an unexpected use of _codecs.encode in a pickle")
    return text.encode(encoding)


def _both_numpy_paths(submodule: str, name: str, value: Any) -> dict[tuple[str, str], Any]:
    # NumPy 1.x pickles say numpy.core, NumPy 2.x pickles say numpy._core.
    return {(f"numpy.core.{submodule}", name): value, (f"numpy._core.{submodule}", name): value}


# Names a pickle of NumPy arrays (and NumPy scalars) needs, and nothing else.
NUMPY_ARRAYS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
    **_both_numpy_paths("multiarray", "_reconstruct", _reconstruct),
    **_both_numpy_paths("numeric", "_frombuffer", _frombuffer),
}
NUMPY_SCALARS: dict[tuple[str, str], Any] = _both_numpy_paths("multiarray", "scalar", _scalar)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``allowed`` (module, name) -> object."""

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], what: str) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise TlganError(
                f"refusing to load {self._what}: the pickle asks for '{module}.{name}', which tlgan does not allow "
                "(a pickle can run code through such names; only known data types are accepted)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise TlganError(f"refusing to load {self._what}: the pickle refers to external persistent objects")


def load_pickle(path: str | Path, allowed: Mapping[tuple[str, str], Any], what: str) -> Any:
    """Unpickle ``path`` allowing only the names in ``allowed``; every problem is a one-line TlganError.

    what: a short description used in messages (e.g. "a TL-GAN direction file").
    """
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, allowed, what).load()
    except TlganError as exc:
        raise TlganError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError, OverflowError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise TlganError(f"{path} is not a readable {what} (corrupt, truncated or another format?): {detail}") from None


class PlainHolder:
    """A stand-in for a pickled class: keeps the state it is given and does nothing else.

    Subclasses name the original class in ``original``; ``state`` is what the
    pickle's BUILD step passed to ``__setstate__``.
    """

    original: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def holder_for(qualified_name: str) -> type[PlainHolder]:
    """A fresh PlainHolder subclass standing for the class ``qualified_name`` (e.g. 'tfutil.Network')."""
    return type(f"Held_{qualified_name.replace('.', '_')}", (PlainHolder,), {"original": qualified_name})


def reconstructor_for(holders: tuple[type[PlainHolder], ...]) -> Callable[..., PlainHolder]:
    """Stand-in for ``copyreg._reconstructor`` (pickle protocols 0 and 1) that builds only ``holders``."""

    def _reconstructor(cls: Any, base: Any, state: Any) -> PlainHolder:
        if cls not in holders or base is not object or state is not None:
            raise TlganError(f"refusing to rebuild {cls!r} from a pickle")
        return cls.__new__(cls)

    return _reconstructor
