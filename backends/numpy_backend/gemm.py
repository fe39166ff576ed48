"""Convolution and Linear as matrix products through NumPy's BLAS.

In the cnhw layout a convolution over the whole batch is W (Cout, Cin·kh·kw) @ cols (Cin·kh·kw, N·Ho·Wo),
whose result *is* the output tensor (Cout, N, Ho, Wo): no transpose. A 1×1 stride-1 convolution needs no
im2col at all. The columns are gathered through one strided view of the (padded) input, batch chunk by batch
chunk so that they stay in cache; depthwise convolutions, where a GEMM would have a single row, go to
depthwise.py. Plain 3×3 stride-1 convolutions of 32+ channels go to winograd.py,
which does 2.25–4× fewer multiplications.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import depthwise, winograd
from .kernel import CNHW, NCHW, kernel

COLUMN_BYTES = 8 << 20          # im2col chunk budget: a few MB keeps the columns in L2/L3 between copy and GEMM


def padded_source(in_shape, pads, extent, fill: float, scratch):
    """A function placing its (C, N, H, W) input in a scratch buffer of spatial size at least ``extent``, at
    offset (top, left), the rest set to ``fill``; the identity when no padding is needed. Only the border is
    filled at run time, the interior being overwritten anyway."""
    top, left = pads[0], pads[1]
    c, n, h, w = in_shape
    hp, wp = max(extent[0], top + h), max(extent[1], left + w)
    if (top, left, hp, wp) == (0, 0, h, w):
        return lambda source: source
    get = scratch.request((c, n, hp, wp))

    def pad(source):
        buffer = get()
        buffer[:, :, :top] = fill
        buffer[:, :, top + h:] = fill
        buffer[:, :, top:top + h, :left] = fill
        buffer[:, :, top:top + h, left + w:] = fill
        buffer[:, :, top:top + h, left:left + w] = source
        return buffer
    return pad


def window_view(xp: np.ndarray, kernel_size, stride, dilation, out_hw):
    """(C, kh, kw, N, Ho, Wo) view of every kernel tap of every output pixel, without copying."""
    c, n = xp.shape[:2]
    s_c, s_n, s_h, s_w = xp.strides
    return as_strided(xp, shape=(c, kernel_size[0], kernel_size[1], n, out_hw[0], out_hw[1]),
                      strides=(s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w),
                      writeable=False)


def tap(xp: np.ndarray, i: int, j: int, stride, dilation, out_hw) -> np.ndarray:
    """The (C, N, Ho, Wo) view of input pixels that kernel tap (i, j) multiplies."""
    h0, w0 = i * dilation[0], j * dilation[1]
    return xp[:, :, h0:h0 + stride[0] * (out_hw[0] - 1) + 1:stride[0], w0:w0 + stride[1] * (out_hw[1] - 1) + 1:stride[1]]


@kernel("Conv2d", layouts=(CNHW,), hosts_epilogue=True)
def make_conv(ctx):
    a = ctx.attrs
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    kh, kw = a["kernel_size"]
    weight, bias, epilogue = fold_affine(ctx.params["weight"], ctx.params.get("bias"), ctx.epilogue)

    def finish(region, channels: slice):
        """Bias, then the absorbed element-wise layers, on a block of the output while it is in cache."""
        if bias is not None:
            region += bias[channels, None, None, None]
        for apply in epilogue:
            apply(region, channels)

    tile = winograd.tile_size(a, cin, cout, n, (ho, wo))
    if tile is not None:
        return winograd.winograd_conv(ctx, weight, tile, finish)
    if a["groups"] == cin and cin > 1:
        return depthwise.depthwise_conv(ctx, weight, bias, epilogue)
    extent = ((ho - 1) * a["stride"][0] + (kh - 1) * a["dilation"][0] + 1,
              (wo - 1) * a["stride"][1] + (kw - 1) * a["dilation"][1] + 1)
    pad = padded_source((cin, n, h, w), a["pads"], extent, 0.0, ctx.scratch)

    if (kh, kw) == (1, 1) and a["stride"] == (1, 1) and a["pads"] == (0, 0, 0, 0) and a["groups"] == 1:
        matrix = weight.reshape(cout, cin)

        def pointwise(inputs, out):
            np.matmul(matrix, inputs[0].reshape(cin, n * h * w), out=out.reshape(cout, n * ho * wo))
            finish(out, slice(None))
            return out
        return pointwise
    return im2col_gemm(ctx, weight, pad, finish)


def im2col_gemm(ctx, weight, pad, finish):
    """Gather the columns of a batch chunk through one strided view, one GEMM per group and chunk."""
    a = ctx.attrs
    cin, n = ctx.physical(ctx.in_shapes[0])[:2]
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    kh, kw = a["kernel_size"]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    k = cin_g * kh * kw
    chunk = max(1, min(n, COLUMN_BYTES // (k * ho * wo * 4)))
    columns = ctx.scratch.request((cin_g, kh, kw, chunk, ho, wo))
    matrices = [weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, k) for g in range(groups)]

    def step(inputs, out):
        xp = pad(inputs[0])
        cols_full = columns()
        for n0 in range(0, n, chunk):
            nb = min(chunk, n - n0)
            cols = cols_full[:, :, :, :nb]
            for g, matrix in enumerate(matrices):
                source = window_view(xp[g * cin_g:(g + 1) * cin_g, n0:n0 + nb], a["kernel_size"], a["stride"],
                                     a["dilation"], (ho, wo))
                np.copyto(cols, source)
                channels = slice(g * cout_g, (g + 1) * cout_g)
                region = out[channels, n0:n0 + nb]
                np.matmul(matrix, cols.reshape(k, nb * ho * wo), out=region.reshape(cout_g, nb * ho * wo))
                finish(region, channels)
        return out
    return step


@kernel("Linear", layouts=(NCHW,))
def make_linear(ctx):
    weight_t = ctx.params["weight"].T          # a transposed view: BLAS reads it with the trans flag
    bias = ctx.params.get("bias")
    features = ctx.in_shapes[0][-1]
    rows = int(np.prod(ctx.in_shapes[0][:-1]))

    def step(inputs, out):
        flat = out.reshape(rows, -1)
        np.matmul(inputs[0].reshape(rows, features), weight_t, out=flat)
        if bias is not None:
            flat += bias
        for apply in ctx.epilogue:                  # a fused activation (element-wise: channels unused)
            apply(flat, slice(None))
        return out
    return step


def fold_affine(weight, bias, epilogue):
    """The BatchNorms right behind a convolution (epilogues with ``affine`` = per-channel scale and shift)
    folded into its weight and bias, as onnxruntime does: a pass over the output less per BatchNorm, for a
    scaled copy of the weight; equal within rounding."""
    epilogue = list(epilogue)
    while epilogue and getattr(epilogue[0], "affine", None) is not None:
        scale, shift = (np.asarray(v, np.float32).reshape(-1) for v in epilogue.pop(0).affine)
        weight = weight * scale.reshape(-1, *[1] * (weight.ndim - 1))
        bias = shift if bias is None else bias * scale + shift
    return weight, bias, epilogue
