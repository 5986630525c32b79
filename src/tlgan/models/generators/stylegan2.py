"""StyleGAN2 (Karras et al., CVPR 2020, configs E-F) as a tlgan Generator, in plain PyTorch.

    z (N, z_dim) -> normalise 2nd moment -> 8 fully connected layers (lr multiplier 0.01) -> w (N, w_dim)
    w -> broadcast to ws (N, num_ws, w_dim), truncation toward w_avg (optionally for the first layers only)
    synthesis, per block 4x4 ... RxR: learned constant (4x4) or modulated 3x3 conv with 2x upsampling,
      modulated 3x3 conv; each modulated conv: style = affine(ws[i]), weights scaled by the style,
      demodulated, + noise * strength, + bias, leaky ReLU * sqrt(2), clamped to +-conv_clamp
    'skip' architecture: each block adds its ToRGB (1x1 modulated conv, no demodulation) to the
      FIR-upsampled image of the previous block; the last image, clamped to [-1, 1], is the output.

Parameter and buffer names are those of NVlabs' stylegan2-ada-pytorch / stylegan3 networks
(``mapping.fc0.weight``, ``synthesis.b64.conv0.affine.bias``, ``synthesis.b4.const``, ...), so
their state dicts load one to one. Layers NVlabs marks fp16 run in float32 on CPU and in half
precision on CUDA (set ``fp16_on_cuda = False`` for float32 everywhere).

ws index layout (NVlabs'): block 4x4 uses ws[0] (conv1) and ws[1] (torgb); each later block at
index i uses ws[i] (conv0), ws[i+1] (conv1) and ws[i+2] (torgb), i.e. a ToRGB shares its w with
the next block's first conv. num_ws = 2 * log2(R) - 2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tlgan.errors import TlganError

from .base import Generator
from .stylegan_ops import (
    ACTIVATIONS,
    bias_act,
    make_filter,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything the forward pass needs. ``channels`` lists the feature maps per block, 4x4 first."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64, 32)
    mapping_layers: int = 8
    mapping_features: int = 512
    mapping_lr_multiplier: float = 0.01
    mapping_activation: str = "lrelu"
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    architecture: str = "skip"
    activation: str = "lrelu"
    use_noise: bool = True
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    def __post_init__(self) -> None:
        log2 = int(round(math.log2(self.img_resolution))) if self.img_resolution > 0 else 0
        if self.img_resolution < 4 or 2 ** log2 != self.img_resolution:
            raise TlganError(f"StyleGAN2 resolution must be a power of two >= 4, got {self.img_resolution}")
        if len(self.channels) != log2 - 1:
            raise TlganError(f"StyleGAN2 at {self.img_resolution}px needs {log2 - 1} channel counts, got {len(self.channels)}")
        if self.architecture not in ("skip", "orig", "resnet"):
            raise TlganError(f"unknown StyleGAN2 architecture '{self.architecture}'")
        for act in (self.activation, self.mapping_activation):
            if act not in ("lrelu", "relu", "linear"):
                raise TlganError(f"unsupported StyleGAN2 activation '{act}'")

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.block_resolutions)

    def use_fp16(self, res: int) -> bool:
        """Whether NVlabs runs the block at ``res`` in half precision (the num_fp16_res highest, none below 8x8)."""
        log2 = int(math.log2(self.img_resolution))
        return res >= max(2 ** (log2 + 1 - self.num_fp16_res), 8)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StyleGAN2Config:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TlganError(f"StyleGAN2 config has unknown fields: {', '.join(unknown)}")
        data = dict(data)
        for key in ("channels", "resample_filter"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    @staticmethod
    def channels_for(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> tuple[int, ...]:
        """NVlabs' channel rule: min(channel_base // res, channel_max) per block resolution."""
        return tuple(min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(img_resolution)) + 1))


