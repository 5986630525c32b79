"""Test helpers: PG-GAN TF1 pickles built like the release files, and an independent NumPy G_paper.

The pickle holds ``(G, D, Gs)``, objects of a class ``tfutil.Network`` (a fake
module made here) whose ``__getstate__`` returns the dict the real
tfutil.Network returned: version, name, static_kwargs, build_module_src,
build_func_name, variables [(local name, ndarray)]. Variable names, shapes
and creation order follow networks.G_paper.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np


def nf(stage: int, fmap_base: int, fmap_max: int) -> int:
    return min(int(fmap_base / (2.0 ** stage)), fmap_max)


def g_paper_variables(resolution: int = 32, fmap_base: int = 128, fmap_max: int = 32, fused: bool = False,
                      lod: float = 0.0, seed: int = 0, num_channels: int = 3) -> list[tuple[str, np.ndarray]]:
    """G_paper's variables in creation order (linear structure), random N(0, 1) weights as TF initialises them."""
    rng = np.random.default_rng(seed)
    log2 = int(np.log2(resolution))
    latent = nf(0, fmap_base, fmap_max)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    bias = lambda n: (0.2 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    out: list[tuple[str, np.ndarray]] = [("lod", np.float32(lod) * np.ones((), np.float32))]
    for res in range(2, log2 + 1):
        c_in, c = nf(res - 2, fmap_base, fmap_max), nf(res - 1, fmap_base, fmap_max)
        scope = f"{2 ** res}x{2 ** res}"
        if res == 2:
            out += [(f"{scope}/Dense/weight", f32(latent, c * 16)), (f"{scope}/Dense/bias", bias(c)),
                    (f"{scope}/Conv/weight", f32(3, 3, c, c)), (f"{scope}/Conv/bias", bias(c))]
        else:
            if fused:
                out += [(f"{scope}/Conv0_up/weight", f32(3, 3, c, c_in)), (f"{scope}/Conv0_up/bias", bias(c))]
            else:
                out += [(f"{scope}/Conv0/weight", f32(3, 3, c_in, c)), (f"{scope}/Conv0/bias", bias(c))]
            out += [(f"{scope}/Conv1/weight", f32(3, 3, c, c)), (f"{scope}/Conv1/bias", bias(c))]
        out += [(f"ToRGB_lod{log2 - res}/weight", f32(1, 1, c, num_channels)),
                (f"ToRGB_lod{log2 - res}/bias", bias(num_channels))]
    return out


def d_paper_variables(resolution: int = 32, fmap_base: int = 128, fmap_max: int = 32, seed: int = 1) -> list[tuple[str, np.ndarray]]:
    """A few of D_paper's variables, so that the pickle's D looks like the real one."""
    rng = np.random.default_rng(seed)
    log2 = int(np.log2(resolution))
    out: list[tuple[str, np.ndarray]] = [("lod", np.zeros((), np.float32))]
    for res in range(log2, 2, -1):
        c = nf(res - 1, fmap_base, fmap_max)
        out.append((f"FromRGB_lod{log2 - res}/weight", rng.standard_normal((1, 1, 3, c)).astype(np.float32)))
        out.append((f"{2 ** res}x{2 ** res}/Conv0/weight", rng.standard_normal((3, 3, c, c)).astype(np.float32)))
    out.append(("4x4/Dense1/weight", rng.standard_normal((nf(0, fmap_base, fmap_max), 1)).astype(np.float32)))
    return out


def _fake_tfutil() -> types.ModuleType:
    module = types.ModuleType("tfutil")

    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    Network.__module__ = "tfutil"
    Network.__qualname__ = "Network"
    module.Network = Network
    return module


def network_state(name: str, func: str, variables: list, static_kwargs: dict, src: str) -> dict:
    return {"version": 2, "name": name, "static_kwargs": static_kwargs, "build_module_src": src,
            "build_func_name": func, "variables": variables}


class Numpy1Pickler(pickle._Pickler):
    """A pickler that names NumPy's functions as NumPy 1.x did (``numpy.core.multiarray``), at any protocol.

    NumPy 2 moved them to ``numpy._core``; files pickled in 2018 name ``numpy.core``.
    """

    def save_global(self, obj, name=None):  # noqa: ANN001
        module = getattr(obj, "__module__", None) or ""
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        module = "numpy.core" + module[len("numpy._core"):]
        name = name or obj.__qualname__
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)
        return None


def dump_pickle(obj: object, path: Path, protocol: int = 4, numpy1: bool = False) -> Path:
    """Pickle ``obj`` into ``path``; ``numpy1``: with NumPy 1.x names, as the 2018 files were written."""
    with open(path, "wb") as handle:
        if numpy1:
            Numpy1Pickler(handle, protocol=protocol).dump(obj)
        else:
            pickle.dump(obj, handle, protocol=protocol)
    return path


