"""PG-GAN: the generator of Karras et al., "Progressive Growing of GANs" (ICLR 2018), in PyTorch.

This is ``G_paper`` of tkarras/progressive_growing_of_gans, the network of
``karras2018iclr-celebahq-1024x1024.pkl`` that TL-GAN used:

    z (N, D) -> pixel-norm -> dense to (C4, 4, 4) -> lrelu -> pixel-norm -> 3x3 conv
    per level 8x8 ... RxR: nearest 2x upsample + 3x3 conv (or the fused
      transposed-conv form, 'Conv0_up'), 3x3 conv, each with lrelu 0.2 and pixel-norm
    ToRGB: 1x1 conv of the last level -> (N, 3, R, R), nominally in [-1, 1]

Weights are stored as trained ("equalised learning rate"): each layer
multiplies its weight by the He constant gain / sqrt(fan_in) at run time.
Any resolution and channel count the variables describe is built from the
variables themselves. Files: the TF1 pickle (read through a restricted
unpickler; its ``build_module_src`` never runs) or a ``.safetensors`` written
by ``convert_tf1_to_safetensors`` holding the same variables under the same
names.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlgan.atomic import atomic_path
from tlgan.errors import TlganError
from tlgan.models.formats.tf1_network import (
    pick_generator,
    plain_json,
    read_tf1_networks,
)
from tlgan.safefile import read_tlgan_file

from .base import Generator

FORMAT = "tlgan.pggan"
VERSION = 1
# Static kwargs of G_paper that change the computation (others, e.g. fmap_base,
# only change shapes, which are read from the variables).
_BEHAVIOUR_KWARGS = ("normalize_latents", "use_wscale", "use_pixelnorm", "pixelnorm_epsilon", "use_leakyrelu")


@dataclass(frozen=True)
class PGGANConfig:
    """Architecture of one G_paper network, as far as the forward pass needs it.

    channels: feature maps per level, 4x4 first (len = log2(resolution) - 1).
    fused: per level from 8x8 on, whether it upsamples with the fused
    transposed convolution ('Conv0_up') instead of nearest + conv ('Conv0').
    """

    latent_dim: int
    resolution: int
    channels: tuple[int, ...]
    fused: tuple[bool, ...]
    num_channels: int = 3
    normalize_latents: bool = True
    use_wscale: bool = True
    use_pixelnorm: bool = True
    pixelnorm_epsilon: float = 1e-8
    use_leakyrelu: bool = True


def _require(variables: Mapping[str, np.ndarray], name: str, ndim: int, source: str) -> np.ndarray:
    if name not in variables:
        raise TlganError(f"{source}: variable '{name}' is missing; not a complete PG-GAN G_paper network")
    value = variables[name]
    if value.ndim != ndim:
        raise TlganError(f"{source}: variable '{name}' has shape {tuple(value.shape)}, expected {ndim} dimensions")
    return value


def config_from_variables(variables: Mapping[str, np.ndarray], static_kwargs: Mapping[str, Any], source: str) -> PGGANConfig:
    """Read the architecture off G_paper's variable names and shapes (and behaviour flags off static_kwargs)."""
    label_size = int(plain_json(static_kwargs.get("label_size", 0)) or 0)
    if label_size:
        raise TlganError(f"{source}: conditional PG-GAN (label_size={label_size}) is not supported")
    dense = _require(variables, "4x4/Dense/weight", 2, source)
    latent_dim, width = dense.shape
    if width % 16:
        raise TlganError(f"{source}: '4x4/Dense/weight' has {width} outputs, not a multiple of 16 (4x4 maps)")
    channels = [width // 16]
    fused: list[bool] = []
    level = 3
    while f"{2 ** level}x{2 ** level}/Conv1/weight" in variables:
        fused.append(f"{2 ** level}x{2 ** level}/Conv0_up/weight" in variables)
        channels.append(int(_require(variables, f"{2 ** level}x{2 ** level}/Conv1/weight", 4, source).shape[3]))
        level += 1
    log2_res = level - 1
    rgb = _require(variables, "ToRGB_lod0/weight", 4, source)
    if rgb.shape[2] != channels[-1]:
        raise TlganError(f"{source}: ToRGB_lod0 reads {rgb.shape[2]} maps but the {2 ** log2_res}x{2 ** log2_res} level has {channels[-1]}")
    kwargs = {k: plain_json(static_kwargs[k]) for k in _BEHAVIOUR_KWARGS if k in static_kwargs}
    return PGGANConfig(
        latent_dim=int(latent_dim), resolution=2 ** log2_res, channels=tuple(channels), fused=tuple(fused),
        num_channels=int(rgb.shape[3]), **kwargs,
    )


def _pixel_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    # The mean square is taken in float32: in float16 it can overflow for large pre-activations.
    return x * torch.rsqrt(x.float().square().mean(dim=1, keepdim=True) + eps).to(x.dtype)


def _he_scale(gain: float, fan_in: int, use_wscale: bool) -> float:
    return gain / math.sqrt(fan_in) if use_wscale else 1.0


class _Conv(nn.Module):
    """k x k 'same' convolution with run-time weight scaling; weight stored (out, in, k, k)."""

    def __init__(self, cin: int, cout: int, kernel: int, gain: float, use_wscale: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = _he_scale(gain, cin * kernel * kernel, use_wscale)
        self.pad = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class _UpConv(nn.Module):
    """Fused 2x upsample + 3x3 conv ('Conv0_up'): a stride-2 transposed conv with a 4x4 kernel.

    The 4x4 kernel is the sum of the 3x3 kernel at its four 1-pixel shifts;
    the result equals nearest upsampling followed by a 3x3 conv with the
    kernel flipped. Same padding rule as TF's conv2d_transpose ('SAME', 2H out).
    Weight stored (in, out, 3, 3), the transposed-conv layout.
    """

    def __init__(self, cin: int, cout: int, use_wscale: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cin, cout, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = _he_scale(math.sqrt(2), cin * 9, use_wscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.pad(self.weight * self.scale, (1, 1, 1, 1))
        w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
        return F.conv_transpose2d(x, w, self.bias, stride=2, padding=1)


class PGGAN(Generator):
    """G_paper: z (N, latent_dim) -> images (N, num_channels, R, R), clamped to [-1, 1] by ``synthesize``.

    Build from a PGGANConfig, then ``load_variables`` with the TF variable dict.
    The buffer ``lod`` is the level of detail the network was saved at (0 for
    a fully grown network; fractional values blend the last two levels as in training).
    """

    name = "pggan"

    def __init__(self, config: PGGANConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_dim, self.resolution = config.latent_dim, config.resolution
        ws = config.use_wscale
        c = config.channels
        self.dense_weight = nn.Parameter(torch.zeros(config.latent_dim, c[0] * 16))
        self.dense_bias = nn.Parameter(torch.zeros(c[0]))
        # Gain sqrt(2)/4 on the dense layer, as G_paper sets it (kept from the original Theano code).
        self.dense_scale = _he_scale(math.sqrt(2) / 4, config.latent_dim, ws)
        self.conv4 = _Conv(c[0], c[0], 3, math.sqrt(2), ws)
        self.up = nn.ModuleList()
        self.conv1 = nn.ModuleList()
        for i, is_fused in enumerate(config.fused):
            self.up.append(_UpConv(c[i], c[i + 1], ws) if is_fused else _Conv(c[i], c[i + 1], 3, math.sqrt(2), ws))
            self.conv1.append(_Conv(c[i + 1], c[i + 1], 3, math.sqrt(2), ws))
        self.to_rgb = nn.ModuleList(_Conv(ch, config.num_channels, 1, 1.0, ws) for ch in c)
        self.register_buffer("lod", torch.zeros(()))

    # --- weights -------------------------------------------------------------------------------
    def load_variables(self, variables: Mapping[str, np.ndarray], source: str = "weights") -> None:
        """Copy G_paper's TF variables (TF layouts: dense (D, C*16), conv (k, k, in, out), fused (k, k, out, in))."""
        c = self.config
        levels = [f"{2 ** (i + 2)}x{2 ** (i + 2)}" for i in range(len(c.channels))]
        n_levels = len(levels)

        def put(param: torch.Tensor, name: str, permute: tuple[int, ...] | None = None) -> None:
            if name not in variables:
                raise TlganError(f"{source}: variable '{name}' is missing")
            value = torch.from_numpy(np.ascontiguousarray(variables[name], dtype=np.float32))
            if permute:
                value = value.permute(*permute)
            if tuple(value.shape) != tuple(param.shape):
                raise TlganError(f"{source}: variable '{name}' has shape {tuple(variables[name].shape)}, "
                                 f"which does not fit the network read from the other variables")
            with torch.no_grad():
                param.copy_(value)

        to_torch_conv = (3, 2, 0, 1)  # (k, k, in, out) -> (out, in, k, k); fused: (k, k, out, in) -> (in, out, k, k)
        put(self.dense_weight, "4x4/Dense/weight")
        put(self.dense_bias, "4x4/Dense/bias")
        put(self.conv4.weight, "4x4/Conv/weight", to_torch_conv)
        put(self.conv4.bias, "4x4/Conv/bias")
        for i, is_fused in enumerate(c.fused):
            level = levels[i + 1]
            conv0 = "Conv0_up" if is_fused else "Conv0"
            put(self.up[i].weight, f"{level}/{conv0}/weight", to_torch_conv)
            put(self.up[i].bias, f"{level}/{conv0}/bias")
            put(self.conv1[i].weight, f"{level}/Conv1/weight", to_torch_conv)
            put(self.conv1[i].bias, f"{level}/Conv1/bias")
        for i in range(n_levels):
            lod = n_levels - 1 - i
            put(self.to_rgb[i].weight, f"ToRGB_lod{lod}/weight", to_torch_conv)
            put(self.to_rgb[i].bias, f"ToRGB_lod{lod}/bias")
        lod_value = np.asarray(variables.get("lod", 0.0), dtype=np.float64).reshape(-1)
        if lod_value.size != 1:
            raise TlganError(f"{source}: variable 'lod' should be a scalar, got shape {np.shape(variables['lod'])}")
        lod = float(lod_value[0])
        if not math.isfinite(lod) or not 0 <= lod <= n_levels - 1:
            raise TlganError(f"{source}: variable 'lod' = {lod} is outside [0, {n_levels - 1}]")
        self.lod.fill_(lod)

    # --- forward ---------------------------------------------------------------------------------
    def _act_norm(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = F.leaky_relu(x, 0.2) if c.use_leakyrelu else F.relu(x)
        return _pixel_norm(x, c.pixelnorm_epsilon) if c.use_pixelnorm else x

    def render_raw(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) -> images (N, C, R, R) as the network computes them, not clamped."""
        c = self.config
        x = z.to(self.dense_weight.dtype)
        if c.normalize_latents:
            x = _pixel_norm(x, c.pixelnorm_epsilon)
        x = (x @ (self.dense_weight * self.dense_scale)).reshape(-1, c.channels[0], 4, 4)
        x = self._act_norm(x + self.dense_bias.view(1, -1, 1, 1))
        x = self._act_norm(self.conv4(x))
        lod = float(self.lod)
        images = self.to_rgb[0](x) if lod > 0 else None
        n_up = len(c.fused)
        for i in range(n_up):
            if not c.fused[i]:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self._act_norm(self.conv1[i](self._act_norm(self.up[i](x))))
            if lod > 0:
                # Linear structure of G_paper: blend each level's RGB with the upsampled coarser one.
                new = self.to_rgb[i + 1](x)
                old = F.interpolate(images, scale_factor=2, mode="nearest")
                t = min(max(lod - (n_up - 1 - i), 0.0), 1.0)
                images = new + (old - new) * t
        if images is None:
            images = self.to_rgb[-1](x)
        return images.float()

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return self.render_raw(z).clamp(-1.0, 1.0)

    def first_layer_weight(self) -> torch.Tensor:
        # The dense layer acts on the pixel-normalised z: (C*16, D).
        return (self.dense_weight * self.dense_scale).T.contiguous()


# --- files -----------------------------------------------------------------------------------------
def weights_hash(variables: Mapping[str, np.ndarray], length: int = 16) -> str:
    """SHA-256 of the variables (names, shapes, float32 bytes): the same for a pickle and its conversion."""
    digest = hashlib.sha256()
    for name in sorted(variables):
        value = np.ascontiguousarray(variables[name], dtype=np.float32)
        digest.update(f"{name}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:length]


@dataclass
class PGGANWeights:
    """G_paper variables plus what is known about them: config, static kwargs, where they came from."""

    variables: dict[str, np.ndarray]
    static_kwargs: dict[str, Any]
    source: str

    @property
    def config(self) -> PGGANConfig:
        return config_from_variables(self.variables, self.static_kwargs, self.source)


def read_tf1_pickle(path: str | Path) -> PGGANWeights:
    """The generator variables of a PG-GAN TF1 release pickle, without TensorFlow and without running its code."""
    path = Path(path)
    networks = read_tf1_networks(path)
    net = pick_generator(networks, path)
    if net.build_func_name != "G_paper":
        raise TlganError(f"{path}: the generator is built by '{net.build_func_name}' ({net.pickled_class}); "
                         "tlgan reads PG-GAN 'G_paper' networks only")
    return PGGANWeights(variables=net.variables, static_kwargs=net.static_kwargs, source=str(path))


def read_converted(path: str | Path) -> PGGANWeights:
    """Variables from a .safetensors written by ``convert_tf1_to_safetensors``."""
    variables, header = read_tlgan_file(
        path, FORMAT, VERSION, "converted PG-GAN", framework="numpy",
        no_header_hint="; convert the pickle with: tlgan convert pggan-tf1 IN.pkl OUT.safetensors")
    return PGGANWeights(variables=variables, static_kwargs=dict(header.get("static_kwargs", {})), source=str(path))


def read_weights(path: str | Path) -> PGGANWeights:
    """Read a .pkl (TF1 release) or .safetensors (converted) PG-GAN file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return read_tf1_pickle(path)
    if suffix == ".safetensors":
        return read_converted(path)
    raise TlganError(f"PG-GAN weights must be a .pkl (TF1 release) or .safetensors (converted) file, got {path.name}")


def build(weights: PGGANWeights) -> PGGAN:
    """A PGGAN module with ``weights`` loaded, in eval mode without grads."""
    model = PGGAN(weights.config)
    model.load_variables(weights.variables, weights.source)
    model.identity = f"pggan:{weights_hash(weights.variables)}"
    return model.eval().requires_grad_(False)


def convert_tf1_to_safetensors(src: str | Path, dst: str | Path) -> PGGANConfig:
    """Write the generator of a TF1 PG-GAN pickle as .safetensors (same variable names, float32), atomically."""
    from safetensors.numpy import save_file

    weights = read_tf1_pickle(src)
    config = weights.config  # validates the variables before anything is written
    kwargs = {k: v for k, v in plain_json(weights.static_kwargs).items() if v is not None}
    header = {"format": FORMAT, "version": VERSION, "source": Path(src).name, "build_func_name": "G_paper",
              "static_kwargs": kwargs, "config": asdict(config)}
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.variables.items()}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata={"tlgan": json.dumps(header)})
    return config


def load_pggan(path: str | None, device: torch.device | str = "cpu") -> PGGAN:
    """Registry loader for ``pggan:FILE`` (FILE: .pkl TF1 release or converted .safetensors)."""
    if not path:
        raise TlganError("pggan needs a weights file: pggan:karras2018iclr-celebahq-1024x1024.pkl (or a converted .safetensors)")
    return build(read_weights(path)).to(device)
