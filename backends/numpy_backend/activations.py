"""Kernels of the modern activations (cnngraph/layers/modern_activations.py) and the erf they share with the Erf op.

Each element-wise one is registered through ``unary``: it may write in place into a buffer whose value dies
here, and runs as the epilogue of a convolution or Linear on a block of the GEMM's output while it is in cache.
So ``apply(x, out, attrs)`` must allow ``out is x``: a kernel reads x fully into a temporary before writing out.
"""
from __future__ import annotations

import math

import numpy as np

from cnngraph.layers.modern_activations import SELU_ALPHA, SELU_SCALE

from .elementwise import ANY, unary
from .kernel import kernel

_TWO_OVER_SQRT_PI = np.float32(2.0 / math.sqrt(math.pi))
# erfc(z) ≈ t·exp(−z² + P(t)), t = 1/(1 + z/2), z ≥ 0: relative error below 1.2e-7 everywhere (Numerical
# Recipes' erfcc, a Chebyshev fit), so erfc keeps its relative precision far into the tail (GELU's left side).
# Below z = 0.5 erf's Taylor series (7 terms, error < 1e-12) keeps erf(z)'s own precision, which 1 − erfc loses.
_ERFC = tuple(np.float32(c) for c in (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
                                      -1.13520398, 1.48851587, -0.82215223, 0.17087277))
_ERF_SERIES = tuple(np.float32((-1) ** n / (math.factorial(n) * (2 * n + 1))) for n in range(7))


def erfc_nonnegative(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z ≥ 0, float32 in and out (a new array)."""
    t = z * np.float32(0.5)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERFC[-1])
    for c in reversed(_ERFC[:-1]):
        poly *= t
        poly += c
    poly -= z * z
    np.exp(poly, out=poly)
    poly *= t
    return poly


def erf(x: np.ndarray) -> np.ndarray:
    """erf element-wise, float32 (vectorized; NumPy has no erf): a new array."""
    z = np.abs(x)
    result = erfc_nonnegative(z)
    np.subtract(np.float32(1.0), result, out=result)
    small = z < 0.5
    if small.any():
        zs = z[small]
        square = zs * zs
        series = np.full_like(zs, _ERF_SERIES[-1])
        for c in reversed(_ERF_SERIES[:-1]):
            series *= square
            series += c
        series *= zs
        series *= _TWO_OVER_SQRT_PI
        result[small] = series
    return np.copysign(result, x, out=result)


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
    """x·Φ(x) without the cancellation of 1 + erf(x/√2) or 1 + tanh(u) for x < 0 in float32:
    none: 1 + erf(x/√2) = erfc(|x|/√2) for x < 0, 2 − erfc(|x|/√2) otherwise;
    tanh: 1 + tanh(u) = 2·sigmoid(2u), u = √(2/π)·(x + 0.044715·x³)."""
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
    tail = erfc_nonnegative(np.abs(x) * np.float32(1 / math.sqrt(2)))
    bracket = np.where(x < 0, tail, np.float32(2.0) - tail)
    bracket *= np.float32(0.5)
    np.multiply(x, bracket, out=out)


def _silu(x, out, attrs):
    gate = np.negative(x)
    with np.errstate(over="ignore"):               # exp(−x) overflows to inf for x ≪ 0, giving the right 0
        np.exp(gate, out=gate)
    gate += 1.0
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
    gate = x + np.float32(3.0)
    np.clip(gate, 0.0, 6.0, out=gate)
    gate *= np.float32(1 / 6)
    np.multiply(x, gate, out=out)


def _softplus(x, out, attrs):
    np.copyto(out, _softplus_of(x, attrs["beta"], attrs["threshold"]))


unary("ELU", _elu)
unary("SELU", _selu)
unary("CELU", _celu)
unary("GELU", _gelu)
unary("SiLU", _silu)
unary("Mish", _mish)
unary("Hardsigmoid", _hardsigmoid)
unary("Hardswish", _hardswish)
unary("Softplus", _softplus)


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
