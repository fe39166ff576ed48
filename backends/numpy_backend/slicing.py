"""Kernels of the slicing and repeating families (cnngraph/layers/slicing.py, repeat.py): each one NumPy
indexing or broadcasting copy into the step's output buffer, no loop over elements."""
from __future__ import annotations

import numpy as np

from cnngraph.layers.repeat import Tile
from cnngraph.layers.slicing import Slice

from .elementwise import ANY
from .kernel import kernel


@kernel("Slice", layouts=ANY)
def make_slice(ctx):
    """In either layout: the slices go on the physical axes (a conv's cnhw output is cut without a transpose)."""
    shape = ctx.in_shapes[0]
    index = [slice(None)] * len(shape)
    for axis, taken in Slice.ranges(ctx.attrs, shape).items():
        stop = taken.stop if taken.stop >= 0 else None          # a negative step that runs to the front
        index[ctx.axis(axis, len(shape))] = slice(taken.start, stop, taken.step)
    index = tuple(index)

    def step(inputs, out):
        np.copyto(out, inputs[0][index])
        return out
    return step


@kernel("IndexSelect")
def make_index_select(ctx):
    axis = ctx.attrs["dim"] % len(ctx.in_shapes[0])
    index = np.asarray(ctx.attrs["index"], dtype=np.intp)

    def step(inputs, out):
        np.take(inputs[0], index, axis=axis, out=out)
        return out
    return step


@kernel("Expand")
def make_expand(ctx):
    def step(inputs, out):
        np.copyto(out, np.broadcast_to(inputs[0], out.shape))
        return out
    return step


@kernel("Tile")
def make_tile(ctx):
    """The output seen as (r0, d0, r1, d1, ...): the input, broadcast over every r axis, in one copy."""
    shape = ctx.in_shapes[0]
    repeats = Tile.repeats(ctx.attrs, len(shape))
    blocks = tuple(v for r, d in zip(repeats, shape) for v in (r, d))
    spread = tuple(v for d in shape for v in (1, d))

    def step(inputs, out):
        out.reshape(blocks)[...] = inputs[0].reshape(spread)
        return out
    return step
