"""Kernels of BatchNorm in training graphs: the batch statistics (computed once per step), the normalisation
with them, and its gradient (PyTorch's conventions: biased variance to normalise, unbiased for running_var).
"""
from __future__ import annotations

import numpy as np

from .kernel import CNHW, NCHW, kernel

ANY = (CNHW, NCHW)


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
