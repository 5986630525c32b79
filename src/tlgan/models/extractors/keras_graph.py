"""Rebuild a Keras functional model saved as HDF5 as a PyTorch module, without TensorFlow.

The file is read with h5py only: the graph comes from the ``model_config`` JSON
attribute, the weights from ``model_weights/<layer>/`` (named by each group's
``weight_names`` attribute). Nothing in the file is executed, and files whose
data lies outside them are refused (``keras_h5.open_hdf5``). Both layouts are
read: Keras 2 (class ``Model``, inbound nodes as ``[[name, node, tensor, {}]]``,
``batch_input_shape``, weight names ending ``:0``) and Keras 3's legacy
``.h5`` (class ``Functional``, inbound nodes as ``{"args": [serialised
KerasTensors with keras_history]}``, ``batch_shape``, no ``:0``).

One input; one output or several (yu4u's age/gender WideResNet has two
Dense heads on one trunk: the graph then returns a tuple in ``output_layers``
order). Supported layers (enough for fer's mini-XCEPTION and that WideResNet):
InputLayer, Conv2D, SeparableConv2D, BatchNormalization, Activation,
MaxPooling2D, AveragePooling2D, Add, GlobalAveragePooling2D, Flatten, Dense,
Dropout (identity); channels_last data, dilation 1. Anything else is a
TlganError naming the layer. Shapes are followed through the graph (an image
tensor as (H, W, C), a flat one as (K,)), so a Dense kernel's shape is checked
against what its Flatten produces.

Layout conversions (Keras -> PyTorch):
    Conv2D kernel           (kh, kw, in, out)  -> (out, in, kh, kw)
    depthwise kernel        (kh, kw, in, mult) -> (in * mult, 1, kh, kw)
    pointwise kernel        (1, 1, in, out)    -> (out, in, 1, 1)
    Dense kernel            (in, units)           kept; Flatten reorders NCHW to Keras' (h, w, c) first
TensorFlow's 'same' padding puts the odd padding pixel at the bottom/right;
it is computed from the input size at run time (``tf_same_padding``);
under 'same', TF's average pooling divides by the cells inside the image only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlgan.errors import TlganError
from tlgan.models.formats.keras_h5 import open_hdf5, read_array


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis under TensorFlow's 'same' rule."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = tf_same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = tf_same_padding(x.shape[-1], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def split_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """TensorFlow's 'same' padding as (x with only the odd extra pixel padded, the (H, W) padding left symmetric):
    the symmetric part goes to the convolution's own ``padding``, which spares a padded copy of x."""
    top, bottom = tf_same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = tf_same_padding(x.shape[-1], kernel[1], stride[1])
    if bottom != top or right != left:
        x = F.pad(x, (0, right - left, 0, bottom - top), value=value)
    return x, (top, left)


_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=1),  # channels are dim 1 both for (N, C) and (N, C, H, W)
}


def _activation(name: str, layer: str) -> str:
    if name not in _ACTIVATIONS:
        raise TlganError(f"Keras layer '{layer}': activation '{name}' is not supported ({', '.join(_ACTIVATIONS)})")
    return name


class TFConv2d(nn.Module):
    """Conv2D / DepthwiseConv2D with TF padding semantics and a trailing activation; (N, C, H, W) -> (N, C', H', W')."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: str, bias: bool, groups: int = 1, activation: str = "linear") -> None:
        super().__init__()
        self.kernel, self.stride, self.same = kernel, stride, padding == "same"
        self.weight = nn.Parameter(torch.zeros(cout, cin // groups, *kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.groups, self.activation = groups, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = pad_same(x, self.kernel, self.stride)
        x = F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)
        return _ACTIVATIONS[self.activation](x)


class TFSeparableConv2d(nn.Module):
    """SeparableConv2D: depthwise conv (TF padding) then 1x1 pointwise conv (+ bias, activation)."""

    def __init__(self, cin: int, cout: int, multiplier: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: str, bias: bool, activation: str = "linear") -> None:
        super().__init__()
        self.depthwise = TFConv2d(cin, cin * multiplier, kernel, stride, padding, False, groups=cin)
        self.pointwise = TFConv2d(cin * multiplier, cout, (1, 1), (1, 1), "valid", bias, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class TFMaxPool2d(nn.Module):
    """MaxPooling2D; under 'same' the padded cells never win (padded with -inf, as TF ignores them)."""

    def __init__(self, pool: tuple[int, int], stride: tuple[int, int], padding: str) -> None:
        super().__init__()
        self.pool, self.stride, self.same = pool, stride, padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = pad_same(x, self.pool, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.pool, self.stride)


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.name](x)


class Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class GlobalAveragePool(nn.Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class TFAvgPool2d(nn.Module):
    """AveragePooling2D; under 'same' each window averages only the cells inside the image, as TF does."""

    def __init__(self, pool: tuple[int, int], stride: tuple[int, int], padding: str) -> None:
        super().__init__()
        self.pool, self.stride, self.same = pool, stride, padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return F.avg_pool2d(x, self.pool, self.stride)
        summed = F.avg_pool2d(pad_same(x, self.pool, self.stride), self.pool, self.stride)
        inside = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(pad_same(inside, self.pool, self.stride), self.pool, self.stride)
        return summed / count


class Flatten(nn.Module):
    """(N, C, H, W) -> (N, H*W*C) in Keras' channels_last order (h, then w, then c); (N, K) stays as is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.permute(0, 2, 3, 1)
        return x.reshape(x.shape[0], -1)


