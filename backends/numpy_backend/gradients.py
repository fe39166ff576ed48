"""Kernels of the ops only training graphs hold: gradients and losses (the convolutions' in gradients_conv.py,
BatchNorm's in gradients_batchnorm.py). Pooling gradients loop over the window's taps, each a strided view of
the whole tensor. Nothing loops over pixels or channels.
"""
from __future__ import annotations

import numpy as np

from cnngraph.shapes import average_pool_divisor

from .gemm import padded_source, tap
from .gradients_conv import padded_extent, scatter_taps
from .kernel import CNHW, NCHW, kernel

ANY = (CNHW, NCHW)


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
    hp, wp = padded_extent(a, out_hw, (h, w))
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
    scatter = scatter_taps(ctx, (c, n, *padded_extent(a, (ho, wo), (h, w))), (h, w), (ho, wo))

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
