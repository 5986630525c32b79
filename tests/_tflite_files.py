"""Writing small TensorFlow Lite files in the real format (a FlatBuffer in the TFLite schema, identifier 'TFL3'),
with the schema's own builders from PyPI ``tflite``, laid out as TFLite's converter lays out MediaPipe's models:
float16 constants DEQUANTIZEd to float32 first, activations NHWC."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

_TYPES = {np.dtype(np.float32): tflite.TensorType.FLOAT32, np.dtype(np.float16): tflite.TensorType.FLOAT16,
          np.dtype(np.int32): tflite.TensorType.INT32}


@dataclass
class Graph:
    """A graph being described: tensors (name, shape, dtype, constant data or None) and operators."""

    tensors: list[tuple[str, tuple[int, ...], np.dtype, np.ndarray | None]] = field(default_factory=list)
    operators: list[tuple[str, list[int], list[int], dict]] = field(default_factory=list)

    def tensor(self, name: str, shape: tuple[int, ...], data: np.ndarray | None = None,
               dtype: np.dtype = np.dtype(np.float32)) -> int:
        self.tensors.append((name, tuple(shape), np.dtype(data.dtype if data is not None else dtype), data))
        return len(self.tensors) - 1

    def weight(self, name: str, value: np.ndarray) -> int:
        """A float16 constant and the DEQUANTIZE that widens it, as the converter writes weights; the float32 index."""
        half = self.tensor(name, value.shape, value.astype(np.float16))
        full = self.tensor(name + "_dequantize", value.shape)
        self.operators.append(("DEQUANTIZE", [half], [full], {}))
        return full

    def op(self, kind: str, inputs: list[int], shape: tuple[int, ...], name: str, **options: int) -> int:
        out = self.tensor(name, shape)
        self.operators.append((kind, inputs, [out], options))
        return out


_OPTIONS = {  # kind -> (BuiltinOptions member, builder prefix)
    "CONV_2D": ("Conv2DOptions", "Conv2DOptions"),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", "DepthwiseConv2DOptions"),
    "MAX_POOL_2D": ("Pool2DOptions", "Pool2DOptions"),
    "ADD": ("AddOptions", "AddOptions"),
}


def _vector(builder: flatbuffers.Builder, start, items: list, prepend) -> int:
    start(builder, len(items))
    for item in reversed(items):
        prepend(item)
    return builder.EndVector()


def write_tflite(path: Path, graph: Graph, inputs: list[int], outputs: list[int]) -> Path:
    """Write ``graph`` as a one-subgraph TFLite model file at ``path``."""
    b = flatbuffers.Builder(1024)
    tensor_offsets = []
    buffer_data = [None]   # buffer 0 is the empty one, by convention
    for name, shape, dtype, data in graph.tensors:
        buffer_data.append(data)
    buffer_offsets = []
    for data in buffer_data:
        raw = None if data is None else b.CreateByteVector(np.ascontiguousarray(data).tobytes())
        tflite.BufferStart(b)
        if raw is not None:
            tflite.BufferAddData(b, raw)
        buffer_offsets.append(tflite.BufferEnd(b))
    for index, (name, shape, dtype, data) in enumerate(graph.tensors):
        name_off = b.CreateString(name)
        shape_off = _vector(b, tflite.TensorStartShapeVector, list(shape), b.PrependInt32)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, _TYPES[dtype])
        tflite.TensorAddBuffer(b, index + 1 if data is not None else 0)
        tflite.TensorAddName(b, name_off)
        tensor_offsets.append(tflite.TensorEnd(b))
    kinds = sorted({kind for kind, *_ in graph.operators})
    code_offsets = []
    for kind in kinds:
        code = getattr(tflite.BuiltinOperator, kind)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        code_offsets.append(tflite.OperatorCodeEnd(b))
    op_offsets = []
    for kind, ins, outs, options in graph.operators:
        opts = None
        if kind in _OPTIONS:
            member, prefix = _OPTIONS[kind]
            getattr(tflite, prefix + "Start")(b)
            for key, value in options.items():
                getattr(tflite, prefix + "Add" + key)(b, value)
            opts = getattr(tflite, prefix + "End")(b)
        in_off = _vector(b, tflite.OperatorStartInputsVector, ins, b.PrependInt32)
        out_off = _vector(b, tflite.OperatorStartOutputsVector, outs, b.PrependInt32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, kinds.index(kind))
        tflite.OperatorAddInputs(b, in_off)
        tflite.OperatorAddOutputs(b, out_off)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, member))
            tflite.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(tflite.OperatorEnd(b))
    tensors_vec = _vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
    ops_vec = _vector(b, tflite.SubGraphStartOperatorsVector, op_offsets, b.PrependUOffsetTRelative)
    in_vec = _vector(b, tflite.SubGraphStartInputsVector, inputs, b.PrependInt32)
    out_vec = _vector(b, tflite.SubGraphStartOutputsVector, outputs, b.PrependInt32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    subgraph = tflite.SubGraphEnd(b)
    subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph], b.PrependUOffsetTRelative)
    codes = _vector(b, tflite.ModelStartOperatorCodesVector, code_offsets, b.PrependUOffsetTRelative)
    bufs = _vector(b, tflite.ModelStartBuffersVector, buffer_offsets, b.PrependUOffsetTRelative)
    description = b.CreateString("tlgan test model")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, bufs)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path
