"""Writes TensorFlow Lite flatbuffers for tests: small models with the features the real
ones in hand do not exercise (int8 QDQ, IF/WHILE subgraphs, sparse DENSIFY, hostile files).

The reader/writer classes are generated at test time by Debian's flatc from the schema in
../shared/specs/tflite (OUTPOST_TFLITE_SCHEMA), the same schema the importer is built from.
"""
import importlib
import os
import subprocess
import sys
import tempfile

import flatbuffers
import numpy as np

_SCHEMA = os.environ.get(
    "OUTPOST_TFLITE_SCHEMA",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "specs", "tflite", "schema.fbs"))
_GEN = None


def schema():
    """The generated `tflite` Python package (flatc --python), made once per process."""
    global _GEN
    if _GEN is None:
        out = tempfile.mkdtemp(prefix="tflite-py-")
        subprocess.run(["flatc", "--python", "-o", out, _SCHEMA], check=True)
        sys.path.insert(0, out)
        _GEN = importlib.import_module("tflite")
    return _GEN


def _mod(name):
    schema()
    return importlib.import_module("tflite." + name)


TYPES = {np.float32: 0, np.float16: 1, np.int32: 2, np.uint8: 3, np.int64: 4, bool: 6, np.int8: 9}


def _vector(b, start, values, prepend):
    start(b, len(values))
    for v in reversed(values):
        prepend(v)
    return b.EndVector()


class Tensor:
    def __init__(self, name, shape, dtype, data=None, quant=None, signature=None, sparsity=None):
        self.name, self.shape, self.dtype = name, list(shape), dtype
        self.data, self.quant, self.signature, self.sparsity = data, quant, signature, sparsity


class Op:
    def __init__(self, code, inputs, outputs, options=None, custom=None):
        # options: (BuiltinOptions type name, function(builder) -> offset) or None
        self.code, self.inputs, self.outputs, self.options, self.custom = code, inputs, outputs, options, custom


class Subgraph:
    def __init__(self):
        self.tensors, self.inputs, self.outputs, self.ops = [], [], [], []

    def tensor(self, *args, **kw):
        self.tensors.append(Tensor(*args, **kw))
        return len(self.tensors) - 1

    def const(self, name, array, quant=None):
        array = np.ascontiguousarray(array)
        return self.tensor(name, array.shape, array.dtype.type, data=array.tobytes(), quant=quant)

    def op(self, code, inputs, outputs, options=None, custom=None):
        self.ops.append(Op(code, inputs, outputs, options, custom))


def builtin(name):
    return getattr(_mod("BuiltinOperator").BuiltinOperator, name)


def options(kind, **fields):
    """(BuiltinOptions kind, writer) for an options table whose fields are scalars."""
    mod = _mod(kind)

    def write(b):
        getattr(mod, kind + "Start")(b)
        for field, value in fields.items():
            camel = "".join(p.capitalize() for p in field.split("_"))
            getattr(mod, kind + "Add" + camel)(b, value)
        return getattr(mod, kind + "End")(b)
    return (kind, write)


