"""Pooling as short loops over kernel taps, each tap a strided view of the whole tensor (no per-pixel Python).

Padding (and the extra right/bottom margin ceil_mode needs) is a scratch buffer filled with −inf for max
pooling and 0 for average pooling; the average's divisor is a per-pixel map computed once, with PyTorch's
rule: the window clipped to the padded input when count_include_pad, to the real input otherwise.
"""
from __future__ import annotations

import numpy as np

from .gemm import padded_source
from .kernel import CNHW, kernel


def _geometry(ctx):
    a = ctx.attrs
    c, n, h, w = ctx.physical(ctx.in_shapes[0])
    ho, wo = ctx.out_shape[2], ctx.out_shape[3]
    dilation = a.get("dilation", (1, 1))
    kh, kw = a["kernel_size"]
    extent = ((ho - 1) * a["stride"][0] + (kh - 1) * dilation[0] + 1,
              (wo - 1) * a["stride"][1] + (kw - 1) * dilation[1] + 1)
    return (c, n, h, w), (ho, wo), dilation, extent


def separable_pool(ctx, fill: float, combine):
    """Reduce each window with ``combine`` (np.maximum or np.add) in two passes: over the kw column taps into
    a (C, N, Hp, Wo) scratch, then over the kh row taps into the output. A k×k window then costs 2k strided
    passes instead of k², which matters most for the 3×3/2 pool at the start of ResNets."""
    a = ctx.attrs
    in_shape, (ho, wo), dilation, extent = _geometry(ctx)
    pad = padded_source(in_shape, a["pads"], extent, fill, ctx.scratch)
    kh, kw = a["kernel_size"]
    (sh, sw), (dh, dw) = a["stride"], dilation
    c, n, h, w = in_shape
    rows = max(extent[0], a["pads"][0] + h)
    columns = ctx.scratch.request((c, n, rows, wo))

    def step(inputs, out):
        xp = pad(inputs[0])
        partial = columns()
        np.copyto(partial, xp[:, :, :rows, 0:sw * (wo - 1) + 1:sw])
        for j in range(1, kw):
            combine(partial, xp[:, :, :rows, j * dw:j * dw + sw * (wo - 1) + 1:sw], out=partial)
        np.copyto(out, partial[:, :, 0:sh * (ho - 1) + 1:sh])
        for i in range(1, kh):
            combine(out, partial[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh], out=out)
        return out
    return step


@kernel("MaxPool2d", layouts=(CNHW,))
def make_maxpool(ctx):
    return separable_pool(ctx, -np.inf, np.maximum)


def average_divisor(size: int, out: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                    count_include_pad: bool) -> np.ndarray:
    """Per-output-position divisor along one axis, as PyTorch's avg_pool2d computes it."""
    start = np.arange(out) * stride - pad_begin
    end = np.minimum(start + kernel, size + pad_end)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


@kernel("AvgPool2d", layouts=(CNHW,))
def make_avgpool(ctx):
    a = ctx.attrs
    _, _, h, w = ctx.physical(ctx.in_shapes[0])
    ho, wo = ctx.out_shape[2:]
    (kh, kw), (sh, sw) = a["kernel_size"], a["stride"]
    top, left, bottom, right = a["pads"]
    rows = average_divisor(h, ho, kh, sh, top, bottom, a["count_include_pad"])
    cols = average_divisor(w, wo, kw, sw, left, right, a["count_include_pad"])
    reciprocal = (1.0 / np.outer(rows, cols)).astype(np.float32)
    window_sum = separable_pool(ctx, 0.0, np.add)

    def step(inputs, out):
        window_sum(inputs, out)
        np.multiply(out, reciprocal, out=out)
        return out
    return step


@kernel("GlobalAvgPool2d", layouts=(CNHW,))
def make_global_avgpool(ctx):
    c, n, h, w = ctx.physical(ctx.in_shapes[0])

    def step(inputs, out):
        np.mean(inputs[0].reshape(c, n, h * w), axis=2, out=out.reshape(c, n))
        return out
    return step
