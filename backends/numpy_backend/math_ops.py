"""Kernels of the element-wise math ops (cnngraph/layers/math_ops.py): the unary ones in place (and as an
epilogue, like an activation), Pow, Max and Min with the layout-aware broadcasting of Add."""
from __future__ import annotations

import numpy as np

from .activations import erf_into
from .elementwise import ANY, unary
from .kernel import kernel

unary("Abs", lambda x, out, attrs: np.abs(x, out=out))
unary("Neg", lambda x, out, attrs: np.negative(x, out=out))


def _quiet(function):
    """ONNX's values where NumPy warns: nan below 0 (Log, Sqrt), ±inf at 0 (Log, Reciprocal), inf past exp(88)."""
    def apply(x, out, attrs):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            function(x, out=out)
    return apply


unary("Exp", _quiet(np.exp))
unary("Log", _quiet(np.log))
unary("Sqrt", _quiet(np.sqrt))
unary("Reciprocal", _quiet(np.reciprocal))
unary("Erf", erf_into)


@kernel("Pow", layouts=ANY, inplace=True)
def make_pow(ctx):
    broadcast = ctx.broadcaster()

    def step(inputs, out):
        base, exponent = broadcast(inputs)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            np.power(base, exponent, out=out)
        return out
    return step


def _variadic(op: str, combine):
    @kernel(op, layouts=ANY, inplace=True)
    def make(ctx):
        broadcast = ctx.broadcaster()

        def step(inputs, out):
            inputs = broadcast(inputs)
            if len(inputs) == 1:
                np.copyto(out, inputs[0])
                return out
            combine(inputs[0], inputs[1], out=out)
            for other in inputs[2:]:
                combine(out, other, out=out)
            return out
        return step
    return make


_variadic("Max", np.maximum)
_variadic("Min", np.minimum)
