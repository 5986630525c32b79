"""MobileNet v1 (Howard et al. 2017) as Keras builds it, in PyTorch, loadable from Keras HDF5 weights.

Layer names follow ``keras.applications.mobilenet`` (conv1, conv1_bn,
conv_dw_i, conv_dw_i_bn, conv_pw_i, conv_pw_i_bn for i = 1..13) so that
Keras weights map one to one.

Padding is read from the file's model_config: each conv's own mode ('same':
TensorFlow's rule, the odd pixel bottom/right; or 'valid') after the explicit
``ZeroPadding2D`` before it (``conv1_pad``, ``conv_pad_i``), if any. Keras
versions differ: 2.2.0 pads (1, 1) before conv1 and every depthwise conv
(symmetric), 2.2.4 pads ((0, 1), (0, 1)) before stride-2 layers, Keras >= 2.3
and 3 use 'same' for conv1. Weights-only files carry no config: they get
'same' everywhere, which equals 2.2.4 and later on even input sizes.
Batch norms use Keras' epsilon (1e-3 unless the file says otherwise);
activations are ReLU6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.errors import TlganError
from tlgan.models.formats.keras_h5 import KerasWeights, zero_padding

from .keras_graph import pad_same

# (pointwise filters before alpha, stride) of the 13 depthwise-separable blocks.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class _ConvBN(nn.Module):
    """Zero padding, conv (full or depthwise, TF 'same' or 'valid') without bias, then batch norm and ReLU6.

    pre_pad: explicit (left, right, top, bottom) zeros first (Keras' ZeroPadding2D); same: then TF 'same' padding.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, depthwise: bool, eps: float) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.pre_pad: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.same = True
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, groups=cin if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pre_pad):
            x = F.pad(x, self.pre_pad)
        if self.same:
            x = pad_same(x, (self.kernel,) * 2, (self.stride,) * 2)
        return F.relu6(self.bn(self.conv(x)))


class MobileNetV1(nn.Module):
    """Convolutional part of MobileNet v1: (N, 3, H, W) preprocessed to [-1, 1] -> (N, 1024*alpha, H/32, W/32).

    Args:
        alpha: width multiplier (1.0 for the original TL-GAN CNN).
        eps: batch-norm epsilon (Keras default 1e-3).
    """

    def __init__(self, alpha: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__()
        self.alpha = alpha
        first = int(32 * alpha)
        self.conv1 = _ConvBN(3, first, 3, 2, depthwise=False, eps=eps)
        self.blocks = nn.ModuleList()
        cin = first
        for filters, stride in BLOCKS:
            cout = int(filters * alpha)
            self.blocks.append(nn.ModuleDict({
                "dw": _ConvBN(cin, cin, 3, stride, depthwise=True, eps=eps),
                "pw": _ConvBN(cin, cout, 1, 1, depthwise=False, eps=eps),
            }))
            cin = cout
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.blocks:
            x = block["pw"](block["dw"](x))
        return x

    def keras_layers(self) -> list[tuple[str, _ConvBN, bool]]:
        """(Keras layer name, module, is depthwise) for every conv layer, in order."""
        layers = [("conv1", self.conv1, False)]
        for i, block in enumerate(self.blocks, start=1):
            layers += [(f"conv_dw_{i}", block["dw"], True), (f"conv_pw_{i}", block["pw"], False)]
        return layers

    def configure_padding(self, keras: KerasWeights) -> None:
        """Set each conv's padding from the file's model_config; refuse a layer configured otherwise than built.

        No model_config (weights-only file): keep TF 'same' everywhere.
        """
        if not keras.layer_configs:
            return
        for name, layer, _ in self.keras_layers():
            config = keras.layer_configs.get(name)
            if config is None:
                raise TlganError(f"{keras.source}: model_config has no layer '{name}'; not a Keras MobileNet")
            mode = config.get("padding", "valid")
            kernel = config.get("kernel_size", [layer.kernel] * 2)
            strides = config.get("strides", [1, 1])
            if mode not in ("same", "valid") or list(kernel) != [layer.kernel] * 2 or list(strides) != [layer.stride] * 2:
                raise TlganError(f"{keras.source}: Keras layer '{name}' has kernel {kernel}, strides {strides}, padding "
                                 f"{mode!r}; MobileNet v1 has kernel {layer.kernel}, stride {layer.stride}")
            if list(config.get("dilation_rate", [1, 1])) not in ([1, 1], [1]):
                raise TlganError(f"{keras.source}: Keras layer '{name}' is dilated; MobileNet v1 is not")
            pad_name = "conv1_pad" if name == "conv1" else name.replace("conv_dw_", "conv_pad_")
            pad = keras.layer_configs.get(pad_name) if pad_name != name else None
            if pad is not None and pad.get("class_name") != "ZeroPadding2D":
                raise TlganError(f"{keras.source}: Keras layer '{pad_name}' is a {pad.get('class_name')}, "
                                 "not the ZeroPadding2D of a MobileNet")
            layer.pre_pad = zero_padding(pad, pad_name) if pad is not None else (0, 0, 0, 0)
            layer.same = mode == "same"

    def load_keras(self, keras: KerasWeights) -> None:
        """Copy weights and padding from a Keras MobileNet (names as in keras.applications); shapes are checked."""
        self.configure_padding(keras)
        for name, layer, depthwise in self.keras_layers():
            w = layer.conv.weight
            if depthwise:  # Keras (kh, kw, C, 1) -> torch (C, 1, kh, kw); Keras 3 names it 'kernel'
                kernel = keras.get(f"{name}/depthwise_kernel", (w.shape[2], w.shape[3], w.shape[0], 1),
                                   also=(f"{name}/kernel",))
                value = torch.from_numpy(kernel).permute(2, 3, 0, 1)
            else:  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
                kernel = keras.get(f"{name}/kernel", (w.shape[2], w.shape[3], w.shape[1], w.shape[0]))
                value = torch.from_numpy(kernel).permute(3, 2, 0, 1)
            bn, channels = layer.bn, w.shape[0]
            eps = keras.layer_configs.get(f"{name}_bn", {}).get("epsilon")
            if eps is not None:
                bn.eps = float(eps)
            with torch.no_grad():
                w.copy_(value)
                bn.weight.copy_(torch.from_numpy(keras.get(f"{name}_bn/gamma", (channels,))))
                bn.bias.copy_(torch.from_numpy(keras.get(f"{name}_bn/beta", (channels,))))
                bn.running_mean.copy_(torch.from_numpy(keras.get(f"{name}_bn/moving_mean", (channels,))))
                bn.running_var.copy_(torch.from_numpy(keras.get(f"{name}_bn/moving_variance", (channels,))))


def alpha_from_keras(keras: KerasWeights) -> float:
    """MobileNet width multiplier from the first conv's filter count (32 * alpha)."""
    filters = keras.get("conv1/kernel").shape[3]
    return filters / 32
