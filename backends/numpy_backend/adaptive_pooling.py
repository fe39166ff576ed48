"""Adaptive pooling, axis by axis: an average is a product with the (out, in) matrix of 1/length over each
window; a maximum the element-wise maximum of the taps of the longest window, gathered at clamped positions
(cnngraph.layers.adaptive_pooling.tap_indices). Loops run over axes and taps only."""
from __future__ import annotations

import numpy as np

from cnngraph.layers.adaptive_pooling import adaptive_windows, tap_indices

from .kernel import kernel


def averaging_matrix(size: int, out: int) -> np.ndarray:
    start, end = adaptive_windows(size, out)
    cells = np.arange(size)
    inside = (cells >= start[:, None]) & (cells < end[:, None])
    return (inside / (end - start)[:, None]).astype(np.float32)


def _plan_axes(ctx):
    """(axis, in size, out size) of each spatial axis that changes size."""
    sizes, outs = ctx.in_shapes[0][2:], ctx.out_shape[2:]
    return [(2 + i, s, o) for i, (s, o) in enumerate(zip(sizes, outs)) if s != o]


def make_adaptive_avg(ctx):
    axes = [(axis, averaging_matrix(size, out)) for axis, size, out in _plan_axes(ctx)]

    def step(inputs, out):
        value = inputs[0]
        for axis, matrix in axes:
            value = np.moveaxis(np.tensordot(value, matrix, axes=([axis], [1])), -1, axis)
        np.copyto(out, value)
        return out
    return step


def make_adaptive_max(ctx):
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