class Dense(nn.Module):
    """Dense on (N, K): x @ kernel (+ bias), then the activation. Kernel kept as Keras' (K, units)."""

    def __init__(self, kernel: torch.Tensor, bias: torch.Tensor | None, activation: str) -> None:
        super().__init__()
        self.kernel = nn.Parameter(kernel)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.kernel
        if self.bias is not None:
            out = out + self.bias
        return _ACTIVATIONS[self.activation](out)


@dataclass
class _Node:
    name: str
    kind: str          # Keras class name
    inputs: list[str]


class KerasGraph(nn.Module):
    """A Keras functional graph with one input and one or more outputs, run in NCHW.

    forward: (N, C, H, W) float -> the output layer's tensor ((N, K) for a classifier), or, for a model
    with several outputs, a tuple of them in model_config's ``output_layers`` order.
    ``input_shape`` is Keras' (H, W, C) of the input layer (None where free); ``output_names`` the output layers.
    """

    def __init__(self, nodes: list[_Node], layers: dict[str, nn.Module], input_name: str,
                 output_names: list[str], input_shape: tuple[int | None, int | None, int]) -> None:
        super().__init__()
        self.nodes = nodes
        self.layers = nn.ModuleDict(layers)
        self.input_name, self.output_names, self.input_shape = input_name, list(output_names), input_shape
        last_use: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for name in node.inputs:
                last_use[name] = i
        # After node i runs, these values are no longer needed (keeps peak memory down on big batches).
        self._free_after = [[n for n in set(node.inputs) if last_use[n] == i and n not in self.output_names]
                            for i, node in enumerate(nodes)]

    @property
    def output_name(self) -> str:
        """The output layer of a single-output model (the first output otherwise)."""
        return self.output_names[0]

    def forward(self, x: torch.Tensor, pre_softmax: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The output layers' tensors (a tuple when there are several); with ``pre_softmax``, the input of the
        (first) output's final softmax Activation instead."""
        values = {self.input_name: x}
        for node, free in zip(self.nodes, self._free_after):
            if pre_softmax and node.name == self.output_name:
                if not self.ends_in_softmax:
                    raise TlganError("this Keras model does not end in a softmax Activation layer")
                return values[node.inputs[0]]
            values[node.name] = self.layers[node.name](*[values[n] for n in node.inputs])
            for name in free:
                del values[name]
        if len(self.output_names) == 1:
            return values[self.output_names[0]]
        return tuple(values[name] for name in self.output_names)

    @property
    def ends_in_softmax(self) -> bool:
        """Whether the output layer is a separate softmax Activation (whose input are the class scores)."""
        out = self.layers[self.output_name]
        return isinstance(out, Activation) and out.name == "softmax"

    @torch.no_grad()
    def fold_batchnorm(self) -> int:
        """Fold each BatchNorm that directly follows a linear-activation conv used only by it into that conv.

        Returns the number of BatchNorms folded. Exact up to float rounding; done once after loading.
        """
        consumers: dict[str, list[str]] = {}
        for node in self.nodes:
            for name in node.inputs:
                consumers.setdefault(name, []).append(node.name)
        folded = 0
        for node in self.nodes:
            bn = self.layers[node.name]
            if not isinstance(bn, nn.BatchNorm2d) or len(node.inputs) != 1:
                continue
            source = node.inputs[0]
            if source == self.input_name or consumers.get(source) != [node.name] or source in self.output_names:
                continue
            conv = self.layers[source]
            if isinstance(conv, TFSeparableConv2d):
                conv = conv.pointwise
            if not isinstance(conv, TFConv2d) or conv.activation != "linear":
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.copy_(conv.weight * scale[:, None, None, None])
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=conv.weight.requires_grad)
            self.layers[node.name] = nn.Identity()
            folded += 1
        return folded


