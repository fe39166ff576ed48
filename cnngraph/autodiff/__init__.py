"""Training support: gradient rules (registry.py), the backward graph (backward.py)."""
from .registry import GRADIENTS, gradient

__all__ = ["GRADIENTS", "gradient"]
