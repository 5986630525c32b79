"""The low-level operations StyleGAN2 and StyleGAN3 are built from, in plain PyTorch.

Written from the papers' descriptions (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN"; 2021, "Alias-Free Generative Adversarial Networks") so that
weights trained with NVlabs' code give the same numbers:

- ``upfirdn2d``: upsample by zero insertion, pad (negative = crop), FIR filter, downsample.
- ``bias_act``: add a per-channel bias, apply an activation, scale by a gain, clamp.
- ``modulated_conv2d``: the StyleGAN2 convolution whose weights are scaled per sample by a
  style vector and (optionally) renormalised ("demodulated").

Filters are float32 tensors: 1-D (separable, applied along x then y) or 2-D.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_filter(taps: list[float] | torch.Tensor, separable: bool | None = None) -> torch.Tensor:
    """A normalised FIR filter (sum 1): 1-D when separable (default for >= 8 taps), else the 2-D outer product."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    return f / f.sum()


def _pad4(padding: int | tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              padding: int | tuple[int, ...] | list[int] = 0, gain: float = 1.0) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of x (N, C, H, W).

    f: 1-D (separable) or 2-D filter, or None for identity. padding (x0, x1, y0, y1) is in
    upsampled pixels; negative values crop. The filter is applied as a true convolution
    (flipped), scaled so that ``gain`` is the total gain over both dimensions. Defined as
    zero insertion, pad, filter, keep every ``down``-th pixel; computed without touching the
    inserted zeros (separable filters: a strided transposed convolution per axis) and with
    strided convolutions for the downsampling.
    """
    if f is None:
        f = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    c = x.shape[1]
    px0, px1, py0, py1 = _pad4(padding)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if f.ndim == 1 and up > 1:
        x = _up_axis(x, f, up, px0, px1, dim=3, down=down)
        return _up_axis(x, f, up, py0, py1, dim=2, down=down)
    if up > 1:
        n, _, h, w = x.shape
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c, stride=down)
    x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c, stride=(1, down))
    return F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c, stride=(down, 1))


def _up_axis(x: torch.Tensor, f: torch.Tensor, up: int, pad0: int, pad1: int, dim: int, down: int) -> torch.Tensor:
    """One axis of separable upfirdn: zero insertion + pad + convolution with f (taps T) + keep every down-th.

    The zero-inserted signal convolved with f is the stride-``up`` transposed convolution of x with f;
    output j of the padded filter step is its sample j + T - 1 - pad0 (zero outside).
    """
    c, length, taps = x.shape[1], x.shape[dim], f.shape[0]
    kernel = f[None, None, :, None] if dim == 2 else f[None, None, None, :]
    stride = (up, 1) if dim == 2 else (1, up)
    y = F.conv_transpose2d(x, kernel.repeat(c, 1, 1, 1), stride=stride, groups=c)
    offset = taps - 1 - pad0
    out_len = length * up + pad0 + pad1 - taps + 1
    right = out_len - (y.shape[dim] - offset)
    y = F.pad(y, [0, 0, -offset, right] if dim == 2 else [-offset, right, 0, 0])
    if down > 1:
        y = y[:, :, ::down] if dim == 2 else y[:, :, :, ::down]
    return y


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 1-D or 2-D filter."""
    if f is None:
        return 1, 1
    return (int(f.shape[-1]), int(f.shape[0])) if f.ndim == 2 else (int(f.shape[0]), int(f.shape[0]))


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample (N, C, H, W) -> (N, C, up H, up W) with the FIR filter f (StyleGAN's skip-image path)."""
    fw, fh = filter_size(f)
    pad = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def lrelu(x: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


ACTIVATIONS = {
    # name: (function, default gain); the gain keeps the signal's magnitude (He et al.).
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, SQRT2),
    "lrelu": (lrelu, SQRT2),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """x + b (per channel, dim 1), then the activation, times its gain, clamped to [-clamp, clamp]."""
    func, default_gain = ACTIVATIONS[act]
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    x = func(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True) -> torch.Tensor:
    """Convolve x (N, I, H, W) with weight (O, I, k, k) modulated per sample by styles (N, I).

    Each sample's kernel is weight * styles[n] over input channels; with ``demodulate``
    each output channel's kernel is then scaled to unit L2 norm. Computed as
    (x * styles) conv weight * dcoefs, which equals the per-sample kernel form and runs as
    one batched convolution. up=2: transposed stride-2 convolution followed by the FIR
    low-pass filter (same padding rule as StyleGAN2). ``noise`` (broadcastable to the
    output) is added after demodulation. Output (N, O, H*up, W*up) for 'same' padding.
    """
    n = x.shape[0]
    in_ch, kh, kw = weight.shape[1:]
    if x.dtype == torch.float16 and demodulate:
        # Keep half-precision activations in range (pre-normalisation; cancelled by demodulation).
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    dcoefs = None
    if demodulate:
        w = weight[None] * styles.reshape(n, 1, -1, 1, 1)
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (N, O)
    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    weight = weight.to(x.dtype)
    if up == 1:
        x = F.conv2d(x, weight, padding=padding)
    else:
        # Transposed convolution of the upsampled grid, then the low-pass filter. Padding as
        # NVlabs' conv2d_resample computes it for (up, kernel k, filter taps fw).
        fw, fh = filter_size(resample_filter)
        px0 = padding + (fw + up - 1) // 2 - (kw - 1)
        px1 = padding + (fw - up) // 2 - (kw - up)
        py0 = padding + (fh + up - 1) // 2 - (kh - 1)
        py1 = padding + (fh - up) // 2 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=[pyt, pxt])
        x = upfirdn2d(x, resample_filter, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