def _pair(value, layer: str, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise TlganError(f"Keras layer '{layer}': bad {what} {value!r}")


def _check_2d(config: dict, layer: str) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise TlganError(f"Keras layer '{layer}': only channels_last data is supported")
    if _pair(config.get("dilation_rate", 1), layer, "dilation_rate") != (1, 1):
        raise TlganError(f"Keras layer '{layer}': dilated convolutions are not supported")
    if config.get("groups", 1) != 1:
        raise TlganError(f"Keras layer '{layer}': grouped convolutions are not supported")
    if config.get("padding", "valid") not in ("same", "valid"):
        raise TlganError(f"Keras layer '{layer}': padding {config.get('padding')!r} is not supported")


def _keras_tensor_sources(value: object, out: list[str]) -> None:
    """Names of the layers whose outputs a Keras 3 node's serialised arguments hold, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = (value.get("config") or {}).get("keras_history")
            if not (isinstance(history, list) and history and isinstance(history[0], str)):
                raise TlganError("a Keras tensor in model_config has no keras_history")
            out.append(history[0])
            return
        for item in value.values():
            _keras_tensor_sources(item, out)
    elif isinstance(value, list):
        for item in value:
            _keras_tensor_sources(item, out)


def _inbound(layer: dict) -> list[str]:
    """Names of the layers feeding ``layer`` (Keras 2 or Keras 3 model_config)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) != 1:
        raise TlganError(f"Keras layer '{layer.get('name')}' is used more than once (shared layers are not supported)")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3
        names: list[str] = []
        _keras_tensor_sources(node.get("args"), names)
        if not names:
            raise TlganError(f"Keras layer '{layer.get('name')}': its inbound node names no input tensor")
        return names
    try:
        names = [entry[0] for entry in node]
    except (TypeError, IndexError, KeyError):
        names = []
    if not names or not all(isinstance(n, str) for n in names):
        raise TlganError(f"Keras layer '{layer.get('name')}': unsupported inbound_nodes format")
    return names


def _layer_refs(refs: object, what: str, path: Path) -> list[str]:
    """The layer names of a model's inputs or outputs: [[name, node, tensor], ...] (Keras 3: flat [name, node, tensor]
    for a single one)."""
    if isinstance(refs, list) and refs and isinstance(refs[0], str):
        refs = [refs]
    if not isinstance(refs, list) or not refs:
        raise TlganError(f"{path}: model_config names no {what} layers")
    names = []
    for ref in refs:
        if not (isinstance(ref, list) and ref and isinstance(ref[0], str)):
            raise TlganError(f"{path}: model_config's {what} layers are not understood")
        names.append(ref[0])
    if len(set(names)) != len(names):
        raise TlganError(f"{path}: model_config names an {what} layer twice")
    return names


def _weights(group: h5py.Group | None, layer: str) -> dict[str, np.ndarray]:
    """The layer's arrays keyed by role ('kernel', 'bias', 'gamma', ...)."""
    if group is None:
        return {}
    out = {}
    for raw in group.attrs.get("weight_names", []):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        role = name.rsplit("/", 1)[-1].split(":")[0]
        try:
            out[role] = read_array(group[name], f"Keras layer '{layer}': weight '{name}'").astype(np.float32)
        except KeyError:
            raise TlganError(f"Keras layer '{layer}': weight '{name}' is listed but missing") from None
    return out


