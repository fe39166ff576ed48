"""The Upsample kernel (cnngraph/layers/resample.py): per spatial axis, the input coordinate of every output
index is computed once, when the plan is built, in float32 as onnxruntime does; a run is then one gather per
axis (nearest) or two gathers and a weighted sum per axis (linear, separable), no loop over pixels."""
from __future__ import annotations

import numpy as np

from cnngraph.layers.resample import CUBIC_COEFF_A, Upsample

from .elementwise import ANY
from .kernel import kernel

F = np.float32


def source_coordinates(transform: str, length_in: int, length_out: int, scale: float) -> np.ndarray:
    """The input coordinate of each output index along one axis (ONNX Resize's coordinate_transformation_mode)."""
    x = np.arange(length_out, dtype=F)
    s = F(scale)
    if transform in ("half_pixel", "pytorch_half_pixel"):
        coords = (x + F(0.5)) / s - F(0.5)
        if transform == "pytorch_half_pixel" and length_out == 1:
            coords[:] = 0
        return coords
    if transform == "align_corners":
        if length_out == 1:
            return np.zeros(1, F)
        return x * F(length_in - 1) / F(length_out - 1)
    if transform == "asymmetric":
        return x / s
    if transform == "tf_half_pixel_for_nn":
        return (x + F(0.5)) / s
    if transform == "half_pixel_symmetric":
        adjustment = F(length_out) / (s * F(length_in))
        offset = F(length_in) / F(2) * (F(1) - adjustment)
        return offset + (x + F(0.5)) / s - F(0.5)
    raise ValueError(f"unknown coordinate_transformation_mode {transform!r}")


def nearest_indices(coords: np.ndarray, nearest_mode: str, length_in: int) -> np.ndarray:
    floor = np.floor(coords)
    if nearest_mode == "floor":
        index = floor
    elif nearest_mode == "ceil":
        index = np.ceil(coords)
    else:
        tie = coords - floor == F(0.5)
        index = np.where(tie, floor if nearest_mode == "round_prefer_floor" else floor + 1, np.rint(coords))
    return np.clip(index, 0, length_in - 1).astype(np.intp)


def cubic_taps(coords: np.ndarray, length_in: int, a: float):
    """Four (index, weight) pairs per coordinate: Keys' cubic kernel at the cells floor(c) - 1 .. floor(c) + 2,
    indices clamped to the axis (a cell past the edge reads the edge)."""
    base = np.floor(coords)
    t = (coords - base).astype(F)
    a = F(a)

    def kernel(d):                                          # d = |distance| in [0, 2]
        return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    distances = (F(1) + t, t, F(1) - t, F(2) - t)
    indices = [np.clip(base.astype(np.intp) + k, 0, length_in - 1) for k in (-1, 0, 1, 2)]
    return indices, [kernel(d).astype(F) for d in distances]


def linear_taps(coords: np.ndarray, length_in: int):
    """(low index, high index, low weight, high weight) of linear interpolation at the clamped coordinates."""
    coords = np.clip(coords, F(0), F(length_in - 1))
    low = np.minimum(coords.astype(np.intp), length_in - 1)
    high = np.minimum(low + 1, length_in - 1)
    weight = (coords - low).astype(F)
    return low, high, F(1) - weight, weight


