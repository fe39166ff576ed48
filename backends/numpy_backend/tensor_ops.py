"""Kernels of the generic tensor ops imported models contain (cnngraph/layers/tensor_ops.py).

Most work in NCHW only, where axis arguments mean what the graph says; the broadcasting ones work in either
layout (Context.broadcaster). A Constant has no step: the plan binds its value to a slot nothing writes.
"""
from __future__ import annotations

import numpy as np

from .elementwise import ANY, unary
from .kernel import kernel


@kernel("Constant", constant=True)
def make_constant(ctx):
    return ctx.params["value"]


def _binary(op: str, ufunc):
    @kernel(op, layouts=ANY, inplace=True)
    def make(ctx):
        broadcast = ctx.broadcaster()

        def step(inputs, out):
            a, b = broadcast(inputs)
            ufunc(a, b, out=out)          # NumPy copies an input that overlaps out in another order
            return out
        return step
    return make


_binary("Mul", np.multiply)
_binary("Sub", np.subtract)
_binary("Div", np.divide)
unary("Hardtanh", lambda x, out, attrs: np.clip(x, np.float32(attrs["min_val"]), np.float32(attrs["max_val"]), out=out))


@kernel("Transpose")
def make_transpose(ctx):
    perm = ctx.attrs["perm"]

    def step(inputs, out):
        np.copyto(out, inputs[0].transpose(perm))
        return out
    return step


@kernel("Reshape", view=True)
def make_reshape(ctx):
    shape = ctx.out_shape
    return lambda inputs, out: inputs[0].reshape(shape)


@kernel("Pad")
def make_pad(ctx):
    a, in_shape = ctx.attrs, ctx.in_shapes[0]
    rank = len(in_shape)
    begin, end = a["pads"][:rank], a["pads"][rank:]
    # negative pads crop: take that part of the input first, then pad with what is left
    crop = tuple(slice(max(0, -b), size - max(0, -e)) for b, e, size in zip(begin, end, in_shape))
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    inner = tuple(slice(lo, lo + (size - max(0, -b) - max(0, -e)))
                  for (lo, _), b, e, size in zip(widths, begin, end, in_shape))
    fill = np.float32(a["value"])

    def step(inputs, out):
        x = inputs[0][crop]
        if a["mode"] == "constant":
            out.fill(fill)
            out[inner] = x
        else:
            np.copyto(out, np.pad(x, widths, mode=a["mode"]))
        return out
    return step


@kernel("MatMul")
def make_matmul(ctx):
    def step(inputs, out):
        np.matmul(inputs[0], inputs[1], out=out)
        return out
    return step


@kernel("GlobalMaxPool2d", layouts=ANY)
def make_global_max_pool(ctx):
    def step(inputs, out):
        np.max(inputs[0], axis=(2, 3), keepdims=True, out=out)
        return out
    return step


@kernel("LocalResponseNorm")
def make_lrn(ctx):
    a = ctx.attrs
    size, channels = a["size"], ctx.in_shapes[0][1]
    before, after = size // 2, (size - 1) // 2
    scale, k, beta = np.float32(a["alpha"] / size), np.float32(a["k"]), np.float32(a["beta"])

    def step(inputs, out):
        x = inputs[0]
        # window sums of x² along the channels from a running sum with a zero row in front
        squares = np.square(x, dtype=np.float64)
        running = np.zeros((squares.shape[0], channels + 1, *squares.shape[2:]))
        np.cumsum(squares, axis=1, out=running[:, 1:])
        top = np.minimum(np.arange(channels) + after + 1, channels)
        bottom = np.maximum(np.arange(channels) - before, 0)
        sums = (running[:, top] - running[:, bottom]).astype(np.float32)
        sums *= scale
        sums += k
        np.power(sums, beta, out=sums)
        np.divide(x, sums, out=out)
        return out
    return step