def write_model(subgraphs, identifier=b"TFL3"):
    T = schema()
    M, SG, TE, OP, OC, BU, QP = (_mod(n) for n in (
        "Model", "SubGraph", "Tensor", "Operator", "OperatorCode", "Buffer", "QuantizationParameters"))
    b = flatbuffers.Builder(1024)
    buffers = [b""]
    codes = []

    def code_index(op):
        key = (op.code, op.custom)
        if key not in codes:
            codes.append(key)
        return codes.index(key)

    graph_offsets = []
    for g in subgraphs:
        tensor_offsets = []
        for t in g.tensors:
            buf = 0
            if t.data is not None:
                buffers.append(t.data)
                buf = len(buffers) - 1
            name = b.CreateString(t.name)
            shape = _vector(b, TE.TensorStartShapeVector, t.shape, b.PrependInt32)
            sig = _vector(b, TE.TensorStartShapeSignatureVector, t.signature, b.PrependInt32) if t.signature else None
            quant = None
            if t.quant:
                scales, zeros, axis = t.quant
                s = _vector(b, QP.QuantizationParametersStartScaleVector, list(scales), b.PrependFloat32)
                z = _vector(b, QP.QuantizationParametersStartZeroPointVector, list(zeros), b.PrependInt64)
                QP.QuantizationParametersStart(b)
                QP.QuantizationParametersAddScale(b, s)
                QP.QuantizationParametersAddZeroPoint(b, z)
                QP.QuantizationParametersAddQuantizedDimension(b, axis)
                quant = QP.QuantizationParametersEnd(b)
            sparsity = t.sparsity(b) if t.sparsity else None
            TE.TensorStart(b)
            TE.TensorAddShape(b, shape)
            if sig is not None:
                TE.TensorAddShapeSignature(b, sig)
            TE.TensorAddType(b, TYPES[t.dtype])
            TE.TensorAddBuffer(b, buf)
            TE.TensorAddName(b, name)
            if quant is not None:
                TE.TensorAddQuantization(b, quant)
            if sparsity is not None:
                TE.TensorAddSparsity(b, sparsity)
            tensor_offsets.append(TE.TensorEnd(b))
        op_offsets = []
        for op in g.ops:
            ins = _vector(b, OP.OperatorStartInputsVector, op.inputs, b.PrependInt32)
            outs = _vector(b, OP.OperatorStartOutputsVector, op.outputs, b.PrependInt32)
            opts = op.options[1](b) if op.options else None
            OP.OperatorStart(b)
            OP.OperatorAddOpcodeIndex(b, code_index(op))
            OP.OperatorAddInputs(b, ins)
            OP.OperatorAddOutputs(b, outs)
            if opts is not None:
                kind = getattr(_mod("BuiltinOptions").BuiltinOptions, op.options[0])
                OP.OperatorAddBuiltinOptionsType(b, kind)
                OP.OperatorAddBuiltinOptions(b, opts)
            op_offsets.append(OP.OperatorEnd(b))
        tv = _vector(b, SG.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
        iv = _vector(b, SG.SubGraphStartInputsVector, g.inputs, b.PrependInt32)
        ov = _vector(b, SG.SubGraphStartOutputsVector, g.outputs, b.PrependInt32)
        opv = _vector(b, SG.SubGraphStartOperatorsVector, op_offsets, b.PrependUOffsetTRelative)
        SG.SubGraphStart(b)
        SG.SubGraphAddTensors(b, tv)
        SG.SubGraphAddInputs(b, iv)
        SG.SubGraphAddOutputs(b, ov)
        SG.SubGraphAddOperators(b, opv)
        graph_offsets.append(SG.SubGraphEnd(b))
    code_offsets = []
    for code, custom in codes:
        cc = b.CreateString(custom) if custom else None
        OC.OperatorCodeStart(b)
        OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OC.OperatorCodeAddBuiltinCode(b, code)
        if cc is not None:
            OC.OperatorCodeAddCustomCode(b, cc)
        code_offsets.append(OC.OperatorCodeEnd(b))
    buffer_offsets = []
    for data in buffers:
        d = b.CreateByteVector(data) if data else None
        BU.BufferStart(b)
        if d is not None:
            BU.BufferAddData(b, d)
        buffer_offsets.append(BU.BufferEnd(b))
    sgv = _vector(b, M.ModelStartSubgraphsVector, graph_offsets, b.PrependUOffsetTRelative)
    ocv = _vector(b, M.ModelStartOperatorCodesVector, code_offsets, b.PrependUOffsetTRelative)
    bv = _vector(b, M.ModelStartBuffersVector, buffer_offsets, b.PrependUOffsetTRelative)
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddSubgraphs(b, sgv)
    M.ModelAddOperatorCodes(b, ocv)
    M.ModelAddBuffers(b, bv)
    b.Finish(M.ModelEnd(b), file_identifier=identifier)
    return bytes(b.Output())
