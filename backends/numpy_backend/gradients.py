"""Kernels of the ops only training graphs hold: gradients and losses.

Convolution gradients are GEMMs over the whole batch in the cnhw layout, like the forward pass:
∂W = ∂y (Cout, N·Ho·Wo) @ columns(x)ᵀ, and ∂x = the columns Wᵀ @ ∂y (Cin·kh·kw, N·Ho·Wo) added back onto the
(padded) input, one strided view per kernel tap. Pooling gradients loop over the window's taps, each a strided
view of the whole tensor. Nothing loops over pixels or channels.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnngraph.shapes import average_pool_divisor

from . import winograd
from .batch_split import split
from .gemm import padded_source, tap, window_view
from .kernel import CNHW, NCHW, kernel

ANY = (CNHW, NCHW)
MIN_ROWS = 16          # a GEMM is split over the cores (training graphs) only into pieces of this many rows
# Weight gradients of maps narrower than this gather their columns with the batch innermost (see
# _conv_grad_weight_batch_inner); wider maps give runs of Wo floats long enough (and the transposes would cost).
BATCH_INNER_BELOW = 16
SPREAD_ROWS = 16       # rows of ∂W zeroed then filled at once (resnet18's 512×4608 at 1×1 maps: 0.93 → 0.77 ms)


def _extent(a, out_hw, in_hw):
    """Spatial size of the padded input the windows read: enough for every tap of every output position."""
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    top, left = a["pads"][0], a["pads"][1]
    return (max((out_hw[0] - 1) * sh + (kh - 1) * dh + 1, top + in_hw[0]),
            max((out_hw[1] - 1) * sw + (kw - 1) * dw + 1, left + in_hw[1]))


def _scatter_taps(ctx, padded_shape, in_hw, out_hw):
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
    scatter = _scatter_taps(ctx, (cin, n, *_extent(a, (ho, wo), (h, w))), (h, w), (ho, wo))

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
    padded = ctx.scratch.request((cin, *_extent(a, (ho, wo), (h, w)), n))

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
    pad = padded_source((cin, n, h, w), a["pads"], _extent(a, (ho, wo), (h, w)), 0.0, ctx.scratch)
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
    hp, wp = _extent(a, (ho, wo), (h, w))
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


# --- linear --------------------------------------------------------------------------------------------------
@kernel("LinearGradInput")
def make_linear_grad_input(ctx):
    weight = ctx.params["weight"]
    rows = int(np.prod(ctx.in_shapes[0][:-1]))

    def step(inputs, out):
        np.matmul(inputs[0].reshape(rows, -1), weight, out=out.reshape(rows, -1))
        return out
    return step


@kernel("LinearGradWeight")
def make_linear_grad_weight(ctx):
    rows = int(np.prod(ctx.in_shapes[0][:-1]))

    def step(inputs, out):
        x, dy = inputs
        np.matmul(dy.reshape(rows, -1).T, x.reshape(rows, -1), out=out)
        return out
    return step


# --- pooling -------------------------------------------------------------------------------------------------
@kernel("MaxPool2dGrad", layouts=ANY)
def make_maxpool_grad(ctx):
    """∂y goes to the first maximum of its window (taps in row-major order). Which tap that is comes from one
    comparison per tap, branch-free: score = max over taps t of (K − t)·[x_t == y], so the first match has the
    highest score; the contributions are then summed onto the padded input by one np.bincount over flat indices
    (in float64, rounded once) instead of a strided read-modify-write per tap, and the padding cropped off
    (resnet18's stem pool at 32×32, batch 32, one thread: 10.5 → 3.5 ms)."""
    a = ctx.attrs
    c, n, h, w = ctx.physical(ctx.in_shapes[0])
    out_hw = tuple(ctx.in_shapes[1][2:])
    kh, kw = a["kernel_size"]
    (sh, sw), (dh, dw) = a["stride"], a["dilation"]
    top, left = a["pads"][0], a["pads"][1]
    hp, wp = _extent(a, out_hw, (h, w))
    hp, wp = max(hp, top + h), max(wp, left + w)
    pad = padded_source((c, n, h, w), a["pads"], (hp, wp), -np.inf, ctx.scratch)
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    count = len(taps)
    score_type = np.uint8 if count < 256 else np.intp
    hits = np.empty((c, n, *out_hw), bool)
    score, scored = np.empty((c, n, *out_hw), score_type), np.empty((c, n, *out_hw), score_type)
    # score s ↔ tap K − s; score 0: no tap equals y (NaN, or y not this x's pool), no gradient
    offsets = np.array([0] + [i * dh * wp + j * dw for i, j in reversed(taps)], np.intp)
    base = (np.arange(c * n, dtype=np.intp).reshape(c, n, 1, 1) * (hp * wp)
            + (np.arange(out_hw[0], dtype=np.intp) * sh * wp).reshape(1, 1, -1, 1)
            + (np.arange(out_hw[1], dtype=np.intp) * sw).reshape(1, 1, 1, -1))
    index = np.empty(base.shape, np.intp)

    def step(inputs, out):
        xp, y, dy = pad(inputs[0]), inputs[1], inputs[2]
        score[...] = 0
        for t, (i, j) in enumerate(taps):
            np.equal(tap(xp, i, j, a["stride"], a["dilation"], out_hw), y, out=hits)
            np.multiply(hits, score_type(count - t), out=scored)
            np.maximum(score, scored, out=score)
        np.add(base, np.take(offsets, score), out=index)
        weights = dy if score.min() else dy * (score != 0)
        total = np.bincount(index.reshape(-1), weights=weights.reshape(-1), minlength=c * n * hp * wp)
        np.copyto(out, total.reshape(c, n, hp, wp)[:, :, top:top + h, left:left + w], casting="same_kind")
        return out
    return step


@kernel("AvgPool2dGrad", layouts=ANY)
def make_avgpool_grad(ctx):
    a = ctx.attrs
    c, n, ho, wo = ctx.physical(ctx.in_shapes[0])
    h, w = a["input_size"]
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    top, left, bottom, right = a["pads"]
    rows = average_pool_divisor(h, ho, kh, sh, top, bottom, a["count_include_pad"])
    cols = average_pool_divisor(w, wo, kw, sw, left, right, a["count_include_pad"])
    reciprocal = (1.0 / np.outer(rows, cols)).astype(np.float32)
    scaled = ctx.scratch.request((c, n, ho, wo))
    scatter = _scatter_taps(ctx, (c, n, *_extent(a, (ho, wo), (h, w))), (h, w), (ho, wo))

    def step(inputs, out):
        share = scaled()
        np.multiply(inputs[0], reciprocal, out=share)
        return scatter(lambda i, j, channels: share[channels], out)
    return step


@kernel("GlobalAvgPool2dGrad", layouts=ANY)
def make_global_avgpool_grad(ctx):
    h, w = ctx.attrs["input_size"]

    def step(inputs, out):
        np.multiply(inputs[0], np.float32(1.0 / (h * w)), out=out)   # broadcasts (.., 1, 1) over the map
        return out
    return step


# --- element-wise and tensor plumbing ------------------------------------------------------------------------
def activation_derivative(op: str, attrs: dict, y, dy):
    """∂L/∂x from the activation's output y and ∂L/∂y (any dtype: the float64 checks use it too)."""
    if op == "ReLU":
        return dy * (y > 0)
    if op == "ReLU6":
        return dy * ((y > 0) & (y < 6))
    if op == "Hardtanh":
        return dy * ((y > attrs["min_val"]) & (y < attrs["max_val"]))
    if op == "LeakyReLU":
        return np.where(y > 0, dy, dy * np.asarray(attrs["negative_slope"], dy.dtype))
    if op == "Sigmoid":
        return dy * y * (1 - y)
    if op == "Tanh":
        return dy * (1 - y * y)
    if op == "Softsign":
        return dy * np.square(1 - np.abs(y))
    raise ValueError(f"no derivative for {op}")


@kernel("ActivationGrad", layouts=ANY)
def make_activation_grad(ctx):
    fused = ctx.attrs["function"]

    if fused["op"] == "ReLU":                 # the common case without temporaries
        positive = np.empty(ctx.physical(ctx.out_shape), bool)

        def relu(inputs, out):
            np.greater(inputs[0], 0, out=positive)
            np.multiply(inputs[1], positive, out=out)
            return out
        return relu

    def step(inputs, out):
        np.copyto(out, activation_derivative(fused["op"], fused["attrs"], inputs[0], inputs[1]))
        return out
    return step


@kernel("SoftmaxGrad", layouts=ANY)
def make_softmax_grad(ctx):
    axis = ctx.axis(ctx.attrs["axis"], len(ctx.out_shape))

    def step(inputs, out):
        y, dy = inputs
        np.multiply(y, dy - np.sum(y * dy, axis=axis, keepdims=True), out=out)
        return out
    return step


@kernel("SumExcept", layouts=ANY)
def make_sum_except(ctx):
    rank = len(ctx.in_shapes[0])
    keep = ctx.axis(ctx.attrs["axis"], rank)
    axes = tuple(i for i in range(rank) if i != keep)

    def step(inputs, out):
        np.sum(inputs[0], axis=axes, out=out)
        return out
    return step


@kernel("SumToShape")
def make_sum_to_shape(ctx):
    shape = tuple(ctx.out_shape)
    extra = len(ctx.in_shapes[0]) - len(shape)
    ones = tuple(extra + i for i, d in enumerate(shape) if d == 1 and ctx.in_shapes[0][extra + i] != 1)

    def step(inputs, out):
        np.copyto(out, np.sum(inputs[0], axis=tuple(range(extra)) + ones, keepdims=True).reshape(shape))
        return out
    return step


@kernel("ConcatGrad", layouts=ANY)
def make_concat_grad(ctx):
    a = ctx.attrs
    rank = len(ctx.out_shape)
    index = [slice(None)] * rank
    index[ctx.axis(a["axis"], rank)] = slice(a["start"], a["start"] + a["length"])
    index = tuple(index)

    def step(inputs, out):
        np.copyto(out, inputs[0][index])
        return out
    return step


# --- batch normalisation -------------------------------------------------------------------------------------
def _channel_view(ctx):
    """(reduce axes, a reshape that broadcasts a per-channel vector) for this layout."""
    rank = len(ctx.in_shapes[0])
    channel = ctx.axis(1, rank)
    shape = [1] * rank
    shape[channel] = -1
    return tuple(i for i in range(rank) if i != channel), tuple(shape)


def batch_moments(x, axes):
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    return mean, centered, np.mean(centered * centered, axis=axes, keepdims=True)


def _channel_rows(ctx):
    """In cnhw the channels are the rows of a (C, N·H·W) matrix: per-channel sums and dot products then run
    along contiguous rows, in few passes and without full-size temporaries (the general path below makes a
    handful). None in other layouts."""
    if ctx.axis(1, len(ctx.in_shapes[0])) != 0:
        return None
    channels = ctx.physical(ctx.in_shapes[0])[0]
    count = int(np.prod(ctx.in_shapes[0])) // channels
    return channels, count, ctx.scratch.request((channels, count))


def _row_moments(x2, centered, count):
    """Per-row mean and biased variance of (C, M) ``x2``; ``centered`` receives x − mean."""
    mean = np.add.reduce(x2, axis=1) / np.float32(count)
    np.subtract(x2, mean[:, None], out=centered)
    return mean, np.einsum("ij,ij->i", centered, centered) / np.float32(count)


def _biased_inv_std(stats, count: int, eps: float):
    """(mean, 1/√(σ² + eps)) from BatchStats' (mean, unbiased variance): σ² = unbiased·(n − 1)/n, in float64."""
    biased = np.asarray(stats[1], np.float64) * ((count - 1) / count if count > 1 else 1.0)
    return stats[0], (1.0 / np.sqrt(biased + eps)).astype(np.float32)


def _count(ctx) -> int:
    shape = ctx.in_shapes[0]
    return int(np.prod([shape[i] for i in range(len(shape)) if i != 1]))


@kernel("BatchNorm2dTrain", layouts=ANY)
def make_batchnorm_train(ctx):
    """y = (x − μ)·(γ/√(σ² + eps)) + β with μ, σ² from the BatchStats input: one subtraction, one product and
    one addition over x, no reduction."""
    axes, shape = _channel_view(ctx)
    eps, count = ctx.attrs["eps"], _count(ctx)
    weight, bias = ctx.params["weight"].reshape(-1), ctx.params["bias"].reshape(shape)
    rows = _channel_rows(ctx)
    shape = (-1, 1) if rows is not None else shape

    def step(inputs, out):
        x, stats = inputs
        if rows is not None:
            x, out2 = x.reshape(rows[0], rows[1]), out.reshape(rows[0], rows[1])
        else:
            out2 = out
        mean, inv_std = _biased_inv_std(stats, count, eps)
        np.subtract(x, mean.reshape(shape), out=out2)
        out2 *= (weight * inv_std).reshape(shape)
        out2 += bias.reshape(shape)
        return out
    return step


@kernel("BatchStats", layouts=ANY)
def make_batch_stats(ctx):
    axes, _ = _channel_view(ctx)
    count = _count(ctx)
    rows = _channel_rows(ctx)

    def step(inputs, out):
        if rows is None:
            mean, _, var = batch_moments(inputs[0], axes)
        else:
            mean, var = _row_moments(inputs[0].reshape(rows[0], count), rows[2](), count)
        out[0] = mean.reshape(-1)
        out[1] = var.reshape(-1) * np.float32(count / max(count - 1, 1))
        return out
    return step


@kernel("BatchNorm2dGrad", layouts=ANY)
def make_batchnorm_grad(ctx):
    axes, shape = _channel_view(ctx)
    a, p = ctx.attrs, ctx.params
    rows = _channel_rows(ctx)
    if a["training"]:
        return _batchnorm_grad_training(ctx, rows)
    if rows is not None:
        return _batchnorm_grad_by_rows(a, p, *rows)
    weight = p["weight"].reshape(shape)

    def step(inputs, out):
        x, dy = inputs
        mean, var = p["running_mean"].reshape(shape), p["running_var"].reshape(shape)
        inv_std = 1.0 / np.sqrt(var + np.float32(a["eps"]))
        if a["wrt"] == "weight":
            np.sum(dy * ((x - mean) * inv_std), axis=axes, out=out)
        else:
            np.multiply(dy, weight * inv_std, out=out)
        return out
    return step


def _batchnorm_grad_training(ctx, rows):
    """Training mode, from the BatchStats input (μ, σ²) and, for ∂x, the ∂weight = Σ ∂y·x̂ and ∂bias = Σ ∂y
    nodes: ∂weight = inv·Σ ∂y·(x − μ) (inv = 1/√(σ² + eps)) is one subtraction and one dot product per
    channel; ∂x = w·inv·∂y − (w·inv²·∂weight/M)·(x − μ) − w·inv·∂bias/M is element-wise only."""
    axes, shape = _channel_view(ctx)
    a, count = ctx.attrs, _count(ctx)
    weight, m = ctx.params["weight"].reshape(-1), np.float32(count)
    centered_of = rows[2] if rows is not None else ctx.scratch.request(ctx.physical(ctx.in_shapes[0]))
    shape = (-1, 1) if rows is not None else shape

    def step(inputs, out):
        x, dy, stats = inputs[:3]
        mean, inv_std = _biased_inv_std(stats, count, a["eps"])
        centered = centered_of()
        if rows is not None:
            x, dy, centered = (v.reshape(rows[0], rows[1]) for v in (x, dy, centered))
        np.subtract(x, mean.reshape(shape), out=centered)
        if a["wrt"] == "weight":
            dot = (np.einsum("ij,ij->i", dy, centered) if rows is not None
                   else np.sum(dy * centered, axis=axes))
            np.multiply(inv_std, dot, out=out.reshape(-1))
            return out
        dweight, dbias = inputs[3].reshape(-1), inputs[4].reshape(-1)
        scale = weight * inv_std
        out2 = out.reshape(rows[0], rows[1]) if rows is not None else out
        centered *= (scale * inv_std * dweight / m).reshape(shape)
        np.multiply(dy, scale.reshape(shape), out=out2)
        out2 -= centered
        out2 -= (scale * dbias / m).reshape(shape)
        return out
    return step


def _batchnorm_grad_by_rows(a, p, channels, count, scratch):
    """BatchNorm2dGrad in eval mode on (C, M) rows: ∂weight = inv·Σ ∂y·(x − running_mean) and
    ∂x = ∂y·w·inv, inv = 1/√(running_var + eps)."""
    weight = p["weight"].reshape(-1)

    def step(inputs, out):
        x2, dy2 = inputs[0].reshape(channels, count), inputs[1].reshape(channels, count)
        inv_std = 1.0 / np.sqrt(p["running_var"].reshape(-1) + np.float32(a["eps"]))
        if a["wrt"] == "weight":
            centered = scratch()
            np.subtract(x2, p["running_mean"].reshape(-1, 1), out=centered)
            np.multiply(inv_std, np.einsum("ij,ij->i", dy2, centered), out=out.reshape(-1))
            return out
        np.multiply(dy2, (weight * inv_std)[:, None], out=out.reshape(channels, count))
        return out
    return step


# --- losses --------------------------------------------------------------------------------------------------
def log_softmax(z):
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


@kernel("CrossEntropyLoss")
def make_cross_entropy(ctx):
    def step(inputs, out):
        z, target = inputs
        out[...] = -np.mean(log_softmax(z)[np.arange(len(z)), target.astype(np.int64)])
        return out
    return step


@kernel("CrossEntropyLossGrad")
def make_cross_entropy_grad(ctx):
    def step(inputs, out):
        z, target = inputs
        np.exp(log_softmax(z), out=out)
        out[np.arange(len(z)), target.astype(np.int64)] -= 1.0
        out /= np.float32(len(z))
        return out
    return step


@kernel("MSELoss")
def make_mse(ctx):
    def step(inputs, out):
        out[...] = np.mean(np.square(inputs[0] - inputs[1]))
        return out
    return step


@kernel("MSELossGrad")
def make_mse_grad(ctx):
    def step(inputs, out):
        np.subtract(inputs[0], inputs[1], out=out)
        out *= np.float32(2.0 / out.size)
        return out
    return step
