"""Reading networks saved by dlib's ``dnn`` module (``serialize(net, file)``), without dlib.

The format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h):

- Integers: one control byte (low 4 bits: byte count 1..8; bit 7: negative), then that many
  bytes, little-endian magnitude. Unsigned integers use the same encoding without a sign.
- Floats and doubles: an integer mantissa then an integer exponent: value = mantissa * 2**exponent
  (exponent 32767, 32766, 32765 mean +inf, -inf, NaN).
- bool: the byte ``'1'`` or ``'0'``. Strings: an integer length, then the bytes.
- A tensor: integer version 2, four integers (num_samples, k, nr, nc), then that many float32,
  little-endian, in (n, k, r, c) order. An alias tensor (a shape into a layer's ``params``):
  version 1 and the four integers, no data.
- A network is nested: ``add_loss_layer`` writes version 1, its loss record, then its
  subnetwork. ``add_layer`` writes version 2 then its subnetwork *before* its own layer record
  and bookkeeping (three bools and three tensors). Tag and skip layers write version 1 and their
  subnetwork, nothing else. The innermost ``add_layer`` (over the input layer) writes version 2
  or 3, the input record, its layer record, three bools, three tensors and (version 3) the
  sample expansion factor. So a file starts with the versions of all wrappers, outermost
  first, then the input record, then each layer's record from the input upwards.

The file does not say which tag a tag layer, skip layer or ``add_prev`` layer refers to, nor
tell tag from skip: those come from the network's C++ type, which the model code supplies
(``tlgan.models.extractors.identity`` checks the layer kinds against its definition). Only the
layer types that dlib's face-recognition ResNet uses, plus ``bn_`` (read as the affine layer
it becomes at inference), are read; anything else is refused.

Safety: the whole file is read as bytes and nothing in it is executed; every count and size is
checked against the bytes that remain before anything is allocated; a truncated, corrupt or
foreign file raises a one-line ``TlganError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlgan.errors import TlganError

MAX_FILE_BYTES = 1 << 30        # dlib's networks are tens of MB; refuse anything above 1 GiB unread
MAX_WRAPPERS = 10_000           # nesting depth of a network
MAX_STRING = 256                # layer and input names are short


@dataclass(frozen=True)
class DlibLayer:
    """One layer, input side first.

    kind: 'con', 'affine', 'relu', 'max_pool', 'avg_pool', 'add_prev', 'fc', or 'tag' (a tag or
    skip layer: the file does not tell them apart).
    config: integers/floats/bools of the record (e.g. num_filters, nr, nc, stride_y, stride_x,
    padding_y, padding_x, use_bias).
    weights: NumPy float32 arrays: con 'filters' (out, in, nr, nc) and 'biases' (out,) when used;
    affine 'gamma', 'beta' (k,); fc 'weights' (inputs, outputs) and 'biases' (outputs,) when used.
    """

    kind: str
    config: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNet:
    """A dlib network read from a file: its loss, its input layer and its layers, input side first."""

    loss: str                    # e.g. 'loss_metric'
    loss_config: dict
    input: str                   # e.g. 'input_rgb_image_sized'
    input_config: dict           # avg_red, avg_green, avg_blue (0..255) and, when sized, nr, nc
    layers: tuple[DlibLayer, ...]
    source: str = ""

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


class _Reader:
    """A cursor over the file's bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def fail(self, why: str) -> TlganError:
        return TlganError(f"{self.source} is not a readable dlib network file: {why} (at byte {self.pos})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise self.fail(f"truncated: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self, what: str) -> int:
        control = self.take(1, what)[0]
        size, negative = control & 0x0F, bool(control & 0x80)
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if negative else value

    def count(self, what: str, limit: int) -> int:
        value = self.integer(what)
        if not 0 <= value <= limit:
            raise self.fail(f"{what} {value} is out of range 0..{limit}")
        return value

    def real(self, what: str) -> float:
        mantissa, exponent = self.integer(what), self.integer(what)
        if exponent == 32767:
            return math.inf
        if exponent == 32766:
            return -math.inf
        if exponent == 32765:
            return math.nan
        if not -32768 <= exponent < 32765:
            raise self.fail(f"bad float exponent {exponent} for {what}")
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise self.fail(f"float out of range for {what}") from None

    def boolean(self, what: str) -> bool:
        byte = self.take(1, what)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r} for {what}")
        return byte == b"1"

    def string(self, what: str) -> str:
        n = self.count(f"length of {what}", MAX_STRING)
        raw = self.take(n, what)
        if not all(32 <= b < 127 for b in raw):
            raise self.fail(f"{what} is not a printable name")
        return raw.decode("ascii")

    def tensor(self, what: str) -> np.ndarray:
        version = self.integer(f"{what} version")
        if version != 2:
            raise self.fail(f"{what}: tensor version {version}, expected 2")
        dims = tuple(self.count(f"{what} dimension", 1 << 40) for _ in range(4))
        n = math.prod(dims)
        if n * 4 > len(self.data) - self.pos:
            raise self.fail(f"truncated: {what} of shape {dims} needs {n * 4} bytes, {len(self.data) - self.pos} left")
        return np.frombuffer(self.take(n * 4, what), dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self, what: str) -> tuple[int, ...]:
        version = self.integer(f"{what} version")
        if version != 1:
            raise self.fail(f"{what}: alias tensor version {version}, expected 1")
        return tuple(self.count(f"{what} dimension", 1 << 40) for _ in range(4))

    def peek_small_int(self) -> int | None:
        """The next integer if it is a one-byte non-negative value (a wrapper's version), else None; does not move."""
        if self.pos + 2 <= len(self.data) and self.data[self.pos] == 0x01:
            return self.data[self.pos + 1]
        return None