def _take(weights: dict[str, np.ndarray], role: str, shape: tuple[int, ...], layer: str) -> torch.Tensor:
    if role not in weights:
        raise TlganError(f"Keras layer '{layer}' has no '{role}' weight")
    array = weights[role]
    if array.shape != shape:
        raise TlganError(f"Keras layer '{layer}': '{role}' has shape {array.shape}, expected {shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


Shape = tuple  # one example's tensor shape in Keras terms: (H, W, C) for images (H, W may be None), (K,) when flat

SUPPORTED = ("InputLayer", "Conv2D", "SeparableConv2D", "BatchNormalization", "Activation", "MaxPooling2D",
             "AveragePooling2D", "Add", "GlobalAveragePooling2D", "Flatten", "Dense", "Dropout")


def _spatial(size: int | None, kernel: int, stride: int, padding: str, layer: str) -> int | None:
    """Output length of one spatial axis under TF's 'same' or 'valid' rule (None stays None)."""
    if size is None:
        return None
    out = math.ceil(size / stride) if padding == "same" else (size - kernel) // stride + 1
    if out < 1:
        raise TlganError(f"Keras layer '{layer}': its {size}-pixel input is smaller than its {kernel}-pixel window")
    return out


def _image(shape: Shape, layer: str, kind: str) -> tuple[int | None, int | None, int]:
    if len(shape) != 3:
        raise TlganError(f"Keras layer '{layer}' ({kind}) needs an image tensor, but its input is flat {shape}")
    return shape


def _build_layer(kind: str, config: dict, name: str, shape: Shape,
                 weights: dict[str, np.ndarray]) -> tuple[nn.Module, Shape]:
    """One Keras layer as a module with its weights loaded; returns (module, output shape)."""
    if kind in ("Conv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D"):
        height, width, channels = _image(shape, name, kind)
        _check_2d(config, name)
        padding = config.get("padding", "valid")
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            kh, kw = _pair(config.get("pool_size", 2), name, "pool_size")
            stride = _pair(config.get("strides") or (kh, kw), name, "strides")
            module, cout = (TFMaxPool2d if kind == "MaxPooling2D" else TFAvgPool2d)((kh, kw), stride, padding), channels
        else:
            kh, kw = _pair(config["kernel_size"], name, "kernel_size")
            stride = _pair(config.get("strides", 1), name, "strides")
            cout, bias = int(config["filters"]), bool(config.get("use_bias", True))
            activation = _activation(config.get("activation", "linear"), name)
            if kind == "Conv2D":
                module = TFConv2d(channels, cout, (kh, kw), stride, padding, bias, activation=activation)
                module.weight.data = _take(weights, "kernel", (kh, kw, channels, cout), name).permute(3, 2, 0, 1).contiguous()
                if bias:
                    module.bias.data = _take(weights, "bias", (cout,), name)
            else:
                mult = int(config.get("depth_multiplier", 1))
                module = TFSeparableConv2d(channels, cout, mult, (kh, kw), stride, padding, bias, activation)
                depthwise = _take(weights, "depthwise_kernel", (kh, kw, channels, mult), name)
                # TF orders depthwise outputs channel-major: output c*mult + m comes from input c.
                module.depthwise.weight.data = depthwise.permute(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw).contiguous()
                pointwise = _take(weights, "pointwise_kernel", (1, 1, channels * mult, cout), name)
                module.pointwise.weight.data = pointwise.permute(3, 2, 0, 1).contiguous()
                if bias:
                    module.pointwise.bias.data = _take(weights, "bias", (cout,), name)
        return module, (_spatial(height, kh, stride[0], padding, name), _spatial(width, kw, stride[1], padding, name), cout)
    if kind == "BatchNormalization":
        channels = _image(shape, name, kind)[2]
        if config.get("axis", -1) not in (-1, 3, [-1], [3]):
            raise TlganError(f"Keras layer '{name}': BatchNormalization must act on the channel axis")
        module = nn.BatchNorm2d(channels, eps=float(config.get("epsilon", 1e-3)))
        if config.get("scale", True):
            module.weight.data = _take(weights, "gamma", (channels,), name)
        if config.get("center", True):
            module.bias.data = _take(weights, "beta", (channels,), name)
        module.running_mean.data = _take(weights, "moving_mean", (channels,), name)
        module.running_var.data = _take(weights, "moving_variance", (channels,), name)
        return module, shape
    if kind == "Activation":
        return Activation(_activation(config.get("activation", "linear"), name)), shape
    if kind == "Dropout":  # identity at inference
        return nn.Identity(), shape
    if kind == "Add":
        return Add(), shape
    if kind == "GlobalAveragePooling2D":
        channels = _image(shape, name, kind)[2]
        if config.get("data_format", "channels_last") != "channels_last" or config.get("keepdims", False):
            raise TlganError(f"Keras layer '{name}': only channels_last data without keepdims is supported")
        return GlobalAveragePool(), (channels,)
    if kind == "Flatten":
        if config.get("data_format", "channels_last") not in ("channels_last", None):
            raise TlganError(f"Keras layer '{name}': only channels_last data is supported")
        if any(size is None for size in shape):
            raise TlganError(f"Keras layer '{name}': Flatten needs a fixed input size, its input is {shape}")
        return Flatten(), (math.prod(shape),)
    if kind == "Dense":
        if len(shape) != 1:
            raise TlganError(f"Keras layer '{name}': Dense on an image tensor {shape} is not supported (Flatten first)")
        units, bias = int(config["units"]), bool(config.get("use_bias", True))
        kernel = _take(weights, "kernel", (shape[0], units), name)
        module = Dense(kernel, _take(weights, "bias", (units,), name) if bias else None,
                       _activation(config.get("activation", "linear"), name))
        return module, (units,)
    raise TlganError(f"Keras layer '{name}' of type {kind} is not supported (supported: {', '.join(SUPPORTED[1:])})")


def load_keras_h5(path: str | Path) -> KerasGraph:
    """Read a whole-model Keras 2 or 3 HDF5 file into a KerasGraph (eval mode, float32, on CPU).

    One input; one output or several (then the graph returns a tuple). Raises TlganError for
    unreadable files, weight-only files, unsupported layers and weights whose shapes disagree with the graph.
    """
    path = Path(path)
    with open_hdf5(path, "Keras model") as handle:
        raw = handle.attrs.get("model_config")
        if raw is None:
            raise TlganError(f"{path} has no model_config: save the whole Keras model, not only its weights")
        try:
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            layer_list = config["config"]["layers"]
            inputs = config["config"]["input_layers"]
            outputs = config["config"]["output_layers"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise TlganError(f"{path}: model_config is not a Keras functional model") from None
        input_names, output_names = _layer_refs(inputs, "input", path), _layer_refs(outputs, "output", path)
        if len(input_names) != 1:
            raise TlganError(f"{path}: only single-input Keras models are supported (this one has {len(input_names)})")
        weight_root = handle.get("model_weights", handle)
        try:
            return _build_graph(path, layer_list, input_names[0], output_names, weight_root)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            # h5py reports damaged or truncated datasets as OSError when they are read.
            raise TlganError(f"cannot read Keras model {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None


def _build_graph(path: Path, layer_list: list[dict], input_name: str, output_names: list[str],
                 weight_root: h5py.Group) -> KerasGraph:
    by_name = {}
    for layer in layer_list:
        name = layer.get("name") or layer.get("config", {}).get("name")  # Keras 2.0 kept it in config only
        by_name[name] = layer
    if input_name not in by_name or any(name not in by_name for name in output_names):
        raise TlganError(f"{path}: input or output layer missing from model_config")
    if input_name in output_names:
        raise TlganError(f"{path}: the model's input is also one of its outputs")
    input_config = by_name[input_name].get("config", {})
    shape = input_config.get("batch_input_shape") or input_config.get("batch_shape")
    if not shape or len(shape) != 4 or not isinstance(shape[3], int):
        raise TlganError(f"{path}: input layer must take images (batch, H, W, C), got {shape}")

    # Depth-first from each output gives a topological order containing only the layers that matter.
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise TlganError(f"{path}: the Keras graph has a cycle at layer '{name}'")
        if name not in by_name:
            raise TlganError(f"{path}: layer '{name}' is referenced but not defined")
        state[name] = 1
        for parent in _inbound(by_name[name]):
            visit(parent)
        state[name] = 2
        order.append(name)

    for output_name in output_names:
        visit(output_name)
    if input_name not in state:
        raise TlganError(f"{path}: the outputs do not depend on the input layer '{input_name}'")

    input_shape = (shape[1], shape[2], int(shape[3]))
    shapes: dict[str, Shape] = {input_name: input_shape}
    nodes, layers = [], {}
    for name in order:
        if name == input_name:
            continue
        layer = by_name[name]
        parents = _inbound(layer)
        if not parents:
            raise TlganError(f"{path}: layer '{name}' has no input (a second input layer?)")
        in_shapes = {shapes[p] for p in parents}
        if len(in_shapes) != 1:
            raise TlganError(f"{path}: layer '{name}' joins tensors of different shapes {sorted(map(str, in_shapes))}")
        if len(parents) > 1 and layer["class_name"] != "Add":
            raise TlganError(f"{path}: layer '{name}' ({layer['class_name']}) takes {len(parents)} inputs")
        group = weight_root.get(name)
        module, shapes[name] = _build_layer(layer["class_name"], layer.get("config", {}), name,
                                            in_shapes.pop(), _weights(group, name))
        layers[name] = module
        nodes.append(_Node(name, layer["class_name"], parents))
    graph = KerasGraph(nodes, layers, input_name, output_names, input_shape)
    return graph.eval().requires_grad_(False)
