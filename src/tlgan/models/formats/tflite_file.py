"""Reading a TensorFlow Lite model file (a FlatBuffer in the TFLite schema) into plain data, without TensorFlow.

The schema's generated readers come from PyPI's ``tflite`` package (flatbuffers only);
nothing in the file is executed: a model is a list of operators, each naming its
builtin kind, its input and output tensors and its options, plus constant
buffers. This reader returns exactly that, with float16 constants widened to
float32 (MediaPipe's models store weights as float16 and DEQUANTIZE them first;
the DEQUANTIZE operators are folded away here, their outputs becoming constants).

Only the first subgraph is read, and only float models: an int8-quantised
tensor, a custom operator or a second subgraph is a TlganError naming it.
Layouts are TFLite's own: activations NHWC, CONV_2D kernels (out, kh, kw, in),
DEPTHWISE_CONV_2D kernels (1, kh, kw, C * multiplier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlgan.errors import TlganError

# TFLite TensorType codes -> NumPy dtypes of constant buffers.
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
# Options read per operator kind: (options class name, fields as snake_case -> getter name).
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", ("Padding", "StrideW", "StrideH", "DilationWFactor", "DilationHFactor",
                                  "FusedActivationFunction")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("Padding", "StrideW", "StrideH", "DepthMultiplier",
                                                     "DilationWFactor", "DilationHFactor",
                                                     "FusedActivationFunction")),
    "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                                      "FusedActivationFunction")),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight",
                                          "FusedActivationFunction")),
    "ADD": ("AddOptions", ("FusedActivationFunction",)),
}


@dataclass
class Operator:
    """One operator: its builtin kind ('CONV_2D'), input and output tensor indices (-1: absent) and options."""

    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfliteModel:
    """A TFLite graph as plain data: tensor names and shapes, constants by tensor index, operators in order."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    constants: dict[int, np.ndarray]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    source: str = ""


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _options(op: Any, kind: str) -> dict[str, Any]:
    import tflite

    if kind not in _OPTIONS:
        return {}
    class_name, fields = _OPTIONS[kind]
    table = op.BuiltinOptions()
    if table is None:
        return {}
    options = getattr(tflite, class_name)()
    options.Init(table.Bytes, table.Pos)
    return {name: int(getattr(options, name)()) for name in fields}


def read_tflite(path: str | Path) -> TfliteModel:
    """Read the model at ``path``; TlganError (one line) for a file that is not a float TFLite model."""
    import tflite

    source = str(path)
    if not Path(path).is_file():
        raise TlganError(f"TensorFlow Lite model {source} does not exist")
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TlganError(f"{source}: not a TensorFlow Lite model (no 'TFL3' identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise TlganError(f"{source}: {model.SubgraphsLength()} subgraphs; only single-graph models are read")
        graph = model.Subgraphs(0)
        names, shapes, constants = [], [], {}
        for index in range(graph.TensorsLength()):
            tensor = graph.Tensors(index)
            names.append(tensor.Name().decode("utf-8", "replace"))
            shapes.append(tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ())
            quant = tensor.Quantization()
            if quant is not None and quant.ScaleLength():
                raise TlganError(f"{source}: tensor '{names[-1]}' is quantised; only float models are read")
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and buffer.DataLength():
                if tensor.Type() not in _DTYPES:
                    raise TlganError(f"{source}: tensor '{names[-1]}' has unsupported type code {tensor.Type()}")
                raw = buffer.DataAsNumpy().tobytes()
                array = np.frombuffer(raw, dtype=_DTYPES[tensor.Type()]).reshape(shapes[-1])
                constants[index] = array.astype(np.float32) if array.dtype == np.float16 else array.copy()
        builtin = _builtin_names()
        operators: list[Operator] = []
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            kind = builtin.get(number, f"builtin {number}")
            if kind == "CUSTOM":
                raise TlganError(f"{source}: custom operator '{code.CustomCode().decode()}' is not supported")
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(i) for i in op.OutputsAsNumpy()]
            if kind == "DEQUANTIZE" and inputs[0] in constants:
                constants[outputs[0]] = constants[inputs[0]].astype(np.float32)
                continue
            operators.append(Operator(kind, inputs, outputs, _options(op, kind)))
        graph_inputs = [int(i) for i in graph.InputsAsNumpy()]
        graph_outputs = [int(i) for i in graph.OutputsAsNumpy()]
    except TlganError:
        raise
    except Exception as error:  # a damaged FlatBuffer fails anywhere inside the generated readers
        raise TlganError(f"{source}: damaged TensorFlow Lite model ({type(error).__name__}: {error})") from None
    return TfliteModel(names, shapes, constants, operators, graph_inputs, graph_outputs, source)
