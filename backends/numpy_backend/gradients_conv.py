"""Kernels of the convolution gradients (training graphs only): GEMMs over the whole batch in the cnhw layout,
like the forward pass: ∂W = ∂y (Cout, N·Ho·Wo) @ columns(x)ᵀ, and ∂x = the columns Wᵀ @ ∂y (Cin·kh·kw,
N·Ho·Wo) added back onto the (padded) input, one strided view per kernel tap. Nothing loops over pixels or
channels.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import winograd
from .batch_split import split
from .gemm import padded_source, tap, window_view
from .kernel import CNHW, kernel

MIN_ROWS = 16          # a GEMM is split over the cores (training graphs) only into pieces of this many rows
# Weight gradients of maps narrower than this gather their columns with the batch innermost (see
# _conv_grad_weight_batch_inner); wider maps give runs of Wo floats long enough (and the transposes would cost).
BATCH_INNER_BELOW = 16
SPREAD_ROWS = 16       # rows of ∂W zeroed then filled at once (resnet18's 512×4608 at 1×1 maps: 0.93 → 0.77 ms)


def padded_extent(a, out_hw, in_hw):
    """Spatial size of the padded input the windows read: enough for every tap of every output position."""
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    top, left = a["pads"][0], a["pads"][1]
    return (max((out_hw[0] - 1) * sh + (kh - 1) * dh + 1, top + in_hw[0]),
            max((out_hw[1] - 1) * sw + (kw - 1) * dw + 1, left + in_hw[1]))


def scatter_taps(ctx, padded_shape, in_hw, out_hw):
    """A function adding per-tap contributions onto a zeroed padded buffer, then cropping it into ``out``."""
    a = ctx.attrs
    kh, kw = a["kernel_size"]
    stride, dilation = a["stride"], a.get("dilation", (1, 1))
    top, left = a["pads"][0], a["pads"][1]
    buffer = ctx.scratch.request(padded_shape)

    def scatter(contribution, out):
        """contribution(i, j) -> the (C, N, Ho, Wo) values tap (i, j) sends back; each core takes a range of
        channels (``contribution(i, j, channels)`` then gives that range)."""
        dxp = buffer()

        def part(lo, hi):
            channels = slice(lo, hi)
            dxp[channels] = 0.0
            for i in range(kh):
                for j in range(kw):
                    tap(dxp[channels], i, j, stride, dilation, out_hw)[...] += contribution(i, j, channels)
            np.copyto(out[channels], dxp[channels, :, top:top + in_hw[0], left:left + in_hw[1]])
        split(len(out), part)
        return out
    return scatter


# --- convolution ---------------------------------------------------------------------------------------------
@kernel("Conv2dGradInput", layouts=(CNHW,))
def make_conv_grad_input(ctx):
    a = ctx.attrs
    cout, n, ho, wo = ctx.physical(ctx.in_shapes[0])
    cin, _, h, w = ctx.physical(ctx.out_shape)
    weight = ctx.params["weight"]
    if tuple(a["stride"]) == (1, 1):
        by_winograd = _conv_grad_input_by_winograd(ctx, weight, (cin, n, h, w))
        if by_winograd is not None:
            return by_winograd
        return _conv_grad_input_as_conv(ctx, weight, (cin, n, h, w), (cout, ho, wo))
    if tuple(a["kernel_size"]) != (1, 1):
        return _conv_grad_input_strided(ctx, weight, (cin, n, h, w), (cout, ho, wo))
    kh, kw = a["kernel_size"]                 # one tap (a strided 1×1 convolution): one add in cnhw is faster
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    matrices = [weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, cin_g * kh * kw).T for g in range(groups)]
    columns = ctx.scratch.request((cin, kh, kw, n, ho, wo))
    scatter = scatter_taps(ctx, (cin, n, *padded_extent(a, (ho, wo), (h, w))), (h, w), (ho, wo))

    def step(inputs, out):
        dy = inputs[0]
        cols = columns()
        for g, matrix in enumerate(matrices):
            rows = dy[g * cout_g:(g + 1) * cout_g].reshape(cout_g, n * ho * wo)
            result = cols[g * cin_g:(g + 1) * cin_g].reshape(cin_g * kh * kw, n * ho * wo)
            split(cin_g * kh * kw, lambda lo, hi, m=matrix, r=rows, o=result: np.matmul(m[lo:hi], r, out=o[lo:hi]),
                  MIN_ROWS)
        return scatter(lambda i, j, channels: cols[channels, i, j], out)
    return step


def _conv_grad_input_strided(ctx, weight, x_shape, y_shape):
    """Stride > 1, several taps: the columns Wᵀ @ ∂y, each tap's block added back onto a zeroed padded input, one strided
    view per tap. Batch is the innermost axis of both (∂y is transposed to (Cout, Ho, Wo, N) first, the padded
    buffer is (Cin, Hp, Wp, N)): in cnhw the adds ran along rows of Wo values at a stride, a few elements per
    inner loop (resnet18's 3×3 stride-2 convolutions on 8×8 maps at batch 32, one thread: 2.2 of the 3.1 ms)."""
    a = ctx.attrs
    cin, n, h, w = x_shape
    cout, ho, wo = y_shape
    (kh, kw), (sh, sw), (dh, dw) = a["kernel_size"], a["stride"], a["dilation"]
    top, left = a["pads"][0], a["pads"][1]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    matrices = [weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, cin_g * kh * kw).T for g in range(groups)]
    transposed = ctx.scratch.request((cout, ho, wo, n))
    columns = ctx.scratch.request((cin, kh, kw, ho, wo, n))
    padded = ctx.scratch.request((cin, *padded_extent(a, (ho, wo), (h, w)), n))

    def step(inputs, out):
        dy, dyt, cols, dxp = inputs[0], transposed(), columns(), padded()
        split(cout, lambda lo, hi: np.copyto(dyt[lo:hi], dy[lo:hi].transpose(0, 2, 3, 1)))
        for g, matrix in enumerate(matrices):
            rows = dyt[g * cout_g:(g + 1) * cout_g].reshape(cout_g, ho * wo * n)
            result = cols[g * cin_g:(g + 1) * cin_g].reshape(cin_g * kh * kw, ho * wo * n)
            split(cin_g * kh * kw, lambda lo, hi, m=matrix, r=rows, o=result: np.matmul(m[lo:hi], r, out=o[lo:hi]),
                  MIN_ROWS)

        def part(lo, hi):
            dxp[lo:hi] = 0.0
            for i in range(kh):
                for j in range(kw):
                    dxp[lo:hi, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] += \
                        cols[lo:hi, i, j]
            np.copyto(out[lo:hi], dxp[lo:hi, top:top + h, left:left + w].transpose(0, 3, 1, 2))
        split(cin, part)
        return out
    return step


