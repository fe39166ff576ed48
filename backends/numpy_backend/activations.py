"""Kernels of the modern activations (cnngraph/layers/modern_activations.py) and the erf they share with the Erf op.

Each element-wise one is registered through ``unary``: it may write in place into a buffer whose value dies
here, and runs as the epilogue of a convolution or Linear on a block of the GEMM's output while it is in cache.
So ``apply(x, out, attrs)`` must allow ``out is x``: a kernel reads x fully into a temporary before writing out.
"""
from __future__ import annotations

import math

import numpy as np

from cnngraph.layers.modern_activations import SELU_ALPHA, SELU_SCALE

from .blockwise import blockwise, constant, powers, workspace
from .elementwise import ANY, unary
from .kernel import kernel

# erf(x) = tanh(x·P(x²)/Q(x²)): P/Q (degree 3/3, all coefficients positive) is a weighted minimax fit of
# atanh(erf(x))/x on [0, 4] (Loeb's linearised least squares, Lawson's weights; weight 1 − erf²), evaluated as
# c0 + u·N(u)/Q(u) (u = x², c0 = P(0) = 2/√π, N = (P − c0·Q)/u): the rounding of N/Q then touches a term of a
# few percent of the sum, and the argument of tanh is within about one ulp. u is clamped at 16: past |x| = 4
# the argument only grows, and erf = ±1 in float32. Relative precision near 0. Largest error over every float32
# in [0, 4.5] (1.08e9 values, against math.erf): 1.08e-7 absolute, float32 rounding and tanh's included
# (1.93e-7 when evaluated as x·P/Q); tests/backends/test_fast_kernels.py checks a sweep of [-10, 10].
_ERF_C0 = np.float32(1.1283791936364882)
_ERF = np.array([[0.10277231333032369, 0.01591173004548541, 0.001803335143325671, 0.0],
                 [1.0, 0.15685312163616855, 0.023613118658844155, 0.00032267136037390743]], np.float32)
# GELU's tail: q(z) = z·Φ(−z) = ½·z·erfc(z/√2) = exp(−z²/2)·P(z)/Q(z) for z = |x| ≥ 0 (degree 4/4, relative
# error 3.8e-7 on [0, 14], fitted like _ERF with weight 1/q); the third row gives −z²/2 from the same product.
# Past z = 14, q underflows to 0 in float32, so z is clamped there.
_GELU_TAIL = np.array([[0.0, 0.49999980926999255, 0.3619654698721152, 0.1195285325256254, 0.017047030132732108],
                       [1.0, 1.5217966498729703, 0.9534243659639706, 0.29941088581386033, 0.04273557189740955],
                       [0.0, 0.0, -0.5, 0.0, 0.0]], np.float32)


def _erf_block(x, out, attrs):
    n = x.size
    square = workspace("powers", 4, n)
    with np.errstate(over="ignore"):                # x² = inf past 1.8e19: clamped next
        np.multiply(x, x, out=square[1])
    np.minimum(square[1], constant(16.0, n), out=square[1])
    ratio = np.matmul(_ERF, powers(square), out=workspace("products", 2, n))
    np.divide(ratio[0], ratio[1], out=ratio[0])
    ratio[0] *= square[1]
    ratio[0] += _ERF_C0
    ratio[0] *= x
    np.tanh(ratio[0], out=out)


erf_into = blockwise(_erf_block)


def erf(x: np.ndarray) -> np.ndarray:
    """erf element-wise, in float32 (NumPy has no erf): a new array of x's dtype."""
    out = np.empty(np.shape(x), np.float32)
    erf_into(np.asarray(x, np.float32), out, None)
    return out.astype(np.result_type(x, np.float32), copy=False)


def _gelu_erf_block(x, out, attrs):
    """x·Φ(x) = max(x, 0) − q(|x|), q(z) = z·Φ(−z): no cancellation of 1 + erf(x/√2) for x < 0, where the
    result is −q with q's relative precision; for x ≥ 0 it is x − q."""
    n = x.size
    z = workspace("powers", 5, n)
    np.abs(x, out=z[1])
    np.minimum(z[1], constant(14.0, n), out=z[1])
    terms = np.matmul(_GELU_TAIL, powers(z), out=workspace("products", 3, n))
    np.exp(terms[2], out=terms[2])
    np.divide(terms[0], terms[1], out=terms[0])
    terms[0] *= terms[2]
    np.maximum(x, constant(0.0, n), out=out)
    out -= terms[0]


_gelu_erf = blockwise(_gelu_erf_block)


def _elu(x, out, attrs):
    negative = np.minimum(x, 0.0)
    np.expm1(negative, out=negative)
    negative *= np.float32(attrs["alpha"])
    np.maximum(x, 0.0, out=out)
    out += negative                                # exact: one of the two terms is 0