def _slice(params: np.ndarray, offset: int, shape: tuple[int, ...], reader: _Reader, what: str) -> np.ndarray:
    """The alias ``shape`` at ``offset`` into a layer's flat params (checked)."""
    flat = params.reshape(-1)
    n = math.prod(shape)
    if offset + n > flat.size:
        raise reader.fail(f"{what} of shape {shape} at {offset} lies outside params of size {flat.size}")
    return flat[offset:offset + n].reshape(shape).copy()


def _con(r: _Reader, version: str) -> DlibLayer:
    if version not in ("con_4", "con_5", "con_6"):
        raise r.fail(f"unsupported convolution record '{version}'")
    params = r.tensor("con params")
    cfg = {"num_filters": r.integer("num_filters"), "nr": r.integer("nr"), "nc": r.integer("nc"),
           "stride_y": r.integer("stride_y"), "stride_x": r.integer("stride_x"),
           "padding_y": r.integer("padding_y"), "padding_x": r.integer("padding_x")}
    filters = r.alias("filters")
    r.alias("biases")                     # (1, num_filters, 1, 1), or empty without biases
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        r.real(name)
    cfg["use_bias"] = r.boolean("use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6" and r.boolean("use_relu"):
        raise r.fail("convolutions with a fused relu are not supported")
    if any(cfg[k] <= 0 for k in ("num_filters", "nr", "nc", "stride_y", "stride_x")) or \
            cfg["padding_y"] < 0 or cfg["padding_x"] < 0:
        raise r.fail(f"bad convolution sizes {cfg}")
    if filters[0] != cfg["num_filters"] or filters[2:] != (cfg["nr"], cfg["nc"]):
        raise r.fail(f"filter shape {filters} disagrees with the convolution's sizes")
    weights = {"filters": _slice(params, 0, filters, r, "filters")}
    if cfg["use_bias"]:
        weights["biases"] = _slice(params, math.prod(filters), (cfg["num_filters"],), r, "biases")
    expected = math.prod(filters) + (cfg["num_filters"] if cfg["use_bias"] else 0)
    if params.size != expected:
        raise r.fail(f"convolution params hold {params.size} values, expected {expected}")
    return DlibLayer("con", cfg, weights)


def _affine(r: _Reader, version: str) -> DlibLayer:
    if version in ("bn_con2", "bn_fc2"):
        # A batch-norm layer saved mid-training: at inference it is the affine layer dlib builds from it.
        params = r.tensor("bn params")
        gamma, beta = r.alias("gamma"), r.alias("beta")
        r.tensor("means"), r.tensor("invstds")
        means, variances = r.tensor("running_means"), r.tensor("running_variances")
        r.integer("num_updates"), r.integer("running_stats_window_size")
        for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            r.real(name)
        eps = r.real("eps")
        g = _slice(params, 0, gamma, r, "gamma").reshape(-1)
        b = _slice(params, math.prod(gamma), beta, r, "beta").reshape(-1)
        if means.size != g.size or variances.size != g.size:
            raise r.fail("batch-norm statistics do not match its parameters")
        scale = g / np.sqrt(variances.reshape(-1) + eps)
        return DlibLayer("affine", {"mode": "conv" if version == "bn_con2" else "fc"},
                         {"gamma": scale.astype(np.float32), "beta": (b - scale * means.reshape(-1)).astype(np.float32)})
    if version not in ("affine_", "affine_2"):
        raise r.fail(f"unsupported affine record '{version}'")
    params = r.tensor("affine params")
    gamma, beta = r.alias("gamma"), r.alias("beta")
    mode = r.integer("mode")
    disabled = r.boolean("disabled") if version == "affine_2" else False
    if disabled:
        raise r.fail("disabled affine layers are not supported")
    if mode not in (0, 1) or gamma != beta:
        raise r.fail(f"bad affine layer (mode {mode}, gamma {gamma}, beta {beta})")
    weights = {"gamma": _slice(params, 0, gamma, r, "gamma").reshape(-1),
               "beta": _slice(params, math.prod(gamma), beta, r, "beta").reshape(-1)}
    # dlib's layer_mode: CONV_MODE = 0 (one scale per channel), FC_MODE = 1 (one per value).
    return DlibLayer("affine", {"mode": "conv" if mode == 0 else "fc"}, weights)


def _pool(r: _Reader, version: str, kind: str) -> DlibLayer:
    if version != f"{kind}_2":
        raise r.fail(f"unsupported pooling record '{version}'")
    cfg = {"nr": r.integer("nr"), "nc": r.integer("nc"), "stride_y": r.integer("stride_y"),
           "stride_x": r.integer("stride_x"), "padding_y": r.integer("padding_y"), "padding_x": r.integer("padding_x")}
    if any(cfg[k] < 0 for k in cfg) or cfg["stride_y"] <= 0 or cfg["stride_x"] <= 0:
        raise r.fail(f"bad pooling sizes {cfg}")
    return DlibLayer(kind, cfg)


def _fc(r: _Reader, version: str) -> DlibLayer:
    if version not in ("fc_2", "fc_3"):
        raise r.fail(f"unsupported fully connected record '{version}'")
    outputs, inputs = r.count("num_outputs", 1 << 31), r.count("num_inputs", 1 << 31)
    params = r.tensor("fc params")
    w_shape = r.alias("weights")
    r.alias("biases")                     # (1, num_outputs, 1, 1), or empty without biases
    bias_mode = r.integer("bias mode")
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        r.real(name)
    use_bias = r.boolean("use_bias") if version == "fc_3" else True
    use_bias = use_bias and bias_mode == 0          # dlib's fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    if w_shape[:2] != (inputs, outputs):
        raise r.fail(f"fc weights {w_shape} disagree with {inputs} inputs, {outputs} outputs")
    weights = {"weights": _slice(params, 0, (inputs, outputs), r, "fc weights")}
    if use_bias:
        weights["biases"] = _slice(params, inputs * outputs, (outputs,), r, "fc biases")
    return DlibLayer("fc", {"num_outputs": outputs, "num_inputs": inputs, "use_bias": use_bias}, weights)


def _layer(r: _Reader) -> DlibLayer:
    """One layer record (the ``details`` of an add_layer)."""
    version = r.string("layer name")
    if version.startswith("con_"):
        return _con(r, version)
    if version.startswith(("affine_", "bn_")):
        return _affine(r, version)
    if version in ("relu_", "relu_2"):
        if version == "relu_2" and r.boolean("disabled"):
            raise r.fail("disabled relu layers are not supported")
        return DlibLayer("relu")
    if version.startswith("max_pool_"):
        return _pool(r, version, "max_pool")
    if version.startswith("avg_pool_"):
        return _pool(r, version, "avg_pool")
    if version == "add_prev_":
        return DlibLayer("add_prev")
    if version.startswith("fc_"):
        return _fc(r, version)
    raise r.fail(f"unsupported layer type '{version}'")


def _bookkeeping(r: _Reader, innermost_version: int | None) -> None:
    """The flags and cached tensors an add_layer writes after its layer record (values unused).

    Three bools, then x_grad, cached_output and params_grad (grad_final for the innermost layer),
    then, for an innermost layer of version 3, the sample expansion factor.
    """
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "output_and_gradient_disabled"):
        r.boolean(name)
    for name in ("x_grad", "cached_output", "params_grad"):
        r.tensor(name)
    if innermost_version == 3:
        r.integer("sample_expansion_factor")