def _conv_grad_input_by_winograd(ctx, weight, x_shape):
    """A 3×3 stride-1 convolution's ∂x is the 3×3 stride-1 convolution of ∂y with the flipped, transposed
    kernel and the padding 2 − p (see _conv_grad_input_as_conv): the forward pass's Winograd kernel computes it
    when its size rule picks it (None otherwise)."""
    a = ctx.attrs
    cin, n, h, w = x_shape
    if (tuple(a["kernel_size"]) != (3, 3) or tuple(a["dilation"]) != (1, 1) or a["groups"] != 1
            or max(a["pads"]) > 2):
        return None
    attrs = dict(kernel_size=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1,
                 pads=tuple(2 - p for p in a["pads"]))
    tile = winograd.tile_size(attrs, weight.shape[0], cin, n, (h, w))
    if tile is None:
        return None
    flipped = np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    transposed = replace(ctx, attrs=attrs, params={"weight": flipped}, epilogue=[])
    return winograd.winograd_conv(transposed, flipped, tile, lambda region, channels: None)


def _conv_grad_input_as_conv(ctx, weight, x_shape, y_shape):
    """Stride 1: ∂x is a convolution of ∂y, zero-padded by (k − 1)·d, with the kernel flipped and its in/out
    axes swapped: ∂x[c, i, j] = Σ_{o,a,b} W[o, c, k−1−a, k−1−b] · ∂y_full[o, i + top + a·d, j + left + b·d].
    Columns gathered like the forward pass's, then one GEMM per group: no scatter-add over taps. Taps that
    link no input pixel to an output pixel (see _live_taps) are left out."""
    a = ctx.attrs
    cin, n, h, w = x_shape
    cout, ho, wo = y_shape
    (kh, kw), (dh, dw) = a["kernel_size"], a["dilation"]
    top, left = a["pads"][0], a["pads"][1]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    rows_live, cols_live = _live_taps(kh, dh, 1, top, ho, h), _live_taps(kw, dw, 1, left, wo, w)
    flipped = weight[:, :, rows_live, cols_live][:, :, ::-1, ::-1]
    begin = ((kh - 1) * dh, (kw - 1) * dw)
    first = ((kh - rows_live.stop) * dh, (kw - cols_live.stop) * dw)     # where the kept flipped taps start
    kh, kw = flipped.shape[2:]
    matrices = [np.ascontiguousarray(flipped[g * cout_g:(g + 1) * cout_g].transpose(1, 0, 2, 3))
                .reshape(cin_g, cout_g * kh * kw) for g in range(groups)]
    full = ctx.scratch.request((cout, n, max(begin[0] + ho, h + top + begin[0]), max(begin[1] + wo, w + left + begin[1])))
    columns = ctx.scratch.request((cout_g, kh, kw, n, h, w))

    def step(inputs, out):
        dy, padded, cols = inputs[0], full(), columns()

        def place(lo, hi):
            padded[lo:hi] = 0.0
            padded[lo:hi, :, begin[0]:begin[0] + ho, begin[1]:begin[1] + wo] = dy[lo:hi]
        split(cout, place)
        for g, matrix in enumerate(matrices):
            windows = window_view(padded[g * cout_g:(g + 1) * cout_g, :, top + first[0]:, left + first[1]:],
                                  (kh, kw), (1, 1), (dh, dw), (h, w))
            split(cout_g, lambda lo, hi, v=windows: np.copyto(cols[lo:hi], v[lo:hi]))
            result = out[g * cin_g:(g + 1) * cin_g].reshape(cin_g, n * h * w)
            split(cin_g, lambda lo, hi, m=matrix, o=result: np.matmul(m[lo:hi], cols.reshape(cout_g * kh * kw, n * h * w),
                                                                      out=o[lo:hi]), MIN_ROWS)
        return out
    return step


