"""The arithmetic ONNX import and export (and folding) share, defined once: axes, window sizes, the
Reshape <-> Flatten correspondence and unique names.

Windows: ONNX's output length is floor or ceil of span/stride, plus one. PyTorch's (cnngraph.shapes.
pool_output_size, what the IR uses) differs in one case: with ceil_mode, a last window that would start in
the right padding is dropped (pytorch #71549). The ONNX spec now drops it too (onnx PR #5741, onnxruntime
does), older runtimes do not: the exporter chooses the ONNX form that gives PyTorch's sizes under both
readings; the importer reads the spec's (PyTorch's) sizes. A ceil_mode window may also
reach past the padded input (its overhang): the exporter writes that overhang as explicit padding and the
importer recognises it.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import OnnxImportError
from ..shapes import overhang, product


def axis_index(axis: int, rank: int, what: str = "axis") -> int:
    """ONNX's rule for an axis of a tensor of ``rank``: -rank <= axis < rank, negative counting from the end."""
    if not -rank <= axis < rank:
        raise OnnxImportError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


# --- sliding windows -------------------------------------------------------------------------------------------
def onnx_window_count(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                      ceil_mode: bool) -> int:
    """ONNX's output length along one axis (Conv, MaxPool, AveragePool): windows of (kernel−1)·dilation+1
    cells every ``stride`` over the padded input; ceil_mode keeps a last, partial window."""
    span = size + pad_begin + pad_end - (kernel - 1) * dilation - 1
    return (-(-span // stride) if ceil_mode else span // stride) + 1


# --- Reshape <-> Flatten ---------------------------------------------------------------------------------------
def flatten_target(shape, start: int, end: int) -> list[int] | None:
    """Reshape's shape input for merging the dims start..end of ``shape`` (the exporter's Flatten): 0 copies a
    dim (the batch stays symbolic, pytorch #41893), one -1 stands for a symbolic size; None when that is not
    enough (the exporter then computes the shape at run time)."""
    out_dims = list(shape[:start]) + [None] + list(shape[end + 1:])
    target = []
    for index, dim in enumerate(out_dims):
        same_index = index < start or (index > start and end == start)
        if same_index:
            target.append(0)                                     # copy: the batch is never written down
        elif index == start:
            merged = shape[start:end + 1]
            target.append(int(np.prod(merged)) if all(isinstance(d, int) and d > 0 for d in merged) else -1)
        else:
            target.append(dim if isinstance(dim, int) and dim > 0 else -1)
    return target if target.count(-1) <= 1 else None


def merged_axes(shape, target) -> tuple[int, int] | None:
    """(start, end) when reshaping ``shape`` to ``target`` (a Reshape's shape input: 0 copies, -1 infers)
    merges the consecutive axes start..end, else None: the importer's way back to a Flatten."""
    rank, length = len(shape), len(target)
    if rank == 0 and list(target) == [1]:
        return (0, -1)
    if list(target).count(-1) > 1 or not 1 <= length <= rank:
        return None
    for start in range(length):
        end = start + rank - length
        out = (*shape[:start], product(shape[start:end + 1]), *shape[end + 1:])
        if all(t == out[i] or t == -1 or (t == 0 and shape[i] == out[i]) for i, t in enumerate(target)):
            return (start, end)
    return None


# --- names -----------------------------------------------------------------------------------------------------
def unique_name(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, else ``base_1``, ``base_2``... the first that ``taken`` says is free. Both directions name the
    helper nodes one node expands to "<node>/<op>" this way, so names stay stable and readable (onnx PR #3258:
    fused names collided)."""
    name, index = base, 0
    while taken(name):
        index += 1
        name = f"{base}_{index}"
    return name


__all__ = ["axis_index", "onnx_window_count", "overhang", "flatten_target", "merged_axes", "unique_name"]
