"""Reading legacy pickles without running code from them, and without letting NumPy rebuild arrays.

A pickle names the callables that rebuild its objects (``module.name``), and
the standard unpickler imports and calls whatever is named: that is how a
pickle runs code. ``load_pickle`` allows only a fixed table of names, each
mapped to a harmless stand-in; any other name is refused with a TlganError
before anything is called.

Arrays are never rebuilt by NumPy's own ``_reconstruct`` / ``ndarray.__setstate__``
/ ``numpy.dtype`` pickle paths (a crafted dtype state can make NumPy read raw
bytes as object pointers). The stand-ins only record what the pickle says; the
array is then made here from the raw bytes with a simple dtype (bool, integer,
float, complex, or fixed-width text; no fields, no objects; pickled flags are
ignored), after its size has been checked against the bytes actually given,
the file's size and ``MAX_ARRAY_BYTES``. Pickles written by NumPy 1.x
(``numpy.core.*`` names) and 2.x (``numpy._core.*``) both load.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tlgan.errors import TlganError

MAX_ARRAY_BYTES = 8 << 30  # one array; the PG-GAN release's largest variable is 32 MiB
MAX_DIMS = 32
MAX_TEXT_ITEM = 1 << 20  # bytes per item of a text array
_NUMERIC_KINDS = "biufc"
_TEXT_KINDS = "US"  # fixed-width text: plain bytes too (e.g. an array of feature names)
_SPEC = re.compile(r"^(?P<kind>[biufcUS])(?P<size>\d*)$")
_NUMERIC_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}


class _Budget:
    """Bytes the arrays of one pickle may still take: at most the file's size in all, MAX_ARRAY_BYTES each.

    Every array's bytes are in the file, so a pickle whose arrays add up to more
    repeats data (a memory bomb) and is refused before anything is allocated.
    """

    def __init__(self, file_size: int) -> None:
        self.left = file_size

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > MAX_ARRAY_BYTES:
            raise TlganError(f"refusing {what} of {nbytes:,} bytes (more than {MAX_ARRAY_BYTES:,})")
        if nbytes > self.left:
            raise TlganError(f"refusing {what} of {nbytes:,} bytes: more data than the file holds")
        self.left -= nbytes


class _DTypeSpec:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` and its pickled state; ``resolve()`` makes a plain dtype."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True) -> None:
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise TlganError(f"refusing a NumPy array of dtype {str(spec)[:40]!r} in a pickle "
                             "(only bool, integer, float, complex and text arrays are read)")
        self.kind = match["kind"]
        self.size = int(match["size"]) if match["size"] else 0
        self.byteorder = "|"
        self.elsize = -1

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]); flags are ignored.
        if not (isinstance(state, tuple) and len(state) >= 6 and state[0] in (3, 4)):
            raise TlganError("refusing a NumPy dtype with an unknown pickled state")
        byteorder, subarray, names, fields, elsize = state[1:6]
        if subarray is not None or names is not None or fields is not None:
            raise TlganError("refusing a NumPy dtype with fields or sub-arrays in a pickle")
        if byteorder not in ("<", ">", "|", "=") or not isinstance(elsize, int):
            raise TlganError("refusing a NumPy dtype with a malformed pickled state")
        self.byteorder, self.elsize = byteorder, elsize

    def resolve(self) -> np.dtype:
        if self.kind in _TEXT_KINDS:
            nbytes = self.elsize if self.elsize > 0 else self.size * (4 if self.kind == "U" else 1)
            if nbytes <= 0 or (self.kind == "U" and nbytes % 4) or nbytes > MAX_TEXT_ITEM:
                raise TlganError(f"refusing a NumPy text dtype of {nbytes:,} bytes per item in a pickle")
            count = nbytes // 4 if self.kind == "U" else nbytes
            order = "|" if self.kind == "S" else ("=" if self.byteorder == "|" else self.byteorder)
            return np.dtype(f"{order}{self.kind}{count}")
        size = self.size or (1 if self.kind == "b" else 0)
        if size not in _NUMERIC_SIZES[self.kind]:
            raise TlganError(f"refusing a NumPy dtype '{self.kind}{self.size}' in a pickle")
        order = "|" if size == 1 else ("=" if self.byteorder == "|" else self.byteorder)
        return np.dtype(f"{order}{self.kind}{size}")


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if (not isinstance(value, (tuple, list)) or len(value) > MAX_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)):
        raise TlganError(f"refusing a NumPy array of shape {str(value)[:60]} in a pickle")
    return tuple(value)


def _raw_bytes(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, str):  # Python 2 pickles carry array bytes as latin-1 text
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, pickle.PickleBuffer):
        return data.raw()
    raise TlganError("refusing a NumPy array whose data is not raw bytes (object arrays are not read)")


def _build_array(budget: _Budget, dtype: Any, shape: Any, data: Any, fortran: bool) -> np.ndarray:
    """A new array (native byte order, own memory) from raw ``data`` after every size check."""
    if not isinstance(dtype, _DTypeSpec):
        raise TlganError("refusing a NumPy array without a plain dtype in a pickle")
    dt, shape = dtype.resolve(), _shape(shape)
    raw = _raw_bytes(data)
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes != len(raw):
        raise TlganError(f"a NumPy array of shape {shape} and dtype {dt} needs {nbytes:,} bytes, "
                         f"the pickle gives {len(raw):,}")
    budget.take(nbytes, f"an array of shape {shape}")
    flat = np.frombuffer(raw, dtype=dt, count=math.prod(shape))
    array = flat.reshape(shape, order="F" if fortran else "C")
    native = dt.newbyteorder("=") if dt.kind in _NUMERIC_KINDS or dt.kind == "U" else dt
    return np.array(array, dtype=native, order="C", copy=True)


class _NDArrayName:
    """Stands for the class ``numpy.ndarray``: passed to ``_reconstruct``; calling it (a memory bomb) is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TlganError("refusing a pickle that calls numpy.ndarray directly")

    def __reduce__(self) -> Any:
        raise TlganError("internal stand-in")