@kernel("Conv2dGradWeight", layouts=(CNHW,))
def make_conv_grad_weight(ctx):
    a = ctx.attrs
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.in_shapes[1])
    kh, kw = a["kernel_size"]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    rows_live = _live_taps(kh, a["dilation"][0], a["stride"][0], a["pads"][0], ho, h)
    cols_live = _live_taps(kw, a["dilation"][1], a["stride"][1], a["pads"][1], wo, w)
    lh, lw = rows_live.stop - rows_live.start, cols_live.stop - cols_live.start
    k = cin_g * lh * lw
    partial = _partial(ctx, cout, k, cin_g * kh * kw)
    if wo < BATCH_INNER_BELOW:
        return _conv_grad_weight_batch_inner(ctx, (cin, n, h, w), (cout, ho, wo), rows_live, cols_live, partial)
    # Columns (K, N·Ho·Wo) gather runs of Wo floats, as the forward pass's.
    pad = padded_source((cin, n, h, w), a["pads"], padded_extent(a, (ho, wo), (h, w)), 0.0, ctx.scratch)
    columns = ctx.scratch.request((cin_g, lh, lw, n, ho, wo))

    def step(inputs, out):
        xp, dy = pad(inputs[0]), inputs[1]
        cols = columns()
        result_all = out if partial is None else partial()
        first = xp[:, :, rows_live.start * a["dilation"][0]:, cols_live.start * a["dilation"][1]:]
        for g in range(groups):
            windows = window_view(first[g * cin_g:(g + 1) * cin_g], (lh, lw), a["stride"], a["dilation"], (ho, wo))
            split(cin_g, lambda lo, hi, v=windows: np.copyto(cols[lo:hi], v[lo:hi]))
            matrix = cols.reshape(k, n * ho * wo).T
            rows = dy[g * cout_g:(g + 1) * cout_g].reshape(cout_g, n * ho * wo)
            result = result_all[g * cout_g:(g + 1) * cout_g]
            split(cout_g, lambda lo, hi, r=rows, o=result, m=matrix: np.matmul(r[lo:hi], m, out=o[lo:hi]), MIN_ROWS)
        _spread_live(out, result_all, partial, (kh, kw), rows_live, cols_live)
        return out
    return step


def _partial(ctx, cout: int, k: int, full: int):
    """Scratch for the live taps' gradient when some taps are dead (None when all are live)."""
    return ctx.scratch.request((cout, k)) if k != full else None


