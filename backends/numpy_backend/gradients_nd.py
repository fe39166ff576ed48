"""Kernels of the N-D gradient ops (cnngraph/layers/nd_gradients.py), in the plain (N, C, spatial...) layout
like conv_nd.py; loops run over kernel taps and axes only.

  ConvNdGradWeight     the columns of x (G, Cin/G·k…, N·P), gathered through one strided view of the padded
                       input, then one batched GEMM: ∂W (G, Cout/G, Cin/G·k…) = ∂y (G, Cout/G, N·P) @ colsᵀ.
  MaxPoolNdGrad        per tap (row-major), a strided view of the −inf-padded x compared with y: the first
                       tap holding the maximum takes the window's ∂y, which is then spent.
  AvgPoolNdGrad        ∂y/divisor added onto every tap's strided view of a padded buffer, then cropped.
  AdaptiveAvgPoolGrad  a product with each changed axis's averaging matrix, transposed.
  AdaptiveMaxPoolGrad  per tap of the longest window, the flat input index of each window's first maximum;
                       then one bincount of ∂y at those indices (windows overlap).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnngraph.layers.adaptive_pooling import tap_indices
from cnngraph.shapes import average_pool_divisor

from .adaptive_pooling import averaging_matrix
from .conv_nd import zero_padded
from .kernel import NCHW, kernel


def _padded_extent(size, out_size, kernel_size, stride, dilation, begins) -> tuple:
    """The padded input every tap of every window reads (ceil_mode windows may reach past the padding)."""
    return tuple(max(b + s, (o - 1) * st + (k - 1) * d + 1)
                 for s, o, k, st, d, b in zip(size, out_size, kernel_size, stride, dilation, begins))


def _interior(begins, size) -> tuple:
    return (slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begins, size))


def _tap_views(kernel_size, stride, dilation, out_size) -> list[tuple]:
    """Per tap (row-major), the index of the padded input cells it reads at every output position."""
    return [(slice(None), slice(None)) + tuple(slice(t * d, t * d + st * (o - 1) + 1, st)
                                               for t, d, st, o in zip(tap, dilation, stride, out_size))
            for tap in itertools.product(*(range(k) for k in kernel_size))]


@kernel("ConvNdGradWeight", layouts=(NCHW,))
def make_conv_nd_grad_weight(ctx):
    a = ctx.attrs
    n, cin, *size = ctx.in_shapes[0]
    _, cout, *out_size = ctx.in_shapes[1]
    dims, groups = len(size), a["groups"]
    kernel_size, stride, dilation = a["kernel_size"], a["stride"], a["dilation"]
    begins = a["pads"][:dims]
    padded = _padded_extent(size, out_size, kernel_size, stride, dilation, begins)
    pad = zero_padded(ctx.scratch, (n, cin, *size), padded, begins)
    cin_g, cout_g = cin // groups, cout // groups
    rows, count = cin_g * math.prod(kernel_size), n * math.prod(out_size)
    columns = ctx.scratch.request((groups, cin_g, *kernel_size, n, *out_size))
    gradient = ctx.scratch.request((groups, cout_g, n, *out_size))
    dy_order = (1, 2, 0, *range(3, 3 + dims))            # (N, G, Cout/G, *out) -> (G, Cout/G, N, *out)

    def step(inputs, out):
        xp, dy = pad(inputs[0]), inputs[1]
        s_n, s_c, *s_space = xp.strides
        window = as_strided(xp, shape=(groups, cin_g, *kernel_size, n, *out_size),
                            strides=(cin_g * s_c, s_c, *(d * s for d, s in zip(dilation, s_space)), s_n,
                                     *(st * s for st, s in zip(stride, s_space))), writeable=False)
        cols = columns()
        np.copyto(cols, window)
        g = gradient()
        np.copyto(g, dy.reshape(n, groups, cout_g, *out_size).transpose(dy_order))
        np.matmul(g.reshape(groups, cout_g, count), cols.reshape(groups, rows, count).transpose(0, 2, 1),
                  out=out.reshape(groups, cout_g, rows))
        return out
    return step


@kernel("MaxPoolNdGrad", layouts=(NCHW,))
def make_max_pool_nd_grad(ctx):
    a = ctx.attrs
    n, c, *size = ctx.in_shapes[0]
    out_size = tuple(ctx.in_shapes[1][2:])
    begins = a["pads"][:len(size)]
    extent = _padded_extent(size, out_size, a["kernel_size"], a["stride"], a["dilation"], begins)
    padded, scattered = ctx.scratch.request((n, c, *extent)), ctx.scratch.request((n, c, *extent))
    remaining, given = ctx.scratch.request((n, c, *out_size)), ctx.scratch.request((n, c, *out_size))
    hits = np.empty((n, c, *out_size), bool)
    interior = _interior(begins, size)
    taps = _tap_views(a["kernel_size"], a["stride"], a["dilation"], out_size)

    def step(inputs, out):
        x, y, dy = inputs
        xp, dxp, left, sent = padded(), scattered(), remaining(), given()
        xp.fill(-np.inf)
        xp[interior] = x
        dxp.fill(0.0)
        np.copyto(left, dy)
        for where in taps:                          # the first tap holding the maximum takes ∂y
            np.equal(xp[where], y, out=hits)
            np.multiply(left, hits, out=sent)
            np.copyto(left, 0.0, where=hits)
            dxp[where] += sent
        np.copyto(out, dxp[interior])
        return out
    return step


@kernel("AvgPoolNdGrad", layouts=(NCHW,))
def make_avg_pool_nd_grad(ctx):
    a = ctx.attrs
    n, c, *out_size = ctx.in_shapes[0]
    size = tuple(a["input_size"])
    dims = len(size)
    pads, begins = a["pads"], a["pads"][:dims]
    divisors = [average_pool_divisor(s, o, k, st, pads[i], pads[dims + i], a["count_include_pad"])
                for i, (s, o, k, st) in enumerate(zip(size, out_size, a["kernel_size"], a["stride"]))]
    reciprocal = (1.0 / math.prod(np.ix_(*divisors))).astype(np.float32)
    ones = (1,) * dims
    extent = _padded_extent(size, out_size, a["kernel_size"], a["stride"], ones, begins)
    scattered, shares = ctx.scratch.request((n, c, *extent)), ctx.scratch.request((n, c, *out_size))
    interior = _interior(begins, size)
    taps = _tap_views(a["kernel_size"], a["stride"], ones, out_size)

    def step(inputs, out):
        dxp, share = scattered(), shares()
        np.multiply(inputs[0], reciprocal, out=share)
        dxp.fill(0.0)
        for where in taps:
            dxp[where] += share
        np.copyto(out, dxp[interior])
        return out
    return step


@kernel("AdaptiveAvgPoolGrad")
def make_adaptive_avg_pool_grad(ctx):
    sizes, outs = ctx.out_shape[2:], ctx.in_shapes[0][2:]
    axes = [(2 + i, averaging_matrix(s, o)) for i, (s, o) in enumerate(zip(sizes, outs)) if s != o]

    def step(inputs, out):
        value = inputs[0]
        for axis, matrix in axes:                   # matrix (out, in): ∂x = ∂y ×_axis matrixᵀ
            value = np.moveaxis(np.tensordot(value, matrix, axes=([axis], [0])), -1, axis)
        np.copyto(out, value)
        return out
    return step


@kernel("AdaptiveMaxPoolGrad")
def make_adaptive_max_pool_grad(ctx):
    n, c, *sizes = ctx.in_shapes[0]
    outs = ctx.in_shapes[1][2:]
    rows = n * c
    strides = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
    per_axis = [tap_indices(s, o) if s != o else [np.arange(s)] for s, o in zip(sizes, outs)]
    flat_taps = []                                  # per tap of the longest window (row-major): flat indices
    for combo in itertools.product(*per_axis):
        grids = np.ix_(*(index * stride for index, stride in zip(combo, strides)))
        flat_taps.append(sum(grids).reshape(-1))
    windows = (rows, math.prod(outs))
    chosen, tap_values = np.empty(windows, np.intp), np.empty(windows, np.float32)
    hit, unset = np.empty(windows, bool), np.empty(windows, bool)
    row_start = (np.arange(rows) * math.prod(sizes))[:, None]

    def step(inputs, out):
        x2, y2 = inputs[0].reshape(rows, -1), inputs[1].reshape(rows, -1)
        unset.fill(True)
        for flat in flat_taps:
            np.take(x2, flat, axis=1, out=tap_values)
            np.equal(tap_values, y2, out=hit)
            np.logical_and(hit, unset, out=hit)     # windows whose maximum no earlier tap held
            np.copyto(chosen, flat, where=hit)
            np.logical_xor(unset, hit, out=unset)
        np.copyto(chosen, 0, where=unset)           # a window none of whose cells equals y sends nothing
        np.add(chosen, row_start, out=chosen)    # flat indices into out; windows overlap: a bincount adds
        sent = np.where(unset, np.float32(0), inputs[2].reshape(rows, -1))
        np.copyto(out.reshape(-1), np.bincount(chosen.reshape(-1), sent.reshape(-1), out.size))
        return out
    return step