def _selu(x, out, attrs):
    _elu(x, out, {"alpha": SELU_ALPHA})
    out *= np.float32(SELU_SCALE)


def _celu(x, out, attrs):
    alpha = np.float32(attrs["alpha"])
    negative = np.minimum(x, 0.0)
    negative /= alpha
    np.expm1(negative, out=negative)
    negative *= alpha                              # alpha·(exp(min(x, 0)/alpha) − 1) ≤ 0 for either sign of alpha
    np.maximum(x, 0.0, out=out)
    out += negative


def _gelu(x, out, attrs):
    """x·Φ(x); tanh: 1 + tanh(u) = 2·sigmoid(2u), u = √(2/π)·(x + 0.044715·x³), no cancellation for x < 0."""
    if attrs["approximate"] == "tanh":
        half_bracket = x * x
        half_bracket *= np.float32(0.044715)
        half_bracket += np.float32(1.0)
        half_bracket *= x
        half_bracket *= np.float32(-2 * math.sqrt(2 / math.pi))      # −2u
        with np.errstate(over="ignore"):
            np.exp(half_bracket, out=half_bracket)
        half_bracket += np.float32(1.0)
        np.divide(x, half_bracket, out=out)                           # x·sigmoid(2u) = 0.5·x·(1 + tanh(u))
        return
    _gelu_erf(x, out, attrs)


def _silu(x, out, attrs):
    # out is the temporary unless it holds x (in place, or an epilogue): then x must outlive exp(−x)
    gate = np.negative(x) if np.may_share_memory(x, out) else np.negative(x, out=out)
    with np.errstate(over="ignore"):               # exp(−x) overflows to inf for x ≪ 0, giving the right 0
        np.exp(gate, out=gate)
    gate += np.float32(1.0)
    np.divide(x, gate, out=out)


def _softplus_of(x, beta: float, threshold: float) -> np.ndarray:
    """log(1 + exp(βx))/β computed stably as max(βx, 0) + log1p(exp(−|βx|)), and x where βx > threshold."""
    scaled = x * np.float32(beta)
    result = np.abs(scaled)
    np.negative(result, out=result)
    np.exp(result, out=result)
    np.log1p(result, out=result)
    result += np.maximum(scaled, 0.0)
    if beta != 1.0:
        result /= np.float32(beta)
    return np.where(scaled > threshold, x, result)


def _mish(x, out, attrs):
    gate = _softplus_of(x, 1.0, 20.0)
    np.tanh(gate, out=gate)
    np.multiply(x, gate, out=out)


def _hardsigmoid(x, out, attrs):
    np.multiply(x, np.float32(attrs["alpha"]), out=out)
    out += np.float32(attrs["beta"])
    np.clip(out, 0.0, 1.0, out=out)


def _hardswish(x, out, attrs):
    gate = np.empty_like(x) if np.may_share_memory(x, out) else out      # out is the temporary unless it holds x
    np.add(x, np.float32(3.0), out=gate)
    np.clip(gate, np.float32(0.0), np.float32(6.0), out=gate)
    gate *= np.float32(1 / 6)
    np.multiply(x, gate, out=out)


def _softplus(x, out, attrs):
    np.copyto(out, _softplus_of(x, attrs["beta"], attrs["threshold"]))


unary("ELU", _elu)
unary("SELU", _selu)
unary("CELU", _celu)
unary("GELU", _gelu, split=lambda attrs: attrs["approximate"] == "tanh")
unary("SiLU", _silu)
unary("Mish", _mish, split=True)
unary("Hardsigmoid", _hardsigmoid)
unary("Hardswish", _hardswish)
unary("Softplus", _softplus, split=True)


@kernel("PReLU", layouts=ANY, inplace=True)
def make_prelu(ctx):
    """max(x, 0) + a·min(x, 0), a broadcast along the channel axis of the layout (a scalar when shared)."""
    weight = ctx.params["weight"].astype(np.float32)
    rank = len(ctx.out_shape)
    if weight.size > 1:
        shape = [1] * rank
        shape[ctx.axis(1, rank)] = -1
        weight = weight.reshape(shape)
    else:
        weight = weight.reshape(())

    def step(inputs, out):
        negative = np.minimum(inputs[0], 0.0)
        negative *= weight
        np.maximum(inputs[0], 0.0, out=out)
        out += negative
        return out
    return step


@kernel("LogSoftmax", layouts=ANY)
def make_log_softmax(ctx):
    axis = ctx.axis(ctx.attrs["dim"], len(ctx.out_shape))

    def step(inputs, out):
        x = inputs[0]
        np.subtract(x, np.max(x, axis=axis, keepdims=True), out=out)
        out -= np.log(np.sum(np.exp(out), axis=axis, keepdims=True))
        return out
    return step