def _input(r: _Reader) -> tuple[str, dict]:
    name = r.string("input layer name")
    if name not in ("input_rgb_image_sized", "input_rgb_image"):
        raise r.fail(f"unsupported input layer '{name}'")
    cfg = {"avg_red": r.real("avg_red"), "avg_green": r.real("avg_green"), "avg_blue": r.real("avg_blue")}
    if name == "input_rgb_image_sized":
        cfg["nr"], cfg["nc"] = r.count("input rows", 1 << 16), r.count("input columns", 1 << 16)
    return name, cfg


def _loss(r: _Reader) -> tuple[str, dict]:
    name = r.string("loss name")
    if name == "loss_metric_":
        return "loss_metric", {"margin": 0.1, "distance_threshold": 0.75}
    if name == "loss_metric_2":
        return "loss_metric", {"margin": r.real("margin"), "distance_threshold": r.real("distance_threshold")}
    raise r.fail(f"unsupported loss layer '{name}'")


def parse_dlib_net(data: bytes, source: str = "<bytes>") -> DlibNet:
    """Parse a serialised dlib network (with a loss layer) from bytes. See the module docstring."""
    r = _Reader(data, source)
    if data[:3] == b"BZh":
        raise TlganError(f"{source} is bzip2-compressed; decompress it first (dlib's .dat.bz2 downloads are)")
    if r.integer("loss layer version") != 1:
        r.pos = 0
        raise r.fail("does not start with a dlib loss layer")
    loss, loss_cfg = _loss(r)
    wrappers: list[int] = []          # outermost first: 2 = add_layer, 1 = tag or skip layer
    while (v := r.peek_small_int()) in (1, 2, 3):
        if len(wrappers) >= MAX_WRAPPERS:
            raise r.fail(f"more than {MAX_WRAPPERS} nested layers")
        wrappers.append(r.integer("layer version"))
        if v == 3:
            break
    if not wrappers or wrappers[-1] not in (2, 3):
        raise r.fail("the innermost layer is not a computational layer over the input")
    if any(v == 3 for v in wrappers[:-1]):
        raise r.fail("layer version 3 found above the innermost layer")
    input_name, input_cfg = _input(r)
    layers: list[DlibLayer] = []
    inner = wrappers[-1]
    layers.append(_layer(r))
    _bookkeeping(r, inner)
    for version in reversed(wrappers[:-1]):
        if version == 1:
            layers.append(DlibLayer("tag"))
        else:
            layers.append(_layer(r))
            _bookkeeping(r, None)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected bytes after the network")
    return DlibNet(loss, loss_cfg, input_name, input_cfg, tuple(layers), source)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read a dlib network file (e.g. ``dlib_face_recognition_resnet_model_v1.dat``). One-line TlganError on failure."""
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"dlib network file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TlganError(f"{path} is {size} bytes, larger than any dlib network tlgan reads ({MAX_FILE_BYTES})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlganError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise TlganError(f"{path} is empty, not a dlib network file")
    return parse_dlib_net(data, str(path))


__all__ = ["DlibLayer", "DlibNet", "parse_dlib_net", "read_dlib_net"]
