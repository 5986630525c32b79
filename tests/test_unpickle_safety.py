"""The restricted unpicklers build arrays themselves: crafted pickles (made here) neither crash nor exhaust memory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _tf1_files import dump_pickle, g_paper_variables, network_state, write_tf1_pickle

from tlgan import TlganError
from tlgan.axes.original_directions import read_original_directions
from tlgan.models.formats.tf1_network import read_tf1_networks
from tlgan.models.formats.unpickle import NUMPY_ARRAYS, NUMPY_SCALARS, load_pickle

TLGAN = str(Path(sys.executable).with_name("tlgan"))
RECONSTRUCT = np._core.multiarray._reconstruct


class _DType:
    """Pickles as numpy.dtype(spec, False, True) with the given dtype state (flags included)."""

    def __init__(self, spec: str, state: tuple) -> None:
        self.spec, self.state = spec, state

    def __reduce__(self):
        return (np.dtype, (self.spec, False, True), self.state)


class _Array:
    """Pickles as NumPy does (``_reconstruct`` then BUILD with (version, shape, dtype, fortran, raw)), any parts."""

    def __init__(self, shape, dtype, raw: bytes, fortran: bool = False) -> None:
        self.state = (1, shape, dtype, fortran, raw)

    def __reduce__(self):
        return (RECONSTRUCT, (np.ndarray, (0,), b"b"), self.state)

    def __mul__(self, other: float) -> "_Array":  # the test pickle writer scales G's variables
        return self


class _Call:
    """Pickles as a call ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def fake_pointer_array() -> _Array:
    # An object array whose dtype state drops NPY_LIST_PICKLE (flags 0): NumPy would copy these raw bytes in
    # as PyObject* pointers and crash on first use.
    return _Array((2,), _DType("O8", (3, "|", None, None, None, -1, -1, 0)), b"\x41" * 16)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TLGAN, *args], capture_output=True, text=True, timeout=120)


def test_the_fake_pointer_pickle_really_crashes_numpy(tmp_path):
    path = dump_pickle({"direction": fake_pointer_array(), "name": ["a", "b"]}, tmp_path / "evil.pkl")
    code = f"import pickle; d = pickle.load(open({str(path)!r}, 'rb')); print(repr(d['direction']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode < 0  # killed by a signal (SIGSEGV): the file is what the test says it is


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_fake_pointer_object_array_is_a_one_line_error_not_a_crash(tmp_path, numpy1):
    path = dump_pickle({"direction": fake_pointer_array(), "name": ["a", "b"]}, tmp_path / "evil.pkl", numpy1=numpy1)
    result = run("import-axes", str(path), str(tmp_path / "axes.safetensors"))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "dtype 'O8'" in lines[0]
    assert not (tmp_path / "axes.safetensors").exists()


def test_fake_pointer_array_in_a_tf1_pickle(tmp_path):
    variables = g_paper_variables(resolution=8)
    variables[1] = (variables[1][0], fake_pointer_array())
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 8)
    result = run("convert", "pggan-tf1", str(path), str(tmp_path / "g.safetensors"))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "dtype 'O8'" in result.stderr
    result = run("check-model", f"pggan:{path}")  # what serve --assets loads too
    assert result.returncode == 1 and "FAIL  load" in result.stdout and "dtype 'O8'" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "dtype, message",
    [
        (_DType("f8", (3, "<", None, ("a",), {"a": (np.dtype("f8"), 0)}, -1, -1, 0)), "fields"),
        (_DType("V16", (3, "|", None, None, None, 16, 1, 0)), "dtype 'V16'"),
        (_DType("f8", (3, "<", (np.dtype("f8"), (2,)), None, None, -1, -1, 0)), "fields or sub-arrays"),
        (_DType("M8", (4, "<", None, None, None, -1, -1, 0, {})), "dtype 'M8'"),
        (_DType("f16", (3, "<", None, None, None, -1, -1, 0)), "f16"),
    ],
    ids=["fields", "void", "subarray", "datetime", "longdouble"],
)
def test_dtypes_other_than_plain_numbers_are_refused(tmp_path, dtype, message):
    path = dump_pickle({"direction": _Array((2,), dtype, b"\0" * 16), "name": ["a"]}, tmp_path / "d.pkl")
    with pytest.raises(TlganError, match=message):
        read_original_directions(path)


