"""LayerNorm, GroupNorm and InstanceNorm: each a standardisation of the rows of a 2-D view of the input (one row
per normalised group), then a broadcast affine map; no loop in Python.

Rows: LayerNorm (N·rest, prod(normalized_shape)), GroupNorm (N·G, C/G·spatial), InstanceNorm (N·C, spatial).
The mean and the biased variance are computed in float32 with NumPy's pairwise sums, the variance from the
centred values (not E[x²] − E[x]², which cancels catastrophically for large means).
"""
from __future__ import annotations

import numpy as np

from .kernel import kernel


def standardize_rows(rows: np.ndarray, eps: float, out: np.ndarray) -> None:
    """out = (rows − mean) / √(var + eps), statistics along axis 1 of the 2-D ``rows``."""
    np.subtract(rows, rows.mean(axis=1, keepdims=True), out=out)
    variance = np.einsum("ij,ij->i", out, out)[:, None]
    variance /= rows.shape[1]
    variance += np.float32(eps)
    np.sqrt(variance, out=variance)
    out /= variance


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


def _channel_shape(ctx):
    return (-1,) + (1,) * (len(ctx.out_shape) - 2)


kernel("LayerNorm")(_norm_kernel(
    lambda ctx: int(np.prod(ctx.out_shape[:len(ctx.out_shape) - len(ctx.attrs["normalized_shape"])])),
    lambda ctx: ctx.attrs["normalized_shape"]))
kernel("GroupNorm")(_norm_kernel(lambda ctx: ctx.out_shape[0] * ctx.attrs["num_groups"], _channel_shape))
for _op in ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"):
    kernel(_op)(_norm_kernel(lambda ctx: ctx.out_shape[0] * ctx.out_shape[1], _channel_shape))
