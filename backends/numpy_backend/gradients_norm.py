"""The kernel of SampleNormGrad (cnngraph/layers/norm_gradients.py): LayerNorm, GroupNorm and InstanceNorm
differentiated on the rows of a 2-D view of x, as their forward kernels (sample_norm.py) standardise them;
whole-array NumPy, no loop."""
from __future__ import annotations

import numpy as np

from .kernel import kernel

F = np.float32


def norm_rows(op: str, attrs: dict, shape: tuple) -> tuple[int, tuple, tuple]:
    """(rows of the 2-D view, the affine map's shape broadcasting against x, the axes it broadcasts along)."""
    rank = len(shape)
    if op == "LayerNorm":
        lead = rank - len(attrs["normalized_shape"])
        return int(np.prod(shape[:lead])), tuple(attrs["normalized_shape"]), tuple(range(lead))
    per_channel = (shape[1],) + (1,) * (rank - 2)
    groups = attrs["num_groups"] if op == "GroupNorm" else shape[1]
    return shape[0] * groups, per_channel, (0, *range(2, rank))


@kernel("SampleNormGrad")
def make_sample_norm_grad(ctx):
    norm, wrt = ctx.attrs["norm"], ctx.attrs["wrt"]
    shape = tuple(ctx.in_shapes[0])
    rows, affine, axes = norm_rows(norm["op"], norm["attrs"], shape)
    eps = F(norm["attrs"]["eps"])
    weight = ctx.params["weight"].reshape(affine) if "weight" in ctx.params else None
    kept = tuple(d for i, d in enumerate(shape) if i not in axes)

    def step(inputs, out):
        x2, dy = inputs[0].reshape(rows, -1), inputs[1]
        centered = x2 - np.mean(x2, axis=1, keepdims=True)
        inv_std = 1.0 / np.sqrt(np.mean(centered * centered, axis=1, keepdims=True) + eps)
        normalized = centered * inv_std
        if wrt == "weight":
            np.sum(dy * normalized.reshape(shape), axis=axes, out=out.reshape(kept))
            return out
        g = (dy if weight is None else dy * weight).reshape(rows, -1)
        np.multiply(inv_std, g - np.mean(g, axis=1, keepdims=True)
                    - normalized * np.mean(g * normalized, axis=1, keepdims=True), out=out.reshape(rows, -1))
        return out
    return step