def test_memory_bomb_calling_ndarray_fails_fast(tmp_path):
    path = dump_pickle(_Call(np.ndarray, (50_000_000, 3), "f8"), tmp_path / "bomb.pkl", protocol=2)
    assert path.stat().st_size < 120
    start = time.perf_counter()
    with pytest.raises(TlganError, match="numpy.ndarray directly"):
        load_pickle(path, NUMPY_ARRAYS, "test pickle")
    assert time.perf_counter() - start < 1.0
    result = run("import-axes", str(path), str(tmp_path / "a.safetensors"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "numpy.ndarray" in result.stderr


@pytest.mark.parametrize(
    "payload, message",
    [
        (_Array((50_000_000, 3), _DType("f8", (3, "<", None, None, None, -1, -1, 0)), b"\0" * 8), "needs 1,200,000,000"),
        (_Call(RECONSTRUCT, np.ndarray, (50_000_000, 3), b"b"), "no data"),
        (_Array((2**62, 2**62), _DType("f8", (3, "<", None, None, None, -1, -1, 0)), b""), "needs"),
        (_Array((-1,), _DType("f8", (3, "<", None, None, None, -1, -1, 0)), b""), "shape"),
        (_Array((1,), _DType("U9999999999", (3, "<", None, None, None, 4 * 9999999999, 4, 8)), b""), "per item"),
    ],
    ids=["short-data", "never-built", "overflowing-shape", "negative-shape", "huge-text"],
)
def test_sizes_are_checked_before_allocating(tmp_path, payload, message):
    path = dump_pickle({"direction": payload, "name": ["a"]}, tmp_path / "d.pkl")
    start = time.perf_counter()
    with pytest.raises(TlganError, match=message):
        read_original_directions(path)
    assert time.perf_counter() - start < 1.0


def test_repeating_one_buffer_is_a_memory_bomb_too(tmp_path):
    # 1 MB of bytes referenced by 200 arrays: the pickle is 1 MB, the arrays would be 200 MB.
    raw = b"\0" * (1 << 20)
    dtype = _DType("f8", (3, "<", None, None, None, -1, -1, 0))
    path = dump_pickle([_Array((1 << 17,), dtype, raw) for _ in range(200)], tmp_path / "d.pkl")
    assert path.stat().st_size < 2 << 20
    with pytest.raises(TlganError, match="more data than the file holds"):
        load_pickle(path, NUMPY_ARRAYS, "test pickle")


def test_protocol5_buffers_are_checked(tmp_path):
    frombuffer = np._core.numeric._frombuffer
    dtype = _DType("f8", (3, "<", None, None, None, -1, -1, 0))
    path = dump_pickle(_Call(frombuffer, bytearray(16), dtype, (1000, 1000), "C"), tmp_path / "d.pkl", protocol=5)
    with pytest.raises(TlganError, match="needs 8,000,000 bytes"):
        load_pickle(path, NUMPY_ARRAYS, "test pickle")


ARRAYS = {
    "f4": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "f8-fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4) / 3),
    "f2": np.linspace(-2, 2, 5, dtype=np.float16),
    ">f4": np.arange(5, dtype=">f4"),
    "i1": np.array([-128, 0, 127], np.int8),
    "<i8": np.array([-(2**62), 5], np.int64),
    ">u2": np.array([1, 65535], ">u2"),
    "bool": np.array([True, False, True]),
    "c16": np.array([1 + 2j, -3j]),
    "c8": np.array([1 + 2j], np.complex64),
    "0-d": np.array(3.5, np.float32),
    "empty": np.zeros((0, 4), np.float32),
    "text": np.array(["Smiling", "Male"]),
    "bytes": np.array([b"ab", b"c"]),
}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_plain_arrays_and_scalars_round_trip(tmp_path, protocol, numpy1):
    obj = {"arrays": dict(ARRAYS), "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True)],
           "shared": (ARRAYS["f4"], ARRAYS["f4"]), "dtype": np.dtype("f4")}
    path = dump_pickle(obj, tmp_path / "a.pkl", protocol=protocol, numpy1=numpy1)
    assert (b"numpy.core" in path.read_bytes()) == numpy1
    got = load_pickle(path, {**NUMPY_ARRAYS, **NUMPY_SCALARS}, "test pickle")
    for name, expected in ARRAYS.items():
        value = got["arrays"][name]
        assert type(value) is np.ndarray and value.flags.writeable and value.flags.owndata, name
        assert value.dtype == expected.dtype.newbyteorder("=") or value.dtype.kind == "S", name
        np.testing.assert_array_equal(value, expected, err_msg=name)
    assert [type(s) for s in got["scalars"]] == [np.float32, np.int64, np.bool_] and got["scalars"][0] == 1.5
    assert got["shared"][0] is got["shared"][1]
    assert got["dtype"] == np.dtype("f4")


def test_deep_nesting_is_a_one_line_error(tmp_path):
    data = b"\x80\x04" + b"]" * 200_000 + b"a" * 199_999 + b"."  # [[[[...]]]] 200k deep, built without recursion
    path = tmp_path / "deep.pkl"
    path.write_bytes(data)
    with pytest.raises(TlganError, match="nested too deeply|not a readable"):
        read_original_directions(path)


def test_scalars_and_arrays_in_tf1_network_state(tmp_path):
    """A TF1 state with NumPy scalars in static_kwargs (as EasyDicts held them) and NumPy 1.x names."""
    import types

    module = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "tfutil", "Network"
    module.Network = Network
    sys.modules["tfutil"] = module
    try:
        state = network_state("Gs", "G_paper", g_paper_variables(resolution=8), {"resolution": np.int64(8),
                              "fmap_max": np.float32(32)}, "")
        path = dump_pickle(Network(state), tmp_path / "g.pkl", protocol=2, numpy1=True)
    finally:
        del sys.modules["tfutil"]
    [net] = read_tf1_networks(path)
    assert net.static_kwargs["resolution"] == 8 and isinstance(net.static_kwargs["resolution"], np.int64)
    assert net.variables["4x4/Dense/weight"].dtype == np.float32
