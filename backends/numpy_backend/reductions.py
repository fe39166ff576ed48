"""Kernels of the reductions (cnngraph/layers/reductions.py): one NumPy reduction each, written into the
output buffer seen with the reduced axes kept as 1 (so keepdims costs nothing)."""
from __future__ import annotations

import numpy as np

from cnngraph.layers.reductions import REDUCTIONS

from .kernel import kernel


def _l2(x, axis, keepdims, out):
    np.sum(np.square(x), axis=axis, keepdims=keepdims, out=out)
    np.sqrt(out, out=out)


_NUMPY = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min, "ReduceL2": _l2}


def _reduction(cls):
    reduce = _NUMPY[cls.op]

    @kernel(cls.op)
    def make(ctx):
        axes = cls.axes(ctx.attrs, len(ctx.in_shapes[0]))
        kept = tuple(1 if i in axes else d for i, d in enumerate(ctx.in_shapes[0]))

        def step(inputs, out):
            reduce(inputs[0], axis=axes, keepdims=True, out=out.reshape(kept))
            return out
        return step
    return make


for _cls in REDUCTIONS:
    _reduction(_cls)
