"""Run a float TensorFlow Lite graph (read by ``formats.tflite_file``) as a PyTorch module, without TensorFlow.

Enough operators for MediaPipe's face mesh: CONV_2D, DEPTHWISE_CONV_2D, PRELU,
ADD, MAX_POOL_2D, PAD, RESHAPE; anything else is a TlganError
naming the operator, raised when the module is built, not when it runs.
Activations run in PyTorch's NCHW; the graph's one input is taken, and its
outputs returned, in TFLite's NHWC, so callers see the file's own shapes (with
any batch size). Differentiable end to end, as exact edits need.

Layout conversions (TFLite -> PyTorch):
    CONV_2D kernel            (out, kh, kw, in)  -> (out, in, kh, kw)
    DEPTHWISE_CONV_2D kernel  (1, kh, kw, C * m) -> (C * m, 1, kh, kw), groups C
    PAD paddings              NHWC rows          -> F.pad's (W, H, C) pairs
TFLite's SAME padding puts the odd pixel at the bottom/right, as Keras does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.errors import TlganError
from tlgan.models.formats.tflite_file import TfliteModel

from .keras_graph import split_same

SUPPORTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD", "RESHAPE"}
_SAME, _VALID = 0, 1
_ACTIVATIONS = {0: lambda x: x, 1: F.relu, 2: lambda x: x.clamp(-1, 1), 3: lambda x: x.clamp(0, 6)}


def _nchw(array: torch.Tensor) -> torch.Tensor:
    return array.permute(0, 3, 1, 2) if array.dim() == 4 else array


def _nhwc(array: torch.Tensor) -> torch.Tensor:
    return array.permute(0, 2, 3, 1) if array.dim() == 4 else array


class TfliteGraph(nn.Module):
    """A TFLite graph as a module: (N, H, W, C) float input -> tuple of outputs in the file's NHWC layout."""

    def __init__(self, model: TfliteModel) -> None:
        super().__init__()
        if len(model.inputs) != 1:
            raise TlganError(f"{model.source}: {len(model.inputs)} inputs; one image input is expected")
        for op in model.operators:
            if op.kind not in SUPPORTED:
                raise TlganError(f"{model.source}: operator {op.kind} is not supported "
                                 f"(supported: {', '.join(sorted(SUPPORTED))})")
            if op.options.get("FusedActivationFunction", 0) not in _ACTIVATIONS:
                raise TlganError(f"{model.source}: fused activation {op.options['FusedActivationFunction']} "
                                 "is not supported")
            if op.options.get("DilationWFactor", 1) != 1 or op.options.get("DilationHFactor", 1) != 1:
                raise TlganError(f"{model.source}: dilated convolutions are not supported")
            if op.kind == "PRELU" and any(d != 1 for d in model.shapes[op.inputs[1]][:-1]):
                raise TlganError(f"{model.source}: PRELU slopes of shape {model.shapes[op.inputs[1]]} are not "
                                 "supported (one per channel is)")
        self.operators = model.operators
        self.input, self.outputs, self.shapes = model.inputs[0], model.outputs, model.shapes
        self.source = model.source
        for index, array in model.constants.items():
            self.register_buffer(f"c{index}", self._layout(index, model), persistent=False)

    def _layout(self, index: int, model: TfliteModel) -> torch.Tensor:
        """A constant in the layout its first user wants (kernels and PReLU slopes converted)."""
        value = torch.from_numpy(model.constants[index])
        for op in model.operators:
            if index not in op.inputs[1:]:
                continue
            if op.kind == "CONV_2D" and op.inputs[1] == index:
                return value.permute(0, 3, 1, 2).contiguous()
            if op.kind == "DEPTHWISE_CONV_2D" and op.inputs[1] == index:
                return value.permute(3, 0, 1, 2).contiguous()
            if op.kind == "PRELU" and op.inputs[1] == index:  # F.prelu's per-channel slopes: (C,) or (1,)
                return value.reshape(-1)
            if op.kind == "ADD" and value.dtype.is_floating_point and value.dim() >= 1:
                return value.reshape(-1, 1, 1) if value.numel() > 1 else value.reshape(())
            break
        return value

    def _const(self, index: int) -> torch.Tensor | None:
        return getattr(self, f"c{index}", None)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {self.input: _nchw(image).contiguous(memory_format=torch.channels_last)}

        def get(index: int) -> torch.Tensor:
            const = self._const(index)
            return const if const is not None else values[index]

        for op in self.operators:
            x, o = get(op.inputs[0]), op.options
            act = _ACTIVATIONS[o.get("FusedActivationFunction", 0)]
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weight = get(op.inputs[1])
                bias = get(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                stride, padding = (o["StrideH"], o["StrideW"]), (0, 0)
                if o["Padding"] == _SAME:
                    x, padding = split_same(x, tuple(weight.shape[-2:]), stride)
                groups = x.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
                y = act(F.conv2d(x, weight, bias, stride, padding, groups=groups))
            elif op.kind == "PRELU":
                y = F.prelu(x, get(op.inputs[1]))
            elif op.kind == "ADD":
                y = act(x + get(op.inputs[1]))
            elif op.kind == "MAX_POOL_2D":
                kernel, stride = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
                padding = (0, 0)
                if o["Padding"] == _SAME:  # max_pool2d's own padding never wins, as TFLite's
                    x, padding = split_same(x, kernel, stride, value=float("-inf"))
                y = act(F.max_pool2d(x, kernel, stride, padding))
            elif op.kind == "PAD":
                rows = get(op.inputs[1]).tolist()          # NHWC (before, after) pairs
                if rows[0] != [0, 0]:
                    raise TlganError(f"{self.source}: padding the batch axis is not supported")
                y = F.pad(x, (*rows[2], *rows[1], *rows[3]))
            else:  # RESHAPE: to the file's shape, batch kept
                target = self.shapes[op.outputs[0]]
                y = _nchw(_nhwc(x).reshape(x.shape[0], *target[1:]))
            values[op.outputs[0]] = y
        return tuple(_nhwc(values[index]) for index in self.outputs)
