"""Small TensorFlow Lite models, written with tflite_writer, each with a numpy reference:
what the real models in hand do not exercise (int8 QDQ with per-channel weights, IF and
WHILE subgraphs, block-sparse fp16 weights behind DENSIFY) and files that must be refused."""
import numpy as np

from tflite_writer import Subgraph, builtin, options, write_model


def quantize(x, scale, zero, lo=-128, hi=127):
    return np.clip(np.floor(x / scale + 0.5) + zero, lo, hi)


def conv_nhwc(x, w, b, stride=1):
    """SAME convolution, x [1,H,W,C], w [O,KH,KW,C]."""
    _, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    y = np.zeros((1, h, wd, o), np.float64)
    for i in range(h):
        for j in range(wd):
            patch = xp[0, i:i + kh, j:j + kw, :]
            y[0, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2])) + b
    return y


def quant_conv():
    """float -> QUANTIZE -> int8 CONV_2D (per-channel weights, int32 bias, RELU) -> DEQUANTIZE."""
    rng = np.random.default_rng(7)
    in_s, in_z, out_s, out_z = 0.05, -3, 0.04, 5
    w_s = np.array([0.02, 0.03, 0.01], np.float32)
    wq = rng.integers(-100, 100, size=(3, 3, 3, 2)).astype(np.int8)
    bq = rng.integers(-200, 200, size=3).astype(np.int32)
    g = Subgraph()
    x = g.tensor("x", [1, 6, 6, 2], np.float32)
    xq = g.tensor("x_q", [1, 6, 6, 2], np.int8, quant=([in_s], [in_z], 0))
    w = g.const("w", wq, quant=(w_s, [0, 0, 0], 0))
    b = g.const("b", bq, quant=(w_s * in_s, [0, 0, 0], 0))
    yq = g.tensor("y_q", [1, 6, 6, 3], np.int8, quant=([out_s], [out_z], 0))
    y = g.tensor("y", [1, 6, 6, 3], np.float32)
    g.op(builtin("QUANTIZE"), [x], [xq])
    g.op(builtin("CONV_2D"), [xq, w, b], [yq],
         options("Conv2DOptions", padding=0, stride_w=1, stride_h=1, fused_activation_function=1))
    g.op(builtin("DEQUANTIZE"), [yq], [y])
    g.inputs, g.outputs = [x], [y]

    def reference(xv):
        xd = (quantize(xv, in_s, in_z) - in_z) * in_s
        wd = wq.astype(np.float64) * w_s[:, None, None, None]
        acc = conv_nhwc(xd, wd, bq * w_s * in_s)
        return ((quantize(np.maximum(acc, 0), out_s, out_z) - out_z) * out_s).astype(np.float32)
    return write_model([g]), reference, out_s


def control_flow():
    """IF(flag) then 2x else x-1, then WHILE i < 5: (i+1, v*1.5)."""
    main = Subgraph()
    flag = main.tensor("flag", [1], bool)
    x = main.tensor("x", [4], np.float32)
    v = main.tensor("v", [4], np.float32)
    i0 = main.const("i0", np.array(0, np.int32))
    i_out = main.tensor("i_out", [], np.int32)
    v_out = main.tensor("v_out", [4], np.float32)
    main.op(builtin("IF"), [flag, x], [v], options("IfOptions", then_subgraph_index=1, else_subgraph_index=2))
    main.op(builtin("WHILE"), [i0, v], [i_out, v_out],
            options("WhileOptions", cond_subgraph_index=3, body_subgraph_index=4))
    main.inputs, main.outputs = [flag, x], [v_out, i_out]

    def unary(code, constant):
        g = Subgraph()
        a = g.tensor("a", [4], np.float32)
        c = g.const("c", np.array(constant, np.float32))
        out = g.tensor("out", [4], np.float32)
        g.op(builtin(code), [a, c], [out])
        g.inputs, g.outputs = [a], [out]
        return g

    cond = Subgraph()
    ci = cond.tensor("i", [], np.int32)
    cv = cond.tensor("v", [4], np.float32)
    limit = cond.const("limit", np.array(5, np.int32))
    more = cond.tensor("more", [], bool)
    cond.op(builtin("LESS"), [ci, limit], [more])
    cond.inputs, cond.outputs = [ci, cv], [more]

    body = Subgraph()
    bi = body.tensor("i", [], np.int32)
    bv = body.tensor("v", [4], np.float32)
    one = body.const("one", np.array(1, np.int32))
    k = body.const("k", np.array(1.5, np.float32))
    ni = body.tensor("i_next", [], np.int32)
    nv = body.tensor("v_next", [4], np.float32)
    body.op(builtin("ADD"), [bi, one], [ni])
    body.op(builtin("MUL"), [bv, k], [nv])
    body.inputs, body.outputs = [bi, bv], [ni, nv]

    def reference(flag_value, xv):
        base = 2 * xv if flag_value else xv - 1
        return (base * 1.5 ** 5).astype(np.float32), 5
    return write_model([main, unary("MUL", 2.0), unary("SUB", 1.0), cond, body]), reference


