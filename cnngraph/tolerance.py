"""The one place float32 agreement is defined, for tests, verification and benchmarks.

Two float32 computations of the same network differ by rounding that grows with the length of each dot
product and with cancellation, so an absolute tolerance only makes sense relative to the output's scale:
|actual − expected| ≤ RTOL·|expected| + ATOL_SCALE·max|expected|. (onnx-simplifier's check uses rtol 1e-4,
atol 1e-5 on unscaled outputs; ours is as tight for outputs of magnitude ~0.1 and does not fail on large ones.)
"""
from __future__ import annotations

import numpy as np

RTOL = 1e-4
ATOL_SCALE = 1e-4
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def tolerance_violation(actual, expected) -> float:
    """Largest |actual − expected| beyond the tolerance, relative to that tolerance (0.0 = within).

    The scale is taken over finite expected values only; a non-finite expected value must be matched
    exactly (same infinity, or nan for nan), and a non-finite actual value where a finite one is expected
    is a failure."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    finite = np.isfinite(expected)
    same_special = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    if not np.all(finite | same_special) or not np.all(np.isfinite(actual[finite])):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = float(np.max(np.abs(expected[finite]))) or 1.0
    # FLOAT32_TINY: a float32 result cannot hold a magnitude below it (GELU of x < −13 is 1e-88 in float64)
    allowed = RTOL * np.abs(expected[finite]) + ATOL_SCALE * scale + FLOAT32_TINY
    worst = float(np.max(np.abs(actual[finite] - expected[finite]) / allowed))
    return 0.0 if worst <= 1.0 else worst


def assert_close(actual, expected, what: str = "output") -> None:
    """Raise AssertionError with the worst element when the two arrays differ beyond tolerance."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} differs from expected {expected.shape}")
    if tolerance_violation(actual, expected) > 0.0:
        with np.errstate(invalid="ignore"):
            diff = np.abs(actual.astype(np.float64) - expected)
        index = np.unravel_index(np.argmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise AssertionError(f"{what}: differs at {tuple(int(i) for i in index)}: {actual[index]!r} vs "
                             f"{expected[index]!r} (max |expected| {np.max(np.abs(expected)):.4g}, "
                             f"rtol {RTOL}, atol {ATOL_SCALE}×scale)")
