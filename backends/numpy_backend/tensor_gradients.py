"""Kernels of the tensor ops' gradients (cnngraph/layers/tensor_gradients.py): index plans made once when the
plan is built, then whole-tensor indexing, masks and GEMMs; no loop over elements.

GatherGrad adds ∂y back along one axis. Its indices may repeat (Tile, the reflect Pad, IndexSelect with a
repeated index): a few evenly stepping runs are added as strided views (one per run), a scattered list in
rounds in which no target repeats (the k-th occurrence of each target in round k), one fancy-indexed add each.
UpsampleGrad multiplies by the transpose of each spatial axis's interpolation matrix, built from the forward
kernel's own taps (resample.py), one GEMM per axis; nearest by whole factors adds ∂y's strided views.
"""
from __future__ import annotations

import itertools

import numpy as np

from cnngraph.layers.reductions import ReduceMax
from cnngraph.layers.resample import CUBIC_COEFF_A, Upsample

from .kernel import kernel
from .resample import cubic_taps, linear_taps, nearest_indices, source_coordinates

F = np.float32


def _runs(index: np.ndarray) -> list[tuple[slice, int, int]]:
    """The index list cut into runs that step evenly: (positions of dy, first target, step). A run of step 0
    reads one input cell several times (an edge Pad); any other run reads distinct cells (a Slice, the
    interior of a Pad, a reflected border, one copy of a Tile)."""
    runs, j = [], 0
    while j < len(index):
        step = int(index[j + 1] - index[j]) if j + 1 < len(index) else 1
        k = j + 1
        while k < len(index) and index[k] - index[k - 1] == step:
            k += 1
        runs.append((slice(j, k), int(index[j]), step))
        j = k
    return runs


def _rounds(index: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions of dy, targets) per round: within a round every target appears once."""
    occurrence = np.zeros(len(index), np.intp)
    seen: dict[int, int] = {}
    for j, i in enumerate(index.tolist()):            # over the index list (one axis), not over elements
        occurrence[j] = seen.get(i, 0)
        seen[i] = occurrence[j] + 1
    rounds = []
    for k in range(int(occurrence.max(initial=-1)) + 1):
        positions = np.flatnonzero(occurrence == k)
        rounds.append((positions, index[positions]))
    return rounds


MAX_RUNS = 16      # more runs than this (a scattered IndexSelect): fancy-indexed rounds instead of slices


@kernel("GatherGrad")
def make_gather_grad(ctx):
    """A few evenly stepping runs (Slice, Pad, Tile) are added as strided views; a scattered index list goes
    in rounds of distinct targets, each one fancy-indexed add."""
    rank = len(ctx.out_shape)
    axis = ctx.attrs["axis"] % rank
    index = np.asarray(ctx.attrs["index"], np.intp)
    runs = _runs(index)
    lead = (slice(None),) * axis

    if len(runs) <= MAX_RUNS:
        def along_runs(inputs, out):
            dy = inputs[0]
            out.fill(0.0)
            for positions, first, step in runs:
                if step == 0:
                    out[lead + (slice(first, first + 1),)] += np.sum(dy[lead + (positions,)], axis=axis,
                                                                     keepdims=True)
                    continue
                last = first + step * (positions.stop - positions.start - 1)
                stop = last + step
                out[lead + (slice(first, stop if stop >= 0 else None, step),)] += dy[lead + (positions,)]
            return out
        return along_runs
    rounds = _rounds(index)

    def step(inputs, out):
        dy = inputs[0]
        out.fill(0.0)
        for positions, targets in rounds:
            out[lead + (targets,)] += dy[lead + (positions,)]
        return out
    return step


@kernel("ReduceGrad")
def make_reduce_grad(ctx):
    x_shape = ctx.in_shapes[0]
    axes = ReduceMax.axes(ctx.attrs, len(x_shape))
    kept = tuple(1 if i in axes else d for i, d in enumerate(x_shape))
    how = ctx.attrs["how"]

    def step(inputs, out):
        x, y, dy = inputs[0], inputs[1].reshape(kept), inputs[2].reshape(kept)
        if how == "l2":
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(y > 0, dy / y, F(0.0))
            np.multiply(x, scale, out=out)
            return out
        hits = np.equal(x, y)
        counts = np.maximum(np.sum(hits, axis=axes, keepdims=True, dtype=F), 1)   # no cell equal to y: 0/1
        share = dy / counts                         # ties split ∂y evenly
        np.multiply(hits, share, out=out)
        return out
    return step


def interpolation_matrix(attrs, length_in: int, length_out: int, scale: float) -> np.ndarray:
    """(length_out, length_in): the weight of each input cell in each output cell along one axis, from the
    forward kernel's own taps (an axis of scale 1 is the identity, as in the forward)."""
    matrix = np.zeros((length_out, length_in), F)
    if length_out == length_in and F(scale) == 1:
        np.fill_diagonal(matrix, 1.0)
        return matrix
    coords = source_coordinates(attrs["coordinate_transformation_mode"], length_in, length_out, scale)
    rows = np.arange(length_out)
    if attrs["mode"] == "nearest":
        matrix[rows, nearest_indices(coords, attrs["nearest_mode"], length_in)] = 1.0
        return matrix
    if attrs["mode"] == "bicubic":
        indices, weights = cubic_taps(coords, length_in, CUBIC_COEFF_A)
    else:
        low, high, w_low, w_high = linear_taps(coords, length_in)
        indices, weights = (low, high), (w_low, w_high)
    for index, weight in zip(indices, weights):           # over the 2 or 4 taps
        np.add.at(matrix, (rows, index), weight)
    return matrix


@kernel("UpsampleGrad")
def make_upsample_grad(ctx):
    """Spatial axis by axis: ∂x = ∂y ×_axis Mᵀ, the first axis while the others are still at the output size."""
    attrs = {k: v for k, v in ctx.attrs.items() if k != "input_size"}
    x_shape = (*ctx.out_shape[:2], *ctx.attrs["input_size"])
    sizes, scales = Upsample.spatial(attrs, x_shape)
    matrices = [interpolation_matrix(attrs, n, m, s) for n, m, s in zip(x_shape[2:], sizes, scales)]
    repeats = [m // n if m % n == 0 and np.array_equal(matrix, np.repeat(np.eye(n, dtype=F), m // n, axis=0))
               else None for n, m, matrix in zip(x_shape[2:], sizes, matrices)]
    if None not in repeats:                # nearest by whole factors: the r_h·r_w·… strided views of ∂y, added
        views = [(slice(None), slice(None)) + tuple(slice(o, None, r) for o, r in zip(offsets, repeats))
                 for offsets in itertools.product(*(range(r) for r in repeats))]

        def by_views(inputs, out):
            np.copyto(out, inputs[0][views[0]])
            for view in views[1:]:
                out += inputs[0][view]
            return out
        return by_views

    def step(inputs, out):
        g = inputs[0]
        for offset, matrix in enumerate(matrices):
            axis = 2 + offset
            g = np.moveaxis(np.moveaxis(g, axis, -1) @ matrix, -1, axis)
        np.copyto(out, g)
        return out
    return step