class _PendingArray:
    """Stand-in for the empty array ``_reconstruct`` makes; the pickle's BUILD step gives it shape, dtype, bytes."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # NumPy's ndarray state: (version, shape, dtype, is_fortran, rawdata), or the older 4-tuple without version.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise TlganError("refusing a NumPy array with an unknown pickled state")
        shape, dtype, fortran, data = state
        self.array = _build_array(self.budget, dtype, shape, data, bool(fortran))


def numpy_names(budget: _Budget) -> dict[tuple[str, str], Any]:
    """Stand-ins for the names a pickle of NumPy arrays and scalars uses, sharing one size budget."""
    ndarray = _NDArrayName()

    def reconstruct(subtype: Any, shape: Any = None, typecode: Any = None) -> _PendingArray:
        if subtype is not ndarray:
            raise TlganError("refusing to rebuild an array of another type than numpy.ndarray from a pickle")
        return _PendingArray(budget)

    def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
        return _build_array(budget, dtype, shape, buffer, order == "F")

    def scalar(dtype: Any, data: Any = None) -> Any:
        if not isinstance(dtype, _DTypeSpec):
            raise TlganError("refusing a NumPy scalar without a plain dtype in a pickle")
        return _build_array(budget, dtype, (), data, False)[()]

    def encode(text: Any, encoding: str = "utf-8") -> bytes:
        """Stand-in for ``_codecs.encode``, which protocols 0-2 use to pickle bytes (e.g. array data)."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise TlganError("refusing an unexpected use of _codecs.encode in a pickle")
        return text.encode("latin1")

    def empty_bytes(*args: Any) -> bytes:
        """Stand-in for ``bytes()``, which protocols 0-2 use to pickle b'' (e.g. the data of an empty array)."""
        if args:
            raise TlganError("refusing an unexpected use of bytes() in a pickle")
        return b""

    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): ndarray, ("numpy", "dtype"): _DTypeSpec,
                                         ("_codecs", "encode"): encode, ("builtins", "bytes"): empty_bytes,
                                         ("__builtin__", "bytes"): empty_bytes}
    for core in ("numpy.core", "numpy._core"):  # NumPy 1.x pickles say numpy.core, 2.x numpy._core
        names[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        names[(f"{core}.multiarray", "scalar")] = scalar
        names[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return names


class _BoundPerFile:
    """Value of the NumPy names in an allowed-names table: each load binds them to that file's stand-ins."""

    def __repr__(self) -> str:
        return "<NumPy stand-in, bound per file>"


_PER_FILE = _BoundPerFile()
_NUMPY_KEYS = list(numpy_names(_Budget(0)))
# Names a pickle of NumPy arrays (and of NumPy scalars) needs, and nothing else; merge them into a table.
NUMPY_ARRAYS: dict[tuple[str, str], Any] = {key: _PER_FILE for key in _NUMPY_KEYS if key[1] != "scalar"}
NUMPY_SCALARS: dict[tuple[str, str], Any] = {key: _PER_FILE for key in _NUMPY_KEYS if key[1] == "scalar"}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``allowed`` (module, name) -> object.

    NumPy names in ``allowed`` (from NUMPY_ARRAYS, NUMPY_SCALARS) are bound to this
    file's stand-ins, which build arrays from raw bytes within ``file_size``.
    """

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any], what: str,
                 file_size: int) -> None:
        super().__init__(file, encoding="latin1")
        numpy = numpy_names(_Budget(file_size))
        self._allowed = {key: numpy[key] if value is _PER_FILE else value for key, value in allowed.items()}
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

    allowed: (module, name) -> stand-in, merged from NUMPY_ARRAYS / NUMPY_SCALARS and the file kind's own names.
    what: a short description used in messages (e.g. "a TL-GAN direction file").
    Returns the unpickled object with every array built (plain ndarrays in place of the stand-ins).
    """
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as handle:
            obj = RestrictedUnpickler(handle, allowed, what, os.fstat(handle.fileno()).st_size).load()
        return resolve_arrays(obj)
    except TlganError as exc:
        raise TlganError(f"{path}: {exc}") from None
    except RecursionError:
        raise TlganError(f"{path} is not a readable {what}: it is nested too deeply") from None
    except OSError as exc:
        raise TlganError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError, OverflowError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise TlganError(f"{path} is not a readable {what} (corrupt, truncated or another format?): {detail}") from None


def resolve_arrays(obj: Any) -> Any:
    """``obj`` with every array stand-in replaced by its array and every dtype stand-in by its dtype.

    Lists, dicts and holder states are updated in place (shared and cyclic
    references stay shared); tuples and sets are rebuilt when something inside changed.
    """
    memo: dict[int, Any] = {}

    def visit(value: Any) -> Any:
        key = id(value)
        if key in memo:
            return memo[key]
        if isinstance(value, _PendingArray):
            if value.array is None:
                raise TlganError("a NumPy array in the pickle has no data")
            memo[key] = value.array
        elif isinstance(value, _DTypeSpec):
            memo[key] = value.resolve()
        elif isinstance(value, list):
            memo[key] = value
            value[:] = [visit(v) for v in value]
        elif isinstance(value, dict):
            memo[key] = value
            items = [(visit(k), visit(v)) for k, v in value.items()]
            value.clear()
            value.update(items)
        elif isinstance(value, (tuple, set, frozenset)):
            memo[key] = value  # a cycle back to this container sees the original
            parts = [visit(v) for v in value]
            if any(p is not v for p, v in zip(parts, value)):
                memo[key] = type(value)(parts) if not isinstance(value, tuple) else tuple(parts)
        elif isinstance(value, PlainHolder):
            memo[key] = value
            value.state = visit(value.state)
        else:
            memo[key] = value
        return memo[key]

    return visit(obj)


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
