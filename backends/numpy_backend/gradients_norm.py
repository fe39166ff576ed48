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
    """Row statistics by einsum (no temporaries), then in place on the output: with c = x − mean,
    inv = 1/√(var + eps), g = ∂y·weight:  ∂x = inv·(g − mean(g)) − c·inv³·mean(g·c);  ∂weight = Σ ∂y·c·inv."""
    norm, wrt = ctx.attrs["norm"], ctx.attrs["wrt"]
    shape = tuple(ctx.in_shapes[0])
    rows, affine, axes = norm_rows(norm["op"], norm["attrs"], shape)
    count = int(np.prod(shape)) // rows
    eps, m = F(norm["attrs"]["eps"]), F(count)
    weight = ctx.params["weight"].reshape(affine) if "weight" in ctx.params else None
    centered = ctx.scratch.request((rows, count))
    if norm["op"] == "LayerNorm":            # ∂weight: a sum over the rows of the (rows, count) view
        weight_sum = "ij,ij->j"
        view = (rows, count)
    else:                                    # per channel: (N, C, spatial)
        weight_sum = "ncs,ncs->c"
        view = (shape[0], shape[1], -1)

    def step(inputs, out):
        x2, dy = inputs[0].reshape(rows, count), inputs[1]
        c = centered()
        np.subtract(x2, (np.einsum("ij->i", x2) / m)[:, None], out=c)
        inv = 1.0 / np.sqrt(np.einsum("ij,ij->i", c, c) / m + eps)
        if wrt == "weight":
            c *= inv[:, None]
            np.einsum(weight_sum, dy.reshape(view), c.reshape(view), out=out.reshape(-1))
            return out
        g = out.reshape(rows, count)
        if weight is None:
            np.copyto(out, dy)
        else:
            np.multiply(dy, weight, out=out)
        slope = inv ** 3 * np.einsum("ij,ij->i", g, c) / m
        g -= (np.einsum("ij->i", g) / m)[:, None]
        g *= inv[:, None]
        c *= slope[:, None]
        g -= c
        return out
    return step