def write_tf1_pickle(path: Path, g_vars: list, resolution: int, protocol: int = 4, build_func_name: str = "G_paper",
                     build_module_src: str = "raise RuntimeError('build_module_src must never run')",
                     extra_static: dict | None = None, names: tuple[str, str, str] = ("G", "D", "Gs"),
                     numpy1: bool = False) -> Path:
    """Pickle (G, D, Gs) like the PG-GAN release; G and Gs share ``g_vars`` (Gs is what is used).

    names: the networks' names; Karras' converted release names them after their build
    functions, ("G_paper", "D_paper", "G_paper"). numpy1: NumPy 1.x names (``numpy.core``).
    """
    static = {"num_channels": 3, "resolution": resolution, "label_size": 0, **(extra_static or {})}
    module = _fake_tfutil()
    saved = sys.modules.get("tfutil")
    sys.modules["tfutil"] = module
    try:
        g_other = [(n, v * 0.5) for n, v in g_vars]  # G differs from Gs: loading the wrong one would show
        networks = (
            module.Network(network_state(names[0], build_func_name, g_other, static, build_module_src)),
            module.Network(network_state(names[1], "D_paper", d_paper_variables(resolution), static, build_module_src)),
            module.Network(network_state(names[2], build_func_name, g_vars, static, build_module_src)),
        )
        dump_pickle(networks, path, protocol=protocol, numpy1=numpy1)
    finally:
        if saved is None:
            del sys.modules["tfutil"]
        else:
            sys.modules["tfutil"] = saved
    return path


# --- an independent NumPy forward pass of G_paper (float64) -----------------------------------------
def _pixel_norm(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)


def _lrelu(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.2 * x, x)


def _conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """TF conv2d 'SAME', stride 1, NCHW input, (k, k, in, out) kernel: explicit sum over kernel taps."""
    k = w.shape[0]
    p = k // 2
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, w.shape[3], h, wd))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nchw,co->nohw", xp[:, :, dy:dy + h, dx:dx + wd], w[dy, dx])
    return out


def _upscale(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=2).repeat(2, axis=3)


def _fused_up_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """TF upscale2d_conv2d: 4x4 kernel from shifted sums, then conv2d_transpose (stride 2, SAME) by scattering."""
    wp = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    k4 = wp[1:, 1:] + wp[:-1, 1:] + wp[1:, :-1] + wp[:-1, :-1]  # (4, 4, out, in)
    n, _, h, wd = x.shape
    out = np.zeros((n, k4.shape[2], 2 * h + 2, 2 * wd + 2))
    for ky in range(4):
        for kx in range(4):
            out[:, :, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += np.einsum("nihw,oi->nohw", x, k4[ky, kx])
    return out[:, :, 1:2 * h + 1, 1:2 * wd + 1]


def numpy_g_paper(variables: list[tuple[str, np.ndarray]], z: np.ndarray) -> np.ndarray:
    """G_paper (linear structure, use_wscale, pixel-norm, leaky ReLU) on z (N, D) -> (N, 3, R, R), not clipped."""
    v = {name: np.asarray(value, np.float64) for name, value in variables}
    lod_in = float(v["lod"])
    log2 = 2
    while f"{2 ** (log2 + 1)}x{2 ** (log2 + 1)}/Conv1/weight" in v:
        log2 += 1

    def he(w: np.ndarray, gain: float = np.sqrt(2), fan_in: float | None = None) -> np.ndarray:
        fan_in = np.prod(w.shape[:-1]) if fan_in is None else fan_in
        return w * (gain / np.sqrt(fan_in))

    def layer(x: np.ndarray, scope: str) -> np.ndarray:
        return _pixel_norm(_lrelu(_conv_same(x, he(v[f"{scope}/weight"])) + v[f"{scope}/bias"][None, :, None, None]))

    def torgb(x: np.ndarray, res: int) -> np.ndarray:
        scope = f"ToRGB_lod{log2 - res}"
        return _conv_same(x, he(v[f"{scope}/weight"], gain=1.0)) + v[f"{scope}/bias"][None, :, None, None]

    x = _pixel_norm(z.astype(np.float64))
    w = v["4x4/Dense/weight"]
    x = (x @ he(w, gain=np.sqrt(2) / 4)).reshape(len(z), -1, 4, 4)
    x = _pixel_norm(_lrelu(x + v["4x4/Dense/bias"][None, :, None, None]))
    x = layer(x, "4x4/Conv")
    images = torgb(x, 2)
    for res in range(3, log2 + 1):
        scope = f"{2 ** res}x{2 ** res}"
        if f"{scope}/Conv0_up/weight" in v:
            wf = v[f"{scope}/Conv0_up/weight"]
            y = _fused_up_conv(x, he(wf, fan_in=9 * wf.shape[3]))
            x = _pixel_norm(_lrelu(y + v[f"{scope}/Conv0_up/bias"][None, :, None, None]))
        else:
            x = layer(_upscale(x), f"{scope}/Conv0")
        x = layer(x, f"{scope}/Conv1")
        new = torgb(x, res)
        t = np.clip(lod_in - (log2 - res), 0.0, 1.0)
        images = new + (_upscale(images) - new) * t
    return images
