"""Kernels of the gradient ops of the modern activations and the element-wise math
(cnngraph/layers/elementwise_gradients.py): vectorized, float32, no loop over elements."""
from __future__ import annotations

import math

import numpy as np

from cnngraph.layers.modern_activations import SELU_ALPHA, SELU_SCALE

from .activations import erf
from .kernel import CNHW, NCHW, kernel

ANY = (CNHW, NCHW)
_GELU_K = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))        # no overflow at either end


def input_derivative(op: str, attrs: dict, x: np.ndarray) -> np.ndarray:
    """f'(x) of an element-wise function, in x's dtype (the ops with derivative_from = "input")."""
    one = x.dtype.type(1.0)
    if op in ("ELU", "SELU", "CELU"):
        alpha = SELU_ALPHA if op == "SELU" else attrs["alpha"]
        scale = SELU_SCALE if op == "SELU" else 1.0
        negative = np.exp(np.minimum(x, 0.0) / (attrs["alpha"] if op == "CELU" else 1.0))
        if op != "CELU":
            negative *= x.dtype.type(alpha)
        return np.where(x > 0, one, negative) * x.dtype.type(scale)
    if op == "GELU":
        if attrs["approximate"] == "tanh":
            t = np.tanh(x.dtype.type(_GELU_K) * (x + x.dtype.type(0.044715) * x * x * x))
            return 0.5 * (one + t) + 0.5 * x * (one - t * t) * x.dtype.type(_GELU_K) * (
                one + x.dtype.type(3 * 0.044715) * x * x)
        return 0.5 * (one + erf(x * x.dtype.type(1 / math.sqrt(2.0)))) + x * np.exp(-0.5 * x * x) * x.dtype.type(
            _INV_SQRT_2PI)
    if op == "SiLU":
        s = _sigmoid(x)
        return s * (one + x * (one - s))
    if op == "Mish":
        t = np.tanh(np.where(x > 20.0, x, np.logaddexp(x.dtype.type(0.0), x)))
        return t + x * (one - t * t) * _sigmoid(x)
    if op == "Hardswish":
        return np.where(x < -3.0, 0.0, np.where(x <= 3.0, x / x.dtype.type(3.0) + x.dtype.type(0.5), one))
    if op == "Hardsigmoid":
        z = x.dtype.type(attrs["alpha"]) * x + x.dtype.type(attrs["beta"])
        return np.where((z > 0.0) & (z < 1.0), x.dtype.type(attrs["alpha"]), 0.0)
    if op == "Softplus":
        z = x * x.dtype.type(attrs["beta"])
        return np.where(z > attrs["threshold"], one, _sigmoid(z))
    if op == "Abs":
        return np.sign(x)
    if op == "Erf":
        return np.exp(-x * x) * x.dtype.type(2.0 / math.sqrt(math.pi))
    if op == "LeakyReLU":                        # any slope; PyTorch's side at 0 is the slope's
        return np.where(x > 0, one, x.dtype.type(attrs["negative_slope"]))
    raise ValueError(f"no derivative from the input for {op}")


@kernel("ElementwiseGrad", layouts=ANY)
def make_elementwise_grad(ctx):
    function = ctx.attrs["function"]

    def step(inputs, out):
        np.multiply(inputs[1], input_derivative(function["op"], function["attrs"], inputs[0]), out=out)
        return out
    return step


@kernel("LogSoftmaxGrad", layouts=ANY)
def make_log_softmax_grad(ctx):
    axis = ctx.axis(ctx.attrs["dim"], len(ctx.out_shape))

    def step(inputs, out):
        y, dy = inputs
        np.exp(y, out=out)
        out *= np.sum(dy, axis=axis, keepdims=True)
        np.subtract(dy, out, out=out)
        return out
    return step


@kernel("PReLUGrad")
def make_prelu_grad(ctx):
    weight = ctx.params["weight"].astype(np.float32)
    rank = len(ctx.in_shapes[0])
    channel = ctx.axis(1, rank) if rank >= 2 else 0
    shape = [1] * rank
    if weight.size > 1:
        shape[channel] = -1
    slopes = weight.reshape(shape)
    others = tuple(i for i in range(rank) if i != channel) if weight.size > 1 else tuple(range(rank))

    def step(inputs, out):
        x, dy = inputs
        if ctx.attrs["wrt"] == "x":
            np.multiply(dy, np.where(x > 0, np.float32(1.0), slopes), out=out)
        else:
            out[...] = np.sum(dy * np.minimum(x, 0.0), axis=others).reshape(out.shape)
        return out
    return step


@kernel("ExtremumGrad")        # operands broadcast: in the logical layout
def make_extremum_grad(ctx):
    index = ctx.attrs["index"]

    def step(inputs, out):
        y, dy, *operands = inputs
        taken = np.zeros(y.shape, bool)
        for x in operands[:index]:                    # a loop over the (few) operands, not the elements
            taken |= x == y
        mine = (operands[index] == y) & ~taken
        np.multiply(dy, mine, out=out)
        return out
    return step