def _spread_live(out, result_all, partial, kernel_size, rows_live, cols_live) -> None:
    """Taps that read only padding get no gradient: the live taps' block (``partial``) into a zeroed ∂W."""
    if partial is None:
        return
    cout = out.shape[0]
    lh, lw = rows_live.stop - rows_live.start, cols_live.stop - cols_live.start
    cin_g = result_all.shape[1] // (lh * lw)
    full, live = out.reshape(cout, cin_g, *kernel_size), result_all.reshape(cout, cin_g, lh, lw)
    for lo in range(0, cout, SPREAD_ROWS):    # each block zeroed and filled while in cache: one pass over ∂W
        out[lo:lo + SPREAD_ROWS] = 0.0
        full[lo:lo + SPREAD_ROWS, :, rows_live, cols_live] = live[lo:lo + SPREAD_ROWS]


def _conv_grad_weight_batch_inner(ctx, x_shape, y_shape, rows_live, cols_live, partial):
    """∂W = ∂y @ columns(x)ᵀ with the batch innermost: x is padded into (Cin, Hp, Wp, N) and ∂y transposed to
    (Cout, Ho, Wo, N), so the columns (Cin, kh, kw, Ho, Wo, N) gather runs of Wo·N floats (stride 1) or N
    (stride 2) instead of Wo (resnet18's 64-channel 8×8 layers at batch 32, one thread: the gather took 1.4 of
        a layer's 2.8 ms). It replaces the (N·Ho·Wo, K) columns maps narrower than 4 used, slower too (256 channels
    2×2: 2.0 against 2.7–2.9 ms)."""
    a = ctx.attrs
    cin, n, h, w = x_shape
    cout, ho, wo = y_shape
    (kh, kw), (sh, sw), (dh, dw) = a["kernel_size"], a["stride"], a["dilation"]
    top, left = a["pads"][0], a["pads"][1]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    lh, lw = rows_live.stop - rows_live.start, cols_live.stop - cols_live.start
    k = cin_g * lh * lw
    hp, wp = padded_extent(a, (ho, wo), (h, w))
    hp, wp = max(hp, top + h), max(wp, left + w)
    padded = ctx.scratch.request((cin, hp, wp, n))
    transposed = ctx.scratch.request((cout, ho, wo, n))
    columns = ctx.scratch.request((cin_g, lh, lw, ho, wo, n))

    def step(inputs, out):
        x, dy, xp, dyt, cols = inputs[0], inputs[1], padded(), transposed(), columns()

        def place(lo, hi):
            xp[lo:hi, :top] = 0.0
            xp[lo:hi, top + h:] = 0.0
            xp[lo:hi, top:top + h, :left] = 0.0
            xp[lo:hi, top:top + h, left + w:] = 0.0
            np.copyto(xp[lo:hi, top:top + h, left:left + w], x[lo:hi].transpose(0, 2, 3, 1))
        split(cin, place)
        split(cout, lambda lo, hi: np.copyto(dyt[lo:hi], dy[lo:hi].transpose(0, 2, 3, 1)))
        result_all = out if partial is None else partial()
        first = xp[:, rows_live.start * dh:, cols_live.start * dw:]
        s_c, s_h, s_w, s_n = first.strides
        for g in range(groups):
            windows = as_strided(first[g * cin_g:(g + 1) * cin_g], shape=(cin_g, lh, lw, ho, wo, n),
                                 strides=(s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w, s_n), writeable=False)
            split(cin_g, lambda lo, hi, v=windows: np.copyto(cols[lo:hi], v[lo:hi]))
            matrix = cols.reshape(k, ho * wo * n).T
            rows = dyt[g * cout_g:(g + 1) * cout_g].reshape(cout_g, ho * wo * n)
            result = result_all[g * cout_g:(g + 1) * cout_g]
            split(cout_g, lambda lo, hi, r=rows, o=result, m=matrix: np.matmul(r[lo:hi], m, out=o[lo:hi]), MIN_ROWS)
        _spread_live(out, result_all, partial, (kh, kw), rows_live, cols_live)
        return out
    return step


def _live_taps(k: int, dilation: int, stride: int, before: int, out_len: int, in_len: int) -> slice:
    """From the first to the last kernel tap along one axis that reads an input pixel, not only padding (taps
    outside get no gradient). On resnet18's 1×1 maps at 32×32 only the centre tap of a 3×3 kernel is."""
    first_read = np.arange(k) * dilation - before                 # the input index tap i reads at output 0
    first_inside = np.maximum(0, -(first_read // stride))    # first r with first_read + stride·r ≥ 0
    live = (first_inside < out_len) & (first_read + stride * first_inside < in_len)
    indices = np.flatnonzero(live)
    if not len(indices):
        return slice(0, k)
    return slice(int(indices[0]), int(indices[-1]) + 1)
