"""StyleGAN3 (Karras et al., NeurIPS 2021, "Alias-Free GANs"), configs T and R, as a tlgan Generator.

    z -> normalise -> 2 fully connected layers (lr 0.01) -> w; ws = w broadcast to num_ws, truncated toward w_avg
    input: Fourier features sin(2 pi (freqs . grid + phases)) of a band-limited set of frequencies, rotated and
      translated per sample by an affine map of ws[0] (and the stored ``transform``), mixed by a 1x1 weight
    layers L0 ... L{n-1}: modulated conv (3x3 for T, 1x1 for R) with magnitude-EMA input gain, then the
      filtered leaky ReLU: bias, upsample with the stored low-pass ``up_filter``, leaky ReLU * sqrt(2),
      clamp, low-pass ``down_filter`` (radially symmetric for R's non-critical layers) and downsample
    ToRGB (last layer): 1x1 modulated conv without demodulation; output scaled by ``output_scale``.

Everything the forward pass needs per layer (sizes, sampling factors, padding, filters) is read from the
pickled modules, so any T or R network loads without recomputing the filter design. Parameter and buffer
names are NVlabs' (``synthesis.L3_52_1024.up_filter``, ``synthesis.input.freqs`` ...). ``StyleGAN3Config.design``
reproduces NVlabs' layer schedule for building networks with random weights (tests, benchmarks).
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
from .stylegan2 import FullyConnectedLayer, StyleGANLatents, load_weights
from .stylegan_ops import bias_act, upfirdn2d


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer as NVlabs' SynthesisLayer computed it. Sizes are [width, height]; padding x0, x1, y0, y1."""

    name: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]
    is_torgb: bool
    use_fp16: bool
    conv_clamp: float | None


@dataclass(frozen=True)
class StyleGAN3Config:
    z_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    mapping_layers: int
    mapping_lr_multiplier: float
    input_channels: int
    input_size: tuple[int, int]
    input_sampling_rate: float
    input_bandwidth: float
    layers: tuple[LayerSpec, ...]
    output_scale: float = 0.25

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StyleGAN3Config:
        try:
            data = dict(data)
            data["layers"] = tuple(LayerSpec(**{**l, "in_size": tuple(l["in_size"]), "out_size": tuple(l["out_size"]),
                                                "padding": tuple(l["padding"])}) for l in data["layers"])
            data["input_size"] = tuple(data["input_size"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise TlganError(f"malformed StyleGAN3 config: {exc}") from None

    @classmethod
    def design(cls, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 1024, img_channels: int = 3,
               channel_base: int = 32768, channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
               first_cutoff: float = 2, first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
               margin_size: int = 10, output_scale: float = 0.25, num_fp16_res: int = 4, conv_kernel: int = 3,
               filter_size: int = 6, lrelu_upsampling: int = 2, use_radial_filters: bool = False,
               conv_clamp: float | None = 256, mapping_layers: int = 2) -> StyleGAN3Config:
        """The layer schedule NVlabs' StyleGAN3 derives from its constructor arguments (T: defaults; R: conv_kernel=1,
        use_radial_filters=True, channel_base=65536, channel_max=1024)."""
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        sizes = rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        layers = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == num_layers
            critical = idx >= num_layers - num_critical
            kernel = 1 if is_torgb else conv_kernel
            tmp_rate = max(rates[prev], rates[idx]) * (1 if is_torgb else lrelu_upsampling)
            up = int(np.rint(tmp_rate / rates[prev]))
            down = int(np.rint(tmp_rate / rates[idx]))
            up_taps = filter_size * up if up > 1 and not is_torgb else 1
            down_taps = filter_size * down if down > 1 and not is_torgb else 1
            in_size, out_size = int(sizes[prev]), int(sizes[idx])
            pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            pad_lo = (pad_total + up) // 2
            pad_hi = pad_total - pad_lo
            name = f"L{idx}_{out_size}_{int(channels[idx])}"
            layers.append(LayerSpec(name, int(channels[prev]), int(channels[idx]), (in_size, in_size),
                                    (out_size, out_size), kernel, up, down, up_taps, down_taps,
                                    bool(use_radial_filters and not critical), (pad_lo, pad_hi, pad_lo, pad_hi),
                                    is_torgb, bool(rates[idx] * 2 ** num_fp16_res > img_resolution),
                                    None if conv_clamp is None else float(conv_clamp)))
        return cls(z_dim, w_dim, img_resolution, img_channels, mapping_layers, 0.01, int(channels[0]),
                   (int(sizes[0]), int(sizes[0])), float(rates[0]), float(cutoffs[0]), tuple(layers), output_scale)


def design_filters(config: StyleGAN3Config) -> dict[str, torch.Tensor]:
    """NVlabs' low-pass filters for ``design``-made configs (windowed sinc; radial jinc for R): name -> buffer."""
    import scipy.signal
    import scipy.special

    def lowpass(numtaps: int, cutoff: float, width: float, fs: float, radial: bool) -> torch.Tensor:
        if not radial:
            return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
        w = np.kaiser(numtaps, beta)
        f *= np.outer(w, w)
        return torch.as_tensor(f / np.sum(f), dtype=torch.float32)

    # Re-derive cutoffs and half widths with the same schedule as ``design`` (defaults of the T/R configs).
    n = len(config.layers) - 1
    last_cutoff = config.img_resolution / 2
    exponents = np.minimum(np.arange(n + 1) / (n - 2), 1)
    cutoffs = 2 * (last_cutoff / 2) ** exponents
    stopbands = 2 ** 2.1 * (last_cutoff * 2 ** 0.3 / 2 ** 2.1) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, config.img_resolution))))
    half = np.maximum(stopbands, rates / 2) - cutoffs
    out: dict[str, torch.Tensor] = {}
    for idx, spec in enumerate(config.layers):
        prev = max(idx - 1, 0)
        tmp_rate = max(rates[prev], rates[idx]) * (1 if spec.is_torgb else 2)
        if spec.up_taps > 1:
            out[f"synthesis.{spec.name}.up_filter"] = lowpass(spec.up_taps, cutoffs[prev], half[prev] * 2, tmp_rate, False)
        if spec.down_taps > 1:
            out[f"synthesis.{spec.name}.down_filter"] = lowpass(spec.down_taps, cutoffs[idx], half[idx] * 2, tmp_rate,
                                                                spec.down_radial)
    return out


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, padding: int,
                     input_gain: torch.Tensor) -> torch.Tensor:
    """StyleGAN3's modulated convolution of x (N, I, H, W): weight (O, I, k, k) scaled by styles (N, I) and the
    scalar input gain, demodulated per output channel; both weight and styles are pre-normalised (RMS 1)."""
    n = x.shape[0]
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    dcoefs = None
    if demodulate:
        w = weight[None] * styles.reshape(n, 1, -1, 1, 1)
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    x = x * (styles * input_gain).to(x.dtype).reshape(n, -1, 1, 1)
    x = torch.nn.functional.conv2d(x, weight.to(x.dtype), padding=padding)
    return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1) if dcoefs is not None else x


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor, up: int,
                   down: int, padding: tuple[int, int, int, int], gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """Bias, upsample (FIR fu), leaky ReLU (slope) * gain, clamp, FIR fd and downsample: alias-free nonlinearity."""
    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2)
    x = torch.nn.functional.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


