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


def tolerance_violation(actual, expected) -> float:
    """Largest |actual − expected| beyond the tolerance, relative to that tolerance (0.0 = within)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    if actual.size == 0:
        return 0.0
    scale = float(np.max(np.abs(expected))) or 1.0
    allowed = RTOL * np.abs(expected) + ATOL_SCALE * scale
    excess = np.abs(actual - expected) / allowed
    if not np.all(np.isfinite(actual) == np.isfinite(expected)):
        return float("inf")
    excess = np.where(np.isfinite(expected), excess, 0.0)
    worst = float(np.max(excess))
    return 0.0 if worst <= 1.0 else worst


def assert_close(actual, expected, what: str = "output") -> None:
    """Raise AssertionError with the worst element when the two arrays differ beyond tolerance."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} differs from expected {expected.shape}")
    if tolerance_violation(actual, expected) > 0.0:
        diff = np.abs(actual.astype(np.float64) - expected)
        index = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise AssertionError(f"{what}: differs at {tuple(int(i) for i in index)}: {actual[index]!r} vs "
                             f"{expected[index]!r} (max |expected| {np.max(np.abs(expected)):.4g}, "
                             f"rtol {RTOL}, atol {ATOL_SCALE}×scale)")
