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

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
# erfc(z) ≈ t·exp(−z² + P(t)), t = 1/(1 + z/2), z ≥ 0: relative error below 1.2e-7 everywhere (Numerical
# Recipes' erfcc, a Chebyshev fit); below |z| = 0.5 erf's Taylor series (10 terms, error < 1e-16) keeps
# erf(z)'s own relative precision, which 1 − erfc loses near 0.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
         -0.82215223, 0.17087277)


def erf(x: np.ndarray) -> np.ndarray:
    """erf element-wise, in float64 (vectorized; NumPy has no erf)."""
    z = np.abs(x, dtype=np.float64)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(t, _ERFC[-1])
    for c in reversed(_ERFC[:-1]):
        poly *= t
        poly += c
    large = 1.0 - t * np.exp(poly - z * z)
    square, term, series = z * z, z.copy(), z.copy()
    for k in range(1, 10):                     # Σ (−1)ᵏ z^(2k+1) / (k! (2k+1))
        term *= -square / k
        series += term / (2 * k + 1)
    result = np.where(z < 0.5, series * _TWO_OVER_SQRT_PI, large)
    return np.copysign(result, x)


def _elu(x, out, attrs):
    negative = np.minimum(x, 0.0)
    np.expm1(negative, out=negative)
    negative *= np.float32(attrs["alpha"])
    np.maximum(x, 0.0, out=out)
    np.copyto(out, negative, where=out <= 0.0)     # x ≤ 0 → alpha·(exp(x) − 1); x > 0 kept (x itself)


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
    """0.5·x·(1 + erf or tanh(...)), the bracket in float64: in float32, 1 + erf(−4) keeps one significant digit."""
    if attrs["approximate"] == "tanh":
        inner = x.astype(np.float64)
        inner *= inner
        inner *= 0.044715
        inner += 1.0
        inner *= x
        inner *= math.sqrt(2 / math.pi)
        np.tanh(inner, out=inner)
    else:
        inner = erf(x * (1 / math.sqrt(2)))
    inner += 1.0
    inner *= 0.5
    np.multiply(x, inner, out=out, casting="same_kind")


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
