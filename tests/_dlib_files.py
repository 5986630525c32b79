"""Test helpers: dlib ``dnn`` network files written byte by byte, as dlib's ``serialize`` writes them.

``face_resnet_bytes`` writes a network with the layer layout of dlib's face-recognition ResNet
(examples/dnn_face_recognition_ex.cpp: stem, 3 blocks, down + 3, down + 2, down + 2, down, global
average, fc without bias) but tiny channel counts and random weights, so the reader and the port can
be checked without the 22 MB file, and against dlib itself (dlib checks kernel sizes, strides and
paddings when it loads, not channel counts).

Encodings (dlib/serialize.h): integers as a control byte (byte count, bit 7 = negative) and the
little-endian magnitude; floats as integer mantissa and exponent; bools as '1'/'0'; strings as
length + bytes; tensors as version 2, four dimensions, float32 little-endian.
"""

from __future__ import annotations

import math

import numpy as np


def enc_int(v: int) -> bytes:
    neg, v = v < 0, abs(v)
    body = v.to_bytes(max(1, (v.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if neg else 0)]) + body


def enc_float(v: float) -> bytes:
    m, e = math.frexp(v)
    mantissa, exponent = int(m * (1 << 24)), e - 24
    while mantissa and mantissa & 0xFF == 0:
        mantissa >>= 8
        exponent += 8
    return enc_int(mantissa) + enc_int(exponent)


def enc_str(s: str) -> bytes:
    return enc_int(len(s)) + s.encode()


def enc_bool(b: bool) -> bytes:
    return b"1" if b else b"0"


def enc_tensor(a: np.ndarray | None) -> bytes:
    if a is None:
        return enc_int(2) + b"".join(enc_int(0) for _ in range(4))
    a = np.asarray(a, dtype="<f4")
    shape = tuple(a.shape) + (1,) * (4 - a.ndim)
    return enc_int(2) + b"".join(enc_int(d) for d in shape) + a.tobytes()


def enc_alias(*shape: int) -> bytes:
    return enc_int(1) + b"".join(enc_int(d) for d in shape)


def con_record(w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> bytes:
    out, cin, nr, nc = w.shape
    params = np.concatenate([w.reshape(-1), b.reshape(-1)])
    return (enc_str("con_4") + enc_tensor(params) + enc_int(out) + enc_int(nr) + enc_int(nc) + enc_int(stride)
            + enc_int(stride) + enc_int(padding) + enc_int(padding) + enc_alias(out, cin, nr, nc) + enc_alias(1, out, 1, 1)
            + b"".join(enc_float(1.0) for _ in range(4)))


def affine_record(g: np.ndarray, b: np.ndarray) -> bytes:
    k = g.size
    return (enc_str("affine_") + enc_tensor(np.concatenate([g, b])) + enc_alias(1, k, 1, 1) + enc_alias(1, k, 1, 1)
            + enc_int(0))


def bn_record(g: np.ndarray, b: np.ndarray, running_means: np.ndarray, running_variances: np.ndarray,
              eps: float) -> bytes:
    """A batch-norm layer saved mid-training (bn_con2); dlib's affine layer reads it as g/sqrt(var + eps), b - g*mean."""
    k = g.size
    return (enc_str("bn_con2") + enc_tensor(np.concatenate([g, b])) + enc_alias(1, k, 1, 1) + enc_alias(1, k, 1, 1)
            + enc_tensor(np.zeros(k, np.float32)) + enc_tensor(np.ones(k, np.float32))
            + enc_tensor(running_means) + enc_tensor(running_variances) + enc_int(1000) + enc_int(1000)
            + b"".join(enc_float(1.0) for _ in range(4)) + enc_float(eps))


def pool_record(kind: str, n: int, stride: int) -> bytes:
    return enc_str(f"{kind}_2") + b"".join(enc_int(v) for v in (n, n, stride, stride, 0, 0))


def fc_record(w: np.ndarray) -> bytes:
    nin, nout = w.shape
    return (enc_str("fc_2") + enc_int(nout) + enc_int(nin) + enc_tensor(w.reshape(-1)) + enc_alias(nin, nout, 1, 1)
            + enc_alias(0, 0, 0, 0) + enc_int(1) + b"".join(enc_float(1.0) for _ in range(4)))


LEVELS = ((3, False, 3), (4, True, 3), (5, True, 2), (6, True, 2), (6, True, 0))   # (channels, down first, plain blocks after)


def face_resnet_layers(seed: int = 0, stem: int = 3, levels=LEVELS, outputs: int = 8):
    """The network as a list, input side first: ('con', w, b, stride, padding), ('affine', g, b), ('relu',),
    ('max_pool', 3, 2), ('avg_pool', n, stride), ('tag',), ('add_prev',), ('fc', w (in, out))."""
    rng = np.random.default_rng(seed)

    def conv(cin: int, cout: int, k: int, stride: int, padding: int):
        w = rng.normal(0, math.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        return ("con", w, rng.normal(0, 0.1, cout).astype(np.float32), stride, padding)

    def affine(c: int):
        return ("affine", rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.1, c).astype(np.float32))

    layers = [conv(3, stem, 7, 2, 0), affine(stem), ("relu",), ("max_pool", 3, 2)]
    channels = stem
    for cout, down, plain in levels:
        blocks = ([True] if down else []) + [False] * plain
        for is_down in blocks:
            layers += [("tag",), conv(channels, cout, 3, 2 if is_down else 1, 0 if is_down else 1), affine(cout), ("relu",),
                       conv(cout, cout, 3, 1, 1), affine(cout)]
            if is_down:
                layers += [("tag",), ("tag",), ("avg_pool", 2, 2)]
            layers += [("add_prev",), ("relu",)]
            channels = cout
    layers += [("avg_pool", 0, 1), ("fc", rng.normal(0, 1 / math.sqrt(channels), (channels, outputs)).astype(np.float32))]
    return layers


def net_bytes(layers, mean=(122.782, 117.001, 104.298), size: int = 150) -> bytes:
    """Serialise a loss_metric network over input_rgb_image_sized<size> as dlib does."""
    out = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    # Wrapper versions, outermost first: add_layer 2, tag/skip 1 (the innermost add_layer is the first layer).
    out += b"".join(enc_int(1 if layer[0] == "tag" else 2) for layer in reversed(layers))   # ('bn', g, b, mean, var, eps) too
    out += enc_str("input_rgb_image_sized") + b"".join(enc_float(m) for m in mean) + enc_int(size) + enc_int(size)
    for layer in layers:
        kind = layer[0]
        if kind == "tag":
            continue
        if kind == "con":
            out += con_record(layer[1], layer[2], layer[3], layer[4])
        elif kind == "affine":
            out += affine_record(layer[1], layer[2])
        elif kind == "bn":
            out += bn_record(*layer[1:])
        elif kind == "relu":
            out += enc_str("relu_")
        elif kind in ("max_pool", "avg_pool"):
            out += pool_record(kind, layer[1], layer[2])
        elif kind == "add_prev":
            out += enc_str("add_prev_")
        elif kind == "fc":
            out += fc_record(layer[1])
        out += enc_bool(True) + enc_bool(True) + enc_bool(False) + enc_tensor(None) * 3
    return out


def face_resnet_bytes(seed: int = 0, **kwargs) -> bytes:
    return net_bytes(face_resnet_layers(seed, **kwargs))


__all__ = ["enc_int", "enc_float", "enc_str", "enc_tensor", "face_resnet_layers", "net_bytes", "face_resnet_bytes"]
