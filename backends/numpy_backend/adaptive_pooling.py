"""Adaptive pooling. Windows that tile the input are a plain pool (a strided pass per tap); other sizes go axis
by axis: an average is a product with the (out, in) matrix of 1/length over each window, a maximum the
element-wise maximum of the taps of the longest window gathered at clamped positions
(cnngraph.layers.adaptive_pooling.tap_indices). Loops run over axes and taps only."""
from __future__ import annotations

import numpy as np

from cnngraph.layers.adaptive_pooling import adaptive_windows, tap_indices

from .kernel import kernel
from .pooling import pool_axis


def averaging_matrix(size: int, out: int) -> np.ndarray:
    start, end = adaptive_windows(size, out)
    cells = np.arange(size)
    inside = (cells >= start[:, None]) & (cells < end[:, None])
    return (inside / (end - start)[:, None]).astype(np.float32)


def _plan_axes(ctx):
    """(axis, in size, out size) of each spatial axis that changes size."""
    sizes, outs = ctx.in_shapes[0][2:], ctx.out_shape[2:]
    return [(2 + i, s, o) for i, (s, o) in enumerate(zip(sizes, outs)) if s != o]


def uniform_windows(ctx, combine):
    """When every output size divides its input size the windows tile the input: a plain pool with kernel =
    stride = in/out, run as the pooling kernels do, one strided pass per tap (pooling.pool_axis); None otherwise.
    Sums are left unscaled."""
    sizes, outs = ctx.in_shapes[0][2:], ctx.out_shape[2:]
    if any(s % o for s, o in zip(sizes, outs)):
        return None
    axes = [(2 + i, s // o) for i, (s, o) in enumerate(zip(sizes, outs)) if s != o]
    shape, scratch = list(ctx.in_shapes[0]), []
    for axis, k in axes[:-1]:
        shape[axis] //= k
        scratch.append(ctx.scratch.request(tuple(shape)))

    def step(inputs, out):
        source = inputs[0]
        if not axes:
            np.copyto(out, source)
        for index, (axis, k) in enumerate(axes):
            target = scratch[index]() if index < len(axes) - 1 else out
            pool_axis(source, target, axis, k, k, 1, 0, 0.0, combine)
            source = target
        return out
    return step


def make_adaptive_avg(ctx):
    uniform = uniform_windows(ctx, np.add)
    if uniform is not None:
        scale = np.float32(np.prod(ctx.out_shape[2:]) / np.prod(ctx.in_shapes[0][2:]))

        def mean(inputs, out):
            uniform(inputs, out)
            out *= scale
            return out
        return mean
    axes = [(axis, averaging_matrix(size, out)) for axis, size, out in _plan_axes(ctx)]

    def step(inputs, out):
        value = inputs[0]
        for axis, matrix in axes:
            value = np.moveaxis(np.tensordot(value, matrix, axes=([axis], [1])), -1, axis)
        np.copyto(out, value)
        return out
    return step


def make_adaptive_max(ctx):
    uniform = uniform_windows(ctx, np.maximum)
    if uniform is not None:
        return uniform
    axes = [(axis, tap_indices(size, out)) for axis, size, out in _plan_axes(ctx)]

    def step(inputs, out):
        value = inputs[0]
        for axis, taps in axes:
            pooled = np.take(value, taps[0], axis=axis)
            for index in taps[1:]:
                np.maximum(pooled, np.take(value, index, axis=axis), out=pooled)
            value = pooled
        np.copyto(out, value)
        return out
    return step


for _dims in (1, 2, 3):
    kernel(f"AdaptiveAvgPool{_dims}d")(make_adaptive_avg)
    kernel(f"AdaptiveMaxPool{_dims}d")(make_adaptive_max)