def _sparse_params(b, dense_sizes, segments, indices):
    """SparsityParameters for a [4, 8] matrix in 1x4 blocks: rows dense, block columns CSR."""
    from tflite_writer import _mod, _vector
    SP, DM, IV = _mod("SparsityParameters"), _mod("DimensionMetadata"), _mod("Int32Vector")
    SIV = _mod("SparseIndexVector").SparseIndexVector

    def int32_vector(values):
        v = _vector(b, IV.Int32VectorStartValuesVector, values, b.PrependInt32)
        IV.Int32VectorStart(b)
        IV.Int32VectorAddValues(b, v)
        return IV.Int32VectorEnd(b)

    seg, idx = int32_vector(segments), int32_vector(indices)
    metas = []
    for level in range(3):
        DM.DimensionMetadataStart(b)
        if level == 1:
            DM.DimensionMetadataAddFormat(b, 1)  # SPARSE_CSR
            DM.DimensionMetadataAddArraySegmentsType(b, SIV.Int32Vector)
            DM.DimensionMetadataAddArraySegments(b, seg)
            DM.DimensionMetadataAddArrayIndicesType(b, SIV.Int32Vector)
            DM.DimensionMetadataAddArrayIndices(b, idx)
        else:
            DM.DimensionMetadataAddFormat(b, 0)
            DM.DimensionMetadataAddDenseSize(b, dense_sizes[level])
        metas.append(DM.DimensionMetadataEnd(b))
    order = _vector(b, SP.SparsityParametersStartTraversalOrderVector, [0, 1, 2], b.PrependInt32)
    bmap = _vector(b, SP.SparsityParametersStartBlockMapVector, [1], b.PrependInt32)
    dims = _vector(b, SP.SparsityParametersStartDimMetadataVector, metas, b.PrependUOffsetTRelative)
    SP.SparsityParametersStart(b)
    SP.SparsityParametersAddTraversalOrder(b, order)
    SP.SparsityParametersAddBlockMap(b, bmap)
    SP.SparsityParametersAddDimMetadata(b, dims)
    return SP.SparsityParametersEnd(b)


def sparse_fc():
    """Block-sparse fp16 weights -> DENSIFY -> DEQUANTIZE -> FULLY_CONNECTED."""
    rng = np.random.default_rng(3)
    dense = np.zeros((4, 8), np.float16)
    blocks = {0: [1], 1: [0, 1], 2: [], 3: [0]}  # row -> block columns present
    segments, indices, values = [0], [], []
    for row in range(4):
        for col in blocks[row]:
            block = rng.normal(size=4).astype(np.float16)
            dense[row, col * 4:col * 4 + 4] = block
            values.extend(block)
            indices.append(col)
        segments.append(len(indices))
    g = Subgraph()
    x = g.tensor("x", [2, 8], np.float32)
    ws = g.tensor("w_sparse", [4, 8], np.float16, data=np.array(values, np.float16).tobytes(),
                  sparsity=lambda b: _sparse_params(b, [4, 2, 4], segments, indices))
    wh = g.tensor("w_fp16", [4, 8], np.float16)
    wf = g.tensor("w", [4, 8], np.float32)
    bias = g.const("bias", np.array([0.5, -0.25, 0, 1], np.float32))
    y = g.tensor("y", [2, 4], np.float32)
    g.op(builtin("DENSIFY"), [ws], [wh])
    g.op(builtin("DEQUANTIZE"), [wh], [wf])
    g.op(builtin("FULLY_CONNECTED"), [x, wf, bias], [y], options("FullyConnectedOptions"))
    g.inputs, g.outputs = [x], [y]

    def reference(xv):
        return (xv @ dense.astype(np.float32).T + np.array([0.5, -0.25, 0, 1], np.float32)).astype(np.float32)
    return write_model([g]), reference


def unsupported(custom=None):
    """A model with an operator the importer has no translation for."""
    g = Subgraph()
    x = g.tensor("x", [4], np.float32)
    y = g.tensor("y", [4], np.float32)
    g.op(builtin("CUSTOM") if custom else builtin("LSH_PROJECTION"), [x], [y], custom=custom)
    g.inputs, g.outputs = [x], [y]
    return write_model([g])


def self_calling():
    """IF whose branch is the graph it sits in: must be refused, not recursed into forever."""
    g = Subgraph()
    flag = g.tensor("flag", [1], bool)
    x = g.tensor("x", [4], np.float32)
    y = g.tensor("y", [4], np.float32)
    g.op(builtin("IF"), [flag, flag, x], [y], options("IfOptions", then_subgraph_index=0, else_subgraph_index=0))
    g.inputs, g.outputs = [flag, x], [y]
    return write_model([g])
