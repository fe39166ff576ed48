"""Deterministic parameter initialisation, matching PyTorch's defaults.

Layers draw from one module-level generator, like ``torch.manual_seed``: the same seed and the same
sequence of layer constructions give the same weights. ``seeded(s)`` scopes a seed to a block, which is
how the built-in models stay reproducible without touching the caller's sequence.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the generator every layer's initialisation draws from."""
    global _generator
    _generator = np.random.default_rng(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Use a fresh generator seeded with ``seed`` inside the block, then restore the previous one."""
    global _generator
    saved = _generator
    _generator = np.random.default_rng(seed)
    try:
        yield
    finally:
        _generator = saved


def uniform(shape, bound: float) -> np.ndarray:
    """U(-bound, bound) drawn in float32 directly: a float64 draw and its cast took seconds on VGG's 133M
    parameters."""
    values = _generator.random(shape, dtype=np.float32)
    values *= np.float32(2 * bound)
    values -= np.float32(bound)
    return values


def fan_in_uniform(shape, fan_in: int) -> np.ndarray:
    """PyTorch's default for Conv and Linear: kaiming_uniform(a=sqrt(5)) for weights and U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) for biases both reduce to this bound."""
    return uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)
