"""Pooling as a short loop over the kh·kw kernel taps, each tap a strided view of the whole tensor.

Padding (and the extra right/bottom margin ceil_mode needs) is a scratch buffer filled with −inf for max
pooling and 0 for average pooling; the average's divisor is a per-pixel map computed once, with PyTorch's
rule: the window clipped to the padded input when count_include_pad, to the real input otherwise.
"""
from __future__ import annotations

import numpy as np

from .gemm import padded_source, tap
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


@kernel("MaxPool2d", layouts=(CNHW,))
def make_maxpool(ctx):
    in_shape, out_hw, dilation, extent = _geometry(ctx)
    pad = padded_source(in_shape, ctx.attrs["pads"], extent, -np.inf, ctx.scratch)
    kh, kw = ctx.attrs["kernel_size"]
    stride = ctx.attrs["stride"]

    def step(inputs, out):
        xp = pad(inputs[0])
        np.copyto(out, tap(xp, 0, 0, stride, dilation, out_hw))
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    np.maximum(out, tap(xp, i, j, stride, dilation, out_hw), out=out)
        return out
    return step


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
    (c, n, h, w), out_hw, dilation, extent = _geometry(ctx)
    pad = padded_source((c, n, h, w), a["pads"], extent, 0.0, ctx.scratch)
    kh, kw = a["kernel_size"]
    top, left, bottom, right = a["pads"]
    rows = average_divisor(h, out_hw[0], kh, a["stride"][0], top, bottom, a["count_include_pad"])
    cols = average_divisor(w, out_hw[1], kw, a["stride"][1], left, right, a["count_include_pad"])
    reciprocal = (1.0 / np.outer(rows, cols)).astype(np.float32)
    stride = a["stride"]

    def step(inputs, out):
        xp = pad(inputs[0])
        np.copyto(out, tap(xp, 0, 0, stride, dilation, out_hw))
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    np.add(out, tap(xp, i, j, stride, dilation, out_hw), out=out)
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
