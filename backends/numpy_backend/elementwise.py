"""Element-wise kernels (activations, BatchNorm, Add) and the tensor plumbing (Softmax, Concat, Flatten, views).

Element-wise kernels work in either layout and may run in place on a buffer whose value dies here, so a
ReLU after a convolution costs one pass over memory and no allocation.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from cnngraph.layers import BatchNorm2d

from . import batch_split
from .blockwise import BLOCK
from .kernel import CNHW, NCHW, kernel

ANY = (CNHW, NCHW)


def unary(op: str, apply, split=False):
    """Register an element-wise kernel from ``apply(x, out, attrs)``; ``split`` (or ``split(attrs)``) true: it
    shares a big tensor out over the cores at inference (split_elementwise)."""
    def epilogue(ctx):
        return lambda region, channels: apply(region, region, ctx.attrs)

    @kernel(op, layouts=ANY, inplace=True, epilogue=epilogue)
    def make(ctx):
        attrs = ctx.attrs

        if split(attrs) if callable(split) else split:
            def step(inputs, out):
                split_elementwise(apply, inputs[0], out, attrs)
                return out
            return step

        def step(inputs, out):
            apply(inputs[0], out, attrs)
            return out
        return step
    return make


def split_elementwise(apply, x, out, attrs) -> None:
    """``apply(x, out, attrs)``, inside batch_split.inference_threads on contiguous parts of whole BLOCKs, one per
    core, when the tensor is big enough: the same calls on the same blocks (blockwise.py), so the same bits.

    Only the kernels of many compute-bound passes over whole arrays gain (Mish, Softplus, GELU tanh: 0.4–0.9× the
    time on 2 cores). Measured on the shared 2-core machine, splitting lost 0–30% on memory-bound kernels (ReLU,
    SiLU, Hardswish, Sigmoid, ELU, Exp: the two cores share the bandwidth) and on the blockwise ones (GELU, Erf:
    a dozen 10–40 µs calls per block, and each thread waits for the GIL after each), and so did splitting the
    norms' blocks of rows and Upsample's planes: those kernels run unsplit."""
    parts = [(0, x.size)]
    if x.flags.c_contiguous and out.flags.c_contiguous and x.shape == out.shape:
        parts = batch_split.element_parts(x.size, x.size, BLOCK)
    if len(parts) == 1:
        apply(x, out, attrs)
        return
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    batch_split.in_parallel([partial(apply, flat_x[lo:hi], flat_out[lo:hi], attrs) for lo, hi in parts])


def _sigmoid(x, out, attrs):
    with np.errstate(over="ignore"):         # exp(−x) overflows to inf for x ≪ 0, giving the right 0
        np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1.0
        np.reciprocal(out, out=out)


def _leaky_relu(x, out, attrs):
    # max(x, 0) + slope·min(x, 0): exact for every slope, and only one temporary
    negative = np.minimum(x, 0.0)
    negative *= np.float32(attrs["negative_slope"])
    np.maximum(x, 0.0, out=out)
    out += negative


def _softsign(x, out, attrs):
    denominator = np.abs(x)                  # one temporary: out may be x (in place, or an epilogue)
    denominator += 1.0
    np.divide(x, denominator, out=out)


RELU_BLOCK = 1 << 17
_ZEROS = np.zeros(RELU_BLOCK, np.float32)
_ZEROS.flags.writeable = False


def _relu(x, out, attrs):
    """max(x, 0): on contiguous arrays block by block against an array of zeros, since np.maximum with a scalar
    operand takes a loop about twice as slow (one thread, in place: 50k floats 6.8 against 12.3 µs, 200k 28.5
    against 46.5, 800k 194 against 219; blocks of 32k gained half as much); on a strided region (an epilogue's
    block) with the scalar. np.clip for ReLU6 was faster than max then min against arrays, and stays."""
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        np.maximum(x, 0.0, out=out)
        return
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for start in range(0, flat_x.size, RELU_BLOCK):
        block = flat_out[start:start + RELU_BLOCK]
        np.maximum(flat_x[start:start + RELU_BLOCK], _ZEROS[:block.size], out=block)


unary("ReLU", _relu)
unary("ReLU6", lambda x, out, attrs: np.clip(x, 0.0, 6.0, out=out))
unary("Tanh", lambda x, out, attrs: np.tanh(x, out=out))
unary("Softsign", _softsign)
unary("Sigmoid", _sigmoid)
unary("LeakyReLU", _leaky_relu)


def _batchnorm_affine(ctx):
    """BatchNorm's float32 scale and shift, shaped to broadcast along the channel axis of the layout."""
    scale, shift = BatchNorm2d.scale_shift(ctx.attrs, ctx.params)
    rank = len(ctx.out_shape)
    shape = [1] * rank
    shape[ctx.axis(1, rank)] = -1
    return scale.astype(np.float32).reshape(shape), shift.astype(np.float32).reshape(shape)


def _batchnorm_epilogue(ctx):
    scale, shift = _batchnorm_affine(ctx)

    def apply(region, channels):
        region *= scale[channels]
        region += shift[channels]
    apply.affine = (scale, shift)            # a convolution folds it into its weight and bias (gemm.fold_affine)
    return apply


@kernel("BatchNorm2d", layouts=ANY, inplace=True, epilogue=_batchnorm_epilogue)
def make_batchnorm(ctx):
    scale, shift = _batchnorm_affine(ctx)

    def step(inputs, out):
        np.multiply(inputs[0], scale, out=out)
        out += shift
        return out
    return step


kernel("BatchNorm1d", layouts=ANY, inplace=True, epilogue=_batchnorm_epilogue)(make_batchnorm)
kernel("BatchNorm3d", layouts=ANY, inplace=True, epilogue=_batchnorm_epilogue)(make_batchnorm)


@kernel("Add", layouts=ANY, inplace=True)
def make_add(ctx):
    broadcast = ctx.broadcaster()

    def step(inputs, out):
        inputs = broadcast(inputs)
        np.add(inputs[0], inputs[1], out=out)
        for other in inputs[2:]:
            out += other
        return out
    return step


@kernel("Softmax", layouts=ANY)
def make_softmax(ctx):
    axis = ctx.axis(ctx.attrs["axis"], len(ctx.out_shape))

    def step(inputs, out):
        x = inputs[0]
        np.subtract(x, np.max(x, axis=axis, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= np.sum(out, axis=axis, keepdims=True)
        return out
    return step


@kernel("Concat", layouts=ANY)
def make_concat(ctx):
    axis = ctx.axis(ctx.attrs["axis"], len(ctx.out_shape))

    def step(inputs, out):
        np.concatenate(inputs, axis=axis, out=out)
        return out
    return step


@kernel("Flatten", layouts=(NCHW,), view=True)
def make_flatten(ctx):
    shape = ctx.out_shape
    return lambda inputs, out: inputs[0].reshape(shape)


def _pass_through(ctx):
    return lambda inputs, out: inputs[0]


kernel("Identity", layouts=ANY, view=True)(_pass_through)
kernel("Dropout", layouts=ANY, view=True)(_pass_through)
