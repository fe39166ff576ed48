"""Rules of ONNX that import and export (and folding) share, defined once."""
from __future__ import annotations

from ..errors import OnnxImportError


def axis_index(axis: int, rank: int, what: str = "axis") -> int:
    """ONNX's rule for an axis of a tensor of ``rank``: -rank <= axis < rank, negative counting from the end."""
    if not -rank <= axis < rank:
        raise OnnxImportError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


__all__ = ["axis_index"]