class SynthesisInput(nn.Module):
    """Fourier features (N, C, H, W) transformed per sample by affine(w) (rotation + translation)."""

    def __init__(self, config: StyleGAN3Config) -> None:
        super().__init__()
        c = config.input_channels
        self.size, self.sampling_rate, self.bandwidth = config.input_size, config.input_sampling_rate, config.input_bandwidth
        self.weight = nn.Parameter(torch.randn(c, c))
        self.affine = FullyConnectedLayer(config.w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        freqs = torch.randn(c, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        self.register_buffer("freqs", freqs / (radii * radii.square().exp().pow(0.25)) * config.input_bandwidth)
        self.register_buffer("phases", torch.rand(c) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # (cos, sin, tx, ty) with a unit rotation
        m_r = torch.eye(3, device=w.device).repeat(n, 1, 1)
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=w.device).repeat(n, 1, 1)
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ self.transform[None]
        phases = self.phases[None] + (self.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs[None] @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta[None], [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (N, H, W, C)
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.weight.shape[0])).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU: (N, in_channels, in_size) -> (N, out_channels, out_size)."""

    def __init__(self, spec: LayerSpec, w_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, spec.conv_kernel, spec.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        up_shape = [spec.up_taps] if spec.up_taps > 1 else None
        down_shape = ([spec.down_taps] * (2 if spec.down_radial else 1)) if spec.down_taps > 1 else None
        self.register_buffer("up_filter", torch.zeros(up_shape) if up_shape else None)
        self.register_buffer("down_filter", torch.zeros(down_shape) if down_shape else None)

    def forward(self, x: torch.Tensor, w: torch.Tensor, half: bool) -> torch.Tensor:
        s = self.spec
        styles = self.affine(w)
        if s.is_torgb:
            styles = styles / math.sqrt(s.in_channels * s.conv_kernel ** 2)
        dtype = torch.float16 if half and s.use_fp16 else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, not s.is_torgb, s.conv_kernel - 1,
                             self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), s.up_factor, s.down_factor,
                              s.padding, 1.0 if s.is_torgb else math.sqrt(2), 1.0 if s.is_torgb else 0.2, s.conv_clamp)


class MappingNetwork(nn.Module):
    def __init__(self, config: StyleGAN3Config) -> None:
        super().__init__()
        self.num_layers = config.mapping_layers
        features = [config.z_dim] + [config.w_dim] * config.mapping_layers
        for i in range(config.mapping_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], "lrelu", config.mapping_lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """w (N, w_dim), moved toward w_avg by truncation."""
        x = z.to(torch.float32)
        x = x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return self.w_avg.lerp(x, float(truncation)) if truncation != 1 else x


class SynthesisNetwork(nn.Module):
    def __init__(self, config: StyleGAN3Config) -> None:
        super().__init__()
        self.output_scale = config.output_scale
        self.input = SynthesisInput(config)
        self.layer_names = [spec.name for spec in config.layers]
        for spec in config.layers:
            setattr(self, spec.name, SynthesisLayer(spec, config.w_dim))

    def forward(self, ws: torch.Tensor, half: bool = False) -> torch.Tensor:
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, half)
        return (x * self.output_scale if self.output_scale != 1 else x).to(torch.float32)


class StyleGAN3(StyleGANLatents, Generator):
    """A StyleGAN3 (T or R) generator; the same API as StyleGAN2 (see stylegan2.StyleGAN2)."""

    name = "stylegan3"
    spaces = ("z", "w", "w+")

    def __init__(self, config: StyleGAN3Config) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.latent_dim, self.resolution, self.img_channels = config.z_dim, config.img_resolution, config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = config.num_ws
        self.mapping = MappingNetwork(config)
        self.noise_mode = "const"  # StyleGAN3 has no noise inputs; kept for a uniform API
        self.fp16_on_cuda = True

    def render_ws(self, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        return self.synthesis(ws, half=self.fp16_on_cuda and ws.device.type == "cuda")

    def style_layers(self) -> list[tuple[int, str, nn.Module]]:
        """(ws index, name, layer) of every module with an affine style: the input reads ws[0], layer i ws[i + 1]."""
        out: list[tuple[int, str, nn.Module]] = [(0, "synthesis.input", self.synthesis.input)]
        out += [(i + 1, f"synthesis.{name}", getattr(self.synthesis, name)) for i, name in enumerate(self.synthesis.layer_names)]
        return out



# --- pickles -----------------------------------------------------------------------------------------
def _pair(value: Any) -> tuple[int, int]:
    arr = np.broadcast_to(np.asarray(value), [2])
    return int(arr[0]), int(arr[1])


def config_from_pickle(G: Any, source: str) -> StyleGAN3Config:
    """StyleGAN3Config from a pickled NVlabs networks_stylegan3.Generator (its modules' attributes)."""
    mapping, synthesis = G.child("mapping"), G.child("synthesis")
    inp = synthesis.child("input")
    names = list(synthesis.attr("layer_names") or [])
    if not names:
        raise TlganError(f"{source}: the pickled StyleGAN3 synthesis network lists no layers")
    layers = []
    for name in names:
        layer = synthesis.child(name)
        buffers = layer.state.get("_buffers") or {}
        down = buffers.get("down_filter")
        clamp = layer.attr("conv_clamp")
        layers.append(LayerSpec(
            name=name, in_channels=int(layer.attr("in_channels")), out_channels=int(layer.attr("out_channels")),
            in_size=_pair(layer.attr("in_size")), out_size=_pair(layer.attr("out_size")),
            conv_kernel=int(layer.attr("conv_kernel")), up_factor=int(layer.attr("up_factor")),
            down_factor=int(layer.attr("down_factor")), up_taps=int(layer.attr("up_taps")),
            down_taps=int(layer.attr("down_taps")), down_radial=bool(down is not None and down.ndim == 2),
            padding=tuple(int(p) for p in layer.attr("padding")), is_torgb=bool(layer.attr("is_torgb")),
            use_fp16=bool(layer.attr("use_fp16")), conv_clamp=None if clamp is None else float(clamp)))
    return StyleGAN3Config(
        z_dim=int(G.attr("z_dim")), w_dim=int(G.attr("w_dim")), img_resolution=int(G.attr("img_resolution")),
        img_channels=int(G.attr("img_channels")), mapping_layers=int(mapping.attr("num_layers")),
        mapping_lr_multiplier=float(mapping.child("fc0").attr("bias_gain", 0.01)),
        input_channels=int(inp.attr("channels")), input_size=_pair(inp.attr("size")),
        input_sampling_rate=float(inp.attr("sampling_rate")), input_bandwidth=float(inp.attr("bandwidth")),
        layers=tuple(layers), output_scale=float(synthesis.attr("output_scale", 0.25)))


def build(config: StyleGAN3Config, tensors: dict[str, torch.Tensor], source: str) -> StyleGAN3:
    """A StyleGAN3 with ``tensors`` (NVlabs names) loaded; mismatches are one-line TlganErrors."""
    return load_weights(StyleGAN3(config), tensors, source, "stylegan3")