class FullyConnectedLayer(nn.Module):
    """y = act(x @ (weight * lr / sqrt(in)).T + bias * lr): equalised learning rate with multiplier lr.

    weight (out, in), bias (out,).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The matrix the layer applies, (out, in)."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> w (N, w_dim); buffer ``w_avg`` is the training-time mean of w."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.num_layers = config.mapping_layers
        features = [config.z_dim] + [config.mapping_features] * (config.mapping_layers - 1) + [config.w_dim]
        for i in range(config.mapping_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], config.mapping_activation,
                                                        config.mapping_lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """w (N, w_dim) for z (N, z_dim), moved toward w_avg: w_avg + truncation * (w - w_avg)."""
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if truncation != 1:
            x = self.w_avg.lerp(x, float(truncation))
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up) + noise + bias + activation + clamp: (N, I, r, r) -> (N, O, R, R)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int,
                 config: StyleGAN2Config) -> None:
        super().__init__()
        self.resolution, self.up = resolution, up
        self.use_noise, self.activation, self.conv_clamp = config.use_noise, config.activation, config.conv_clamp
        self.padding = 1
        self.register_buffer("resample_filter", make_filter(list(config.resample_filter)))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        if self.use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=ACTIVATIONS[self.activation][1] * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation: features (N, I, R, R) -> RGB contribution (N, C, R, R)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """The 1x1 2x-upsampling skip convolution of the 'resnet' architecture (no bias, linear)."""

    def __init__(self, in_channels: int, out_channels: int, resample_filter: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("resample_filter", resample_filter.clone())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # 1x1 conv then upsample (the order NVlabs uses for 1x1 kernels; both are linear).
        x = torch.nn.functional.conv2d(x, (self.weight * self.weight_gain).to(x.dtype))
        fw = self.resample_filter.shape[-1]
        x = upfirdn2d(x, self.resample_filter, up=2, padding=[(fw + 1) // 2, (fw - 2) // 2] * 2, gain=4)
        return x * gain


class SynthesisBlock(nn.Module):
    """One resolution: (x (N, I, R/2, R/2) or the constant, img (N, C, R/2, R/2)) -> (x (N, O, R, R), img (N, C, R, R))."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, is_last: bool,
                 config: StyleGAN2Config) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture = config.architecture
        self.use_fp16 = config.use_fp16(resolution)
        self.register_buffer("resample_filter", make_filter(list(config.resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, config.w_dim, resolution, 2, config)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, config.w_dim, resolution, 1, config)
        self.num_conv += 1
        if is_last or config.architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, config.img_channels, config.w_dim, config.conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and config.architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, self.resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                half: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        dtype = torch.float16 if (half and self.use_fp16) else torch.float32
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, next(w_iter), noise_mode)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode)
            x = y + self.conv1(x, next(w_iter), noise_mode, gain=math.sqrt(0.5))
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images (N, img_channels, R, R), not clamped."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.block_resolutions = config.block_resolutions
        self.num_ws = 0
        for i, res in enumerate(self.block_resolutions):
            in_channels = config.channels[i - 1] if i > 0 else 0
            block = SynthesisBlock(in_channels, config.channels[i], res, res == config.img_resolution, config)
            self.num_ws += block.num_conv + (block.num_torgb if res == config.img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", half: bool = False) -> torch.Tensor:
        ws = ws.to(torch.float32)
        x = img = None
        index = 0
        for block in self.blocks():
            x, img = block(x, img, ws.narrow(1, index, block.num_conv + block.num_torgb), noise_mode, half)
            index += block.num_conv
        return img


class StyleGANLatents:
    """What StyleGAN2 and StyleGAN3 share above their networks: w, ws, truncation, and the style weights.

    The class using it has ``mapping`` (with ``w_avg``), ``num_ws``, ``w_dim`` and defines ``render_ws`` and
    ``style_layers``.
    """

    # --- latents ----------------------------------------------------------------------------------
    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def mapping_ws(self, z: torch.Tensor, truncation: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """ws (N, num_ws, w_dim): w broadcast to every layer, truncated toward w_avg in the first ``cutoff`` layers (all if None)."""
        ws = self.mapping(z).unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation != 1:
            end = self.num_ws if cutoff is None else int(cutoff)
            ws[:, :end] = self.w_avg.lerp(ws[:, :end], float(truncation))
        return ws

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) or (N, num_ws, w_dim) -> (N, num_ws, w_dim); raises TlganError for other shapes."""
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            raise TlganError("w must be a floating-point torch.Tensor")
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if w.ndim == 3 and tuple(w.shape[1:]) == (self.num_ws, self.w_dim):
            return w
        raise TlganError(f"w must have shape (N, {self.w_dim}) or (N, {self.num_ws}, {self.w_dim}), got {tuple(w.shape)}")

    def synthesize_w(self, w: torch.Tensor) -> torch.Tensor:
        """Render w (N, w_dim) or ws (N, num_ws, w_dim) to images (N, C, R, R) in [-1, 1]."""
        return self.render_ws(self.broadcast(w)).clamp(-1.0, 1.0)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize_w(self.mapping(z))

    # --- structure for editing methods -------------------------------------------------------------
    def first_layer_weight(self) -> torch.Tensor:
        # The first mapping layer acts on the 2nd-moment-normalised z: (features, z_dim).
        return self.mapping.fc0.effective_weight().detach()

    def styles(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """The style vector (N, in_channels) each layer computes from ws (N, num_ws, w_dim)."""
        ws = self.broadcast(ws)
        return {name: layer.affine(ws[:, index]) for index, name, layer in self.style_layers()}

    def style_weights(self, layers: range | list[int] | None = None) -> torch.Tensor:
        """Concatenated style-affine matrices (sum of in_channels, w_dim) of the layers reading ws[i] for i in ``layers``."""
        chosen = set(range(self.num_ws)) if layers is None else set(layers)
        mats = [layer.affine.effective_weight() for index, _, layer in self.style_layers() if index in chosen]
        if not mats:
            raise TlganError(f"no StyleGAN layers in the range {layers}")
        return torch.cat(mats).detach()


class StyleGAN2(StyleGANLatents, Generator):
    """A StyleGAN2 generator. Spaces: z (N, z_dim); w (N, w_dim); w+ (N, num_ws, w_dim).

    ``synthesize(z)`` = NVlabs' ``G(z, None, truncation_psi=1, noise_mode='const')`` clamped to [-1, 1];
    ``mapping(z, truncation=psi)`` -> w (N, w_dim); ``mapping_ws(z, psi, cutoff)`` -> ws (N, num_ws, w_dim);
    ``synthesize_w(w)`` renders w (N, w_dim) or ws (N, num_ws, w_dim).
    """

    name = "stylegan2"
    spaces = ("z", "w", "w+")

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.latent_dim, self.resolution = config.z_dim, config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config)
        self.noise_mode = "const"
        self.fp16_on_cuda = True

    # --- rendering --------------------------------------------------------------------------------
    def render_ws(self, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """ws (N, num_ws, w_dim) -> images (N, C, R, R) as the network computes them (not clamped)."""
        noise_mode = noise_mode or self.noise_mode
        if noise_mode not in NOISE_MODES:
            raise TlganError(f"noise mode must be one of {', '.join(NOISE_MODES)}, got '{noise_mode}'")
        half = self.fp16_on_cuda and ws.device.type == "cuda"
        return self.synthesis(ws, noise_mode=noise_mode, half=half).to(torch.float32)

    def style_layers(self) -> list[tuple[int, str, nn.Module]]:
        """(ws index, name, layer) for every layer with an affine style, in ws order."""
        layers: list[tuple[int, str, nn.Module]] = []
        index = 0
        for block in self.synthesis.blocks():
            prefix = f"synthesis.b{block.resolution}"
            names = (["conv0"] if block.in_channels else []) + ["conv1"] + (["torgb"] if block.num_torgb else [])
            for j, name in enumerate(names):
                layers.append((index + j, f"{prefix}.{name}", getattr(block, name)))
            index += block.num_conv
        return layers


# --- weights -------------------------------------------------------------------------------------
def weights_hash(tensors: dict[str, torch.Tensor], length: int = 16) -> str:
    """SHA-256 over sorted names, shapes and float32 bytes: the same for a pickle and its conversion."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{name}:{value.shape};".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:length]


