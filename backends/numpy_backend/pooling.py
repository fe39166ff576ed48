"""Pooling as short loops over kernel taps, each tap a strided view of the whole tensor (no per-pixel Python).

Taps that fall in the padding (or in the extra right/bottom margin ceil_mode needs) are skipped, which is
what −inf padding does for max pooling and zero padding for average pooling; a max-pool window that lies
entirely in the padding (possible with dilation) gives the lowest float32, as onnxruntime does; the average's divisor is a
per-pixel map computed once, with PyTorch's rule: the window clipped to the padded input when
count_include_pad, to the real input otherwise.
"""
from __future__ import annotations

import functools
from functools import partial

import numpy as np

from cnngraph.shapes import average_pool_divisor

from . import batch_split
from .kernel import CNHW, kernel


def tap_range(out: int, size: int, offset: int, stride: int) -> tuple[int, int]:
    """Output positions [lo, hi) whose tap at input position o·stride + offset falls inside [0, size)."""
    lo = max(0, -(offset // stride))
    hi = min(out, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


BLOCK_BYTES = 1 << 20       # input per block of leading channels: the block and its row pass stay in L2
MACS_PER_INPUT = 100        # a 3×3/2 max pool took as long per input pixel as ~100 multiply-adds of a big GEMM
# Where resnet18's 3×3/2 max pool at batch 1 (64×112×112) spends its ~0.8-1.0 ms on one core (onnxruntime: 0.28):
# NumPy's ufuncs on views that do not flatten to 1-D (row-strided taps) run at 0.5-0.65 ns per element against
# 0.18 for contiguous arrays, with ~3-4 µs of set-up per call; per block of 16 channels the row pass took ~90-110 µs
# and the column pass ~50. Tried and slower: full-size contiguous passes then decimation, copying the row phases
# first and combining them as flat contiguous arrays (−15-25% on the row pass alone, nothing measurable in the
# whole kernel: 0.81 against 0.74 ms), blocks of 128 KB-8 MB (1 MB was best: 0.96 ms with the input from L3).


def axis_passes(out: int, size: int, kernel: int, stride: int, dilation: int, pad_begin: int, axis: int,
                ndim: int, flat: bool = False) -> tuple[list, list]:
    """What pool_axis does along ``axis``, as indices computed once: (target ranges to fill, passes), each
    pass (target index, source index of a tap, source index of the next tap or None for a copy, or "into"
    to combine the tap into the target). The tap with the widest range goes first; the next one is combined
    with it in the same pass when their ranges agree (a copy saved; the same operations in the same order).
    ``flat`` (the last axis of contiguous arrays, size == out·stride): the later taps are combined as one
    strided run over the flattened arrays, ((lo, hi), (offset, stride), "flat"), instead of one short run
    per row; the few outputs outside the tap's range [lo, hi) are kept aside and put back (run_passes)."""
    def along(start, stop, step=1):
        index = [slice(None)] * ndim
        index[axis] = slice(start, stop, step)
        return tuple(index)

    def tap(t, lo, hi):
        start = lo * stride + t * dilation - pad_begin
        return along(start, start + (hi - lo - 1) * stride + 1, stride)

    ranges = [tap_range(out, size, t * dilation - pad_begin, stride) for t in range(kernel)]
    first = max(range(kernel), key=lambda t: ranges[t][1] - ranges[t][0])
    lo, hi = ranges[first]
    fills = [along(a, b) for a, b in ((0, lo), (hi, out)) if b > a]
    if hi <= lo:
        return [along(0, out)], []
    rest = [t for t in range(kernel) if t != first and ranges[t][1] > ranges[t][0]]
    if rest and ranges[rest[0]] == (lo, hi):
        passes = [(along(lo, hi), tap(first, lo, hi), tap(rest.pop(0), lo, hi))]
    else:
        passes = [(along(lo, hi), tap(first, lo, hi), None)]
    if flat and size == out * stride:
        passes += [(ranges[t], (t * dilation - pad_begin, stride), "flat") for t in rest]
    else:
        passes += [(along(*ranges[t]), tap(t, *ranges[t]), "into") for t in rest]
    return fills, passes


def run_passes(fills, passes, source, target, fill: float, combine) -> None:
    for index in fills:
        target[index] = fill
    for index, a, b in passes:
        if b is None:
            np.copyto(target[index], source[a])
        elif b == "into":
            region = target[index]
            combine(region, source[a], out=region)
        elif b == "flat":                       # output k of the flattened target reads source k·stride + offset
            (lo, hi), (offset, stride), width = index, a, target.shape[-1]
            kept = [(edge, target[..., edge].copy()) for edge in (slice(0, lo), slice(hi, width)) if edge.stop > edge.start]
            flat_target, flat_source = np.reshape(target, -1, copy=False), np.reshape(source, -1, copy=False)
            stop = flat_target.size - (width - hi)
            region = flat_target[lo:stop]
            combine(region, flat_source[lo * stride + offset:(stop - 1) * stride + offset + 1:stride], out=region)
            for edge, values in kept:
                target[..., edge] = values
        else:
            combine(source[a], source[b], out=target[index])


def pool_axis(source, target, axis: int, kernel: int, stride: int, dilation: int, pad_begin: int,
              fill: float, combine) -> None:
    """target[..., o, ...] = combine over taps t of source[..., o·stride + t·dilation − pad_begin, ...],
    taps outside the source counting as ``fill``: padding without a padded copy."""
    fills, passes = axis_passes(target.shape[axis], source.shape[axis], kernel, stride, dilation, pad_begin, axis,
                                source.ndim)
    run_passes(fills, passes, source, target, fill, combine)


def separable_pool(ctx, fill: float, combine):
    """Reduce each window with ``combine`` (np.maximum or np.add) in two passes: over the row taps into a
    (C, N, Ho, W) scratch (whole contiguous rows: fast, vectorised loops), then over the column taps of that
    smaller array into the output. A k×k window costs 2k passes instead of k², and taps are clipped to the
    input instead of reading a padded copy. Both passes run block by block of channels, so that the block's
    input is read from memory once and its row pass is still in cache for the column pass."""
    a = ctx.attrs
    c, n, h, w = ctx.physical(ctx.in_shapes[0])
    ho, wo = ctx.out_shape[2:]
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    top, left = a["pads"][0], a["pads"][1]
    rows_pass = axis_passes(ho, h, kh, sh, dh, top, 2, 4)
    cols_pass = axis_passes(wo, w, kw, sw, dw, left, 3, 4, flat=True)
    block = max(1, min(c, BLOCK_BYTES // (n * h * w * 4)))
    work = c * n * h * w * MACS_PER_INPUT
    # inside batch_split.inference_threads, the blocks are shared out over the cores, each with its own scratch
    workers = batch_split.WORKERS if work >= 2 * batch_split.MIN_PIECE_MACS and c > 1 else 1
    count = -(-c // block)
    block = -(-c // (-(-count // workers) * workers))       # blocks of even sizes, as many for every core
    blocks = [(c0, min(c, c0 + block)) for c0 in range(0, c, block)]
    rows = [ctx.scratch.request((block, n, ho, w)) for _ in range(workers)]

    def run_blocks(source, out, todo, scratch):
        row_pooled = scratch()
        for c0, c1 in todo:
            run_passes(*rows_pass, source[c0:c1], row_pooled[:c1 - c0], fill, combine)
            run_passes(*cols_pass, row_pooled[:c1 - c0], out[c0:c1], fill, combine)

    def step(inputs, out):
        parts = batch_split.kernel_parts(len(blocks), work) if workers > 1 else [(0, len(blocks))]
        batch_split.in_parallel([partial(run_blocks, inputs[0], out, blocks[b0:b1], rows[i])
                                 for i, (b0, b1) in enumerate(parts)])
        return out
    return step


@kernel("MaxPool2d", layouts=(CNHW,))
def make_maxpool(ctx):
    return separable_pool(ctx, np.finfo(np.float32).min, np.maximum)   # onnxruntime's start value


@kernel("AvgPool2d", layouts=(CNHW,))
def make_avgpool(ctx):
    a = ctx.attrs
    _, _, h, w = ctx.physical(ctx.in_shapes[0])
    ho, wo = ctx.out_shape[2:]
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    top, left, bottom, right = a["pads"]
    dh, dw = a.get("dilation", (1, 1))
    rows = average_pool_divisor(h, ho, kh, sh, top, bottom, a["count_include_pad"], dh)
    cols = average_pool_divisor(w, wo, kw, sw, left, right, a["count_include_pad"], dw)
    reciprocal = (1.0 / np.outer(rows, cols)).astype(np.float32)
    window_sum = separable_pool(ctx, 0.0, np.add)

    def step(inputs, out):
        window_sum(inputs, out)
        np.multiply(out, reciprocal, out=out)
        return out
    return step


@kernel("GlobalAvgPool2d", layouts=(CNHW,))
def make_global_avgpool(ctx):
    """The mean of each (channel, sample) row as one matrix-vector product with a vector of 1/(H·W): BLAS's
    gemv took a fifth of np.mean's time over a short last axis (512×49 at batch 1: 5.5 µs against 27)."""
    c, n, h, w = ctx.physical(ctx.in_shapes[0])
    weights = np.full(h * w, 1.0 / (h * w), np.float32)

    def step(inputs, out):
        np.matmul(inputs[0].reshape(c * n, h * w), weights, out=out.reshape(c * n))
        return out
    return step


# --- 1-D and 3-D pooling: the same per-axis passes, one per spatial axis, in the logical layout -----------------
def axis_by_axis_pool(ctx, fill: float, combine):
    """Reduce each window axis after axis: pass i pools spatial axis i of the previous pass's result into a
    scratch array (the last pass into the output). The 2-D kernels above keep their CNHW form."""
    a = ctx.attrs
    dims = len(a["kernel_size"])
    dilation = a.get("dilation", (1,) * dims)
    shape = list(ctx.in_shapes[0])
    scratch = []
    for i in range(dims - 1):
        shape[2 + i] = ctx.out_shape[2 + i]
        scratch.append(ctx.scratch.request(tuple(shape)))

    def step(inputs, out):
        source = inputs[0]
        for i in range(dims):
            target = scratch[i]() if i < dims - 1 else out
            pool_axis(source, target, 2 + i, a["kernel_size"][i], a["stride"][i], dilation[i], a["pads"][i], fill,
                      combine)
            source = target
        return out
    return step


def _nd_maxpool(ctx):
    return axis_by_axis_pool(ctx, np.finfo(np.float32).min, np.maximum)


def _nd_avgpool(ctx):
    a = ctx.attrs
    dims = len(a["kernel_size"])
    divisors = [average_pool_divisor(ctx.in_shapes[0][2 + i], ctx.out_shape[2 + i], a["kernel_size"][i],
                                     a["stride"][i], a["pads"][i], a["pads"][dims + i], a["count_include_pad"],
                                     a.get("dilation", (1,) * dims)[i]) for i in range(dims)]
    reciprocal = (1.0 / functools.reduce(np.multiply.outer, divisors)).astype(np.float32)
    window_sum = axis_by_axis_pool(ctx, 0.0, np.add)

    def step(inputs, out):
        window_sum(inputs, out)
        np.multiply(out, reciprocal, out=out)
        return out
    return step


for _dims in (1, 3):
    kernel(f"MaxPool{_dims}d")(_nd_maxpool)
    kernel(f"AvgPool{_dims}d")(_nd_avgpool)