def _repeats(index: np.ndarray, length_in: int) -> int | None:
    """r when a nearest index map repeats every input cell r times in order (PyTorch's integer scale factors)."""
    r, rest = divmod(len(index), length_in)
    return r if not rest and np.array_equal(index, np.arange(len(index)) // r) else None


def repeat_copy(physical, repeats):
    """The step of a nearest resize by whole factors: ``out`` seen as (N, C, d1, r1, d2, r2, …). The last
    axis first: x goes to repeat index 0 of the outer axes, its own r copies interleaved; for r = 2 each
    float32 is doubled into one 64-bit word (x·(2³² + 1) on the bits), written to every repeat index of the
    next axis in the same pass (x broadcast along it). Then outward, for each other axis with r > 1, the
    filled slab at repeat index 0 (contiguous: everything inside that axis) is copied to indices 1..r−1 as
    one item of a void dtype, so that a copy moves whole slabs, not rows of W."""
    lead, spatial = tuple(physical[:2]), tuple(physical[2:])
    rank, last = len(spatial), repeats[-1]
    blocks = (*lead, *(v for d, r in zip(spatial, repeats) for v in (d, r)))
    doubled = last == 2                            # one multiply on the bits fills the last axis's copies …
    spread = doubled and rank > 1                  # … and those of the axis before it
    first = rank - 2 if spread else rank - 1       # axes from here on are written in full by the first pass
    index = (slice(None),) * 2 + tuple(v for axis in range(rank) for v in (slice(None), 0 if axis < first else slice(None)))
    source_shape = (*lead, *(v for axis, d in enumerate(spatial) for v in ((d,) if axis < first else (d, 1))))
    if doubled:
        source_shape = source_shape[:-1]           # the last axis's pair is one 64-bit word

    slabs = []                                     # per outer axis with r > 1, from the inside out
    for axis in reversed(range(first)):
        if repeats[axis] == 1:
            continue
        inner = int(np.prod([d * r for d, r in zip(spatial[axis + 1:], repeats[axis + 1:])]))
        if all(r == 1 for r in repeats[:axis]):    # one flat run of (slab, r): NumPy copies 1-D far faster
            shape, at = (-1, repeats[axis], inner), ()
        else:
            shape = (*lead, *(v for d, r in zip(spatial[:axis], repeats[:axis]) for v in (d, r)), spatial[axis],
                     repeats[axis], inner)
            at = (slice(None),) * 2 + tuple(v for _ in range(axis) for v in (slice(None), 0))
        slabs.append((shape, at, repeats[axis], np.dtype((np.void, inner * 4))))

    def repeat(inputs, out):
        x = inputs[0].reshape(source_shape)
        target = out.reshape(blocks)[index]
        if doubled:
            words = target.view(np.uint64)[..., 0]
            np.multiply(x.view(np.uint32), np.uint64(0x100000001), out=words, casting="unsafe")
        else:
            np.copyto(target, x)
        for shape, at, r, void in slabs:
            units = out.reshape(shape)[at].view(void)[..., 0]             # (…, d_axis, r_axis) slabs
            for k in range(1, r):
                np.copyto(units[..., k], units[..., 0])
        return out
    return repeat


@kernel("Upsample", layouts=ANY)
def make_upsample(ctx):
    """Touches the spatial axes only, which are axes 2.. in both layouts. The last axis is resized first, while
    the others are still small (its gather is per element; the others' gather whole rows). A nearest resize by
    whole factors is one broadcasting copy into the output seen as (N, C, H, r, W, r, ...)."""
    a, shape = ctx.attrs, ctx.in_shapes[0]
    physical = ctx.physical(shape)
    rank = len(shape)
    sizes, scales = Upsample.spatial(a, shape)
    axes = []
    repeats = []
    for offset, (length_in, length_out, scale) in enumerate(zip(shape[2:], sizes, scales)):
        if length_out == length_in and F(scale) == 1:
            repeats.append(1)
            continue                     # scale 1 leaves an axis alone (onnxruntime, ONNX's reference)
        coords = source_coordinates(a["coordinate_transformation_mode"], length_in, length_out, scale)
        along = [1] * rank
        along[2 + offset] = length_out
        if a["mode"] == "nearest":
            index = nearest_indices(coords, a["nearest_mode"], length_in)
            repeats.append(_repeats(index, length_in))
            axes.append((2 + offset, index, None))
        else:
            repeats.append(None)
            if a["mode"] == "bicubic":
                indices, weights = cubic_taps(coords, length_in, CUBIC_COEFF_A)
            else:
                low, high, w_low, w_high = linear_taps(coords, length_in)
                indices, weights = (low, high), (w_low, w_high)
            axes.append((2 + offset, tuple(indices), tuple(w.reshape(along) for w in weights)))
    axes.reverse()

    if None not in repeats:
        return repeat_copy(physical, repeats)

    def step(inputs, out):
        x = inputs[0]
        for index, (axis, taps, weights) in enumerate(axes):
            last = index == len(axes) - 1
            if weights is None:
                x = np.take(x, taps, axis=axis, out=out if last else None)
                continue
            total = np.take(x, taps[0], axis=axis)
            total *= weights[0]
            for index_k, weight_k in zip(taps[1:-1], weights[1:-1]):
                total += np.take(x, index_k, axis=axis) * weight_k
            tap = np.take(x, taps[-1], axis=axis)
            tap *= weights[-1]
            x = np.add(total, tap, out=out if last else None)
        return out
    return step