def load_weights(model: Generator, tensors: dict[str, torch.Tensor], source: str, family: str) -> Generator:
    """``model`` (a StyleGAN2 or StyleGAN3) with ``tensors`` (NVlabs names) loaded in float32, identity set, frozen.

    Every mismatch (missing, unexpected, wrong shape, not finite) is a one-line TlganError naming ``source``.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + \
                 ("; " if missing and unexpected else "") + (f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        kind = {"stylegan2": "StyleGAN2", "stylegan3": "StyleGAN3"}.get(family, family)
        raise TlganError(f"{source}: weights do not fit a {kind} of this configuration ({detail})")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise TlganError(f"{source}: '{name}' has shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise TlganError(f"{source}: '{name}' is not a finite floating-point tensor")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    model.identity = f"{family}:{weights_hash(tensors)}"
    return model.eval().requires_grad_(False)


def build(config: StyleGAN2Config, tensors: dict[str, torch.Tensor], source: str, family: str = "stylegan2") -> StyleGAN2:
    """A StyleGAN2 with ``tensors`` (NVlabs names) loaded; every mismatch is a one-line TlganError."""
    return load_weights(StyleGAN2(config), tensors, source, family)


__all__ = ["NOISE_MODES", "StyleGAN2", "StyleGAN2Config", "build", "weights_hash"]
