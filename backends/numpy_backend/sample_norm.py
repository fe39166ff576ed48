"""LayerNorm, GroupNorm and InstanceNorm: each a standardisation of the rows of a 2-D view of the input (one row
per normalised group), then a broadcast affine map; no loop in Python.

Rows: LayerNorm (N·rest, prod(normalized_shape)), GroupNorm (N·G, C/G·spatial), InstanceNorm (N·C, spatial).
The mean and the biased variance are computed in float32 with NumPy's pairwise sums, the variance from the
centred values (not E[x²] − E[x]², which cancels catastrophically for large means).
"""
from __future__ import annotations

import numpy as np

from .kernel import kernel

ROWS_BLOCK = 1 << 18     # elements per block of rows (1 MB): fewer, larger blocks than blockwise.py's, as
                         # einsum and matmul cost a few µs a call


def standardize_rows(rows: np.ndarray, eps: float, out: np.ndarray, scale=None, shift=None, weight=None,
                     bias=None) -> None:
    """out = (rows − mean) / √(var + eps) [· scale + shift] [· weight + bias], statistics along axis 1 of the
    2-D ``rows``; ``scale`` and ``shift`` (rows, 1) are per row (InstanceNorm's per-channel affine, folded into
    the reciprocal standard deviation: one pass fewer), ``weight`` and ``bias`` (row length,) per column
    (LayerNorm's). A few rows at a time (about ROWS_BLOCK elements), so that the passes after the first read of a
    block find it in cache; the row sums are a matrix-vector product with ones (BLAS, one read)."""
    count = rows.shape[1]
    ones = np.ones(count, rows.dtype)
    step = max(1, ROWS_BLOCK // max(count, 1))
    for start in range(0, rows.shape[0], step):
        x, o = rows[start:start + step], out[start:start + step]
        mean = np.matmul(x, ones)
        mean /= count
        np.subtract(x, mean[:, None], out=o)
        inverse = np.einsum("ij,ij->i", o, o)
        inverse /= count
        inverse += np.float32(eps)
        np.sqrt(inverse, out=inverse)
        np.reciprocal(inverse, out=inverse)
        if scale is not None:
            inverse *= scale[start:start + step, 0]
        o *= inverse[:, None]
        if shift is not None:
            o += shift[start:start + step]
        if weight is not None:
            o *= weight
        if bias is not None:
            o += bias


def _norm_kernel(group_rows, affine_shape):
    """A kernel factory from ``group_rows(ctx) -> rows`` (the row count of the 2-D view) and
    ``affine_shape(ctx) -> shape`` (how weight and bias broadcast against the output)."""
    def make(ctx):
        eps, rows = ctx.attrs["eps"], group_rows(ctx)
        shape = affine_shape(ctx)
        weight, bias = (ctx.params[k].reshape(shape) if k in ctx.params else None for k in ("weight", "bias"))

        def step(inputs, out):
            standardize_rows(inputs[0].reshape(rows, -1), eps, out.reshape(rows, -1))
            if weight is not None:
                out *= weight
            if bias is not None:
                out += bias
            return out
        return step
    return make


@kernel("InstanceNorm1d")
@kernel("InstanceNorm2d")
@kernel("InstanceNorm3d")
def make_instance_norm(ctx):
    """One row per (sample, channel): the affine is per row, folded into the standardisation."""
    n, c = ctx.out_shape[:2]
    eps = ctx.attrs["eps"]
    scale, shift = (np.tile(ctx.params[k], n).reshape(n * c, 1) if k in ctx.params else None
                    for k in ("weight", "bias"))

    def step(inputs, out):
        standardize_rows(inputs[0].reshape(n * c, -1), eps, out.reshape(n * c, -1), scale, shift)
        return out
    return step


def _channel_shape(ctx):
    return (-1,) + (1,) * (len(ctx.out_shape) - 2)


@kernel("LayerNorm")
def make_layer_norm(ctx):
    """One row per leading index; the affine is per column, applied to each block of rows while in cache."""
    width = int(np.prod(ctx.attrs["normalized_shape"]))
    rows, eps = int(np.prod(ctx.out_shape)) // max(width, 1), ctx.attrs["eps"]
    weight, bias = (ctx.params[k].reshape(width) if k in ctx.params else None for k in ("weight", "bias"))

    def step(inputs, out):
        standardize_rows(inputs[0].reshape(rows, width), eps, out.reshape(rows, width), weight=weight, bias=bias)
        return out
    return step


kernel("GroupNorm")(_norm_kernel(lambda ctx: ctx.out_shape[0] * ctx.attrs["num_groups"], _channel_shape))
