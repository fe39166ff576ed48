"""Conv1d, Conv3d and the transposed convolutions (any rank) as batched matrix products.

Both work in the plain (N, C, spatial...) layout (the cnhw layout is a 4-D affair, see gemm.py, which keeps
Conv2d's own fast paths). Groups are one batched ``np.matmul`` over a (group, ...) axis, never a Python loop:

  convolution   cols (N, G, Cin/G·k…, P) gathered through one strided view of the zero-padded input;
                out (N, G, Cout/G, P) = W (G, Cout/G, Cin/G·k…) @ cols.
  transposed    cols (N, G, Cout/G·k…, Pin) = Wᵀ (G, Cout/G·k…, Cin/G) @ x (N, G, Cin/G, Pin); then each
                kernel tap's slice of cols is added into the full output at that tap's offset, ``stride``
                apart (col2im; the loop runs over kernel taps only), and the pads are cropped.
A fused activation (element-wise) runs in place on the whole output.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .kernel import NCHW, kernel


def _finish(ctx, bias, out):
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * (out.ndim - 2))
    for apply in ctx.epilogue:                  # a fused activation: element-wise, channels unused
        apply(out, slice(None))
    return out


@kernel("Conv1d", layouts=(NCHW,))
@kernel("Conv3d", layouts=(NCHW,))
def make_conv_nd(ctx):
    a = ctx.attrs
    n, cin, *size = ctx.in_shapes[0]
    _, cout, *out_size = ctx.out_shape
    dims, groups = len(size), a["groups"]
    kernel_size, stride, dilation, pads = a["kernel_size"], a["stride"], a["dilation"], a["pads"]
    begins = pads[:dims]
    padded = tuple(max(b + s, (o - 1) * st + (k - 1) * d + 1)
                   for b, s, o, st, k, d in zip(begins, size, out_size, stride, kernel_size, dilation))
    pad = zero_padded(ctx.scratch, (n, cin, *size), padded, begins)
    cin_g, cout_g, taps = cin // groups, cout // groups, math.prod(kernel_size)
    rows, positions = cin_g * taps, math.prod(out_size)
    columns = ctx.scratch.request((n, groups, cin_g, *kernel_size, *out_size))
    matrices = ctx.params["weight"].reshape(groups, cout_g, rows)
    bias = ctx.params.get("bias")

    def step(inputs, out):
        xp = pad(inputs[0])
        s_n, s_c, *s_space = xp.strides
        window = as_strided(xp, shape=(n, groups, cin_g, *kernel_size, *out_size),
                            strides=(s_n, cin_g * s_c, s_c, *(d * s for d, s in zip(dilation, s_space)),
                                     *(st * s for st, s in zip(stride, s_space))), writeable=False)
        cols = columns()
        np.copyto(cols, window)
        np.matmul(matrices, cols.reshape(n, groups, rows, positions), out=out.reshape(n, groups, cout_g, positions))
        return _finish(ctx, bias, out)
    return step


@kernel("ConvTranspose1d", layouts=(NCHW,))
@kernel("ConvTranspose2d", layouts=(NCHW,))
@kernel("ConvTranspose3d", layouts=(NCHW,))
def make_conv_transpose(ctx):
    a = ctx.attrs
    n, cin, *size = ctx.in_shapes[0]
    _, cout, *out_size = ctx.out_shape
    dims, groups = len(size), a["groups"]
    kernel_size, stride, dilation, pads = a["kernel_size"], a["stride"], a["dilation"], a["pads"]
    begins = pads[:dims]
    cin_g, cout_g, taps = cin // groups, cout // groups, math.prod(kernel_size)
    positions = math.prod(size)
    # the full scatter, long enough for the cropped output (output_padding may reach past the last tap)
    full_size = tuple(max((s - 1) * st + (k - 1) * d + 1, b + o)
                      for s, st, k, d, b, o in zip(size, stride, kernel_size, dilation, begins, out_size))
    full = ctx.scratch.request((n, cout, *full_size))
    columns = ctx.scratch.request((n, groups, cout_g * taps, positions))
    matrices = np.ascontiguousarray(
        ctx.params["weight"].reshape(groups, cin_g, cout_g * taps).transpose(0, 2, 1))
    bias = ctx.params.get("bias")
    channel_bias = None if bias is None else bias.reshape((1, -1) + (1,) * dims)
    crop = (slice(None), slice(None)) + tuple(slice(b, b + o) for b, o in zip(begins, out_size))
    tap_slices = [(tap, (slice(None), slice(None)) + tuple(
        slice(t * d, t * d + st * (s - 1) + 1, st) for t, d, st, s in zip(tap, dilation, stride, size)))
        for tap in itertools.product(*(range(k) for k in kernel_size))]

    def step(inputs, out):
        cols = columns()
        np.matmul(matrices, inputs[0].reshape(n, groups, cin_g, positions), out=cols)
        per_tap = cols.reshape(n, cout, *kernel_size, *size)
        target = full()
        if bias is None:
            target.fill(0.0)
        else:                                   # the scatter starts from the bias: no pass over out for it
            np.copyto(target, channel_bias)
        for tap, where in tap_slices:
            target[where] += per_tap[(slice(None), slice(None)) + tap]
        np.copyto(out, target[crop])
        return _finish(ctx, None, out)
    return step


def zero_padded(scratch, shape, padded, begins):
    """A function giving x (N, C, *size) zero-padded to the spatial extent ``padded``, x's first cell at
    ``begins``, in a scratch buffer; x itself when no padding is needed."""
    n, c, *size = shape
    if tuple(padded) == tuple(size):
        return lambda x: x
    get = scratch.request((n, c, *padded))
    interior = (slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begins, size))

    def pad(x):
        xp = get()
        xp.fill(0.0)
        xp[interior] = x
        return xp
    return pad
