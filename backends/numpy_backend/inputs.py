"""Checking and converting the arrays given to run() against the graph's inputs.

Shared by every backend so that all of them accept and refuse the same things with the same words.
"""
from __future__ import annotations

import numpy as np

from cnngraph.errors import InputError
from cnngraph.shapes import format_shape

AXIS_NAMES = {4: ("batch", "channel", "height", "width"), 2: ("batch", "feature")}


def coerce_inputs(graph, arrays) -> tuple[list[np.ndarray], dict[str, int]]:
    """Contiguous float32 arrays for the graph's inputs, and the sizes bound to its symbolic dimensions."""
    names = graph.inputs
    if len(arrays) != len(names):
        raise InputError(f"graph {graph.name!r} takes {len(names)} input(s) {names}, got {len(arrays)} array(s)")
    bindings: dict[str, int] = {}
    converted = []
    for name, array in zip(names, arrays):
        expected = graph.type_of(name).shape
        try:
            data = np.asarray(array)
        except (ValueError, TypeError) as error:
            raise InputError(f"input {name!r}: cannot be read as an array ({error})") from None
        if data.dtype.kind not in "fiu":
            raise InputError(f"input {name!r}: expected numeric data (float32), got dtype {data.dtype}")
        if data.ndim != len(expected):
            raise InputError(f"input {name!r}: expected a {len(expected)}-D array of shape "
                             f"{format_shape(expected)}, got shape {format_shape(data.shape)}")
        for axis, (dim, size) in enumerate(zip(expected, data.shape)):
            label = AXIS_NAMES.get(len(expected), ())[axis:axis + 1] or (f"axis {axis}",)
            where = f"{label[0]} dimension (axis {axis})" if not label[0].startswith("axis") else label[0]
            problem = None
            if isinstance(dim, int):
                if size != dim:
                    problem = f"{where} is {size}, expected {dim}"
            elif size < 1:
                problem = f"{where} ({dim}) must be at least 1, got {size}"
            elif bindings.setdefault(dim, size) != size:
                problem = f"{where} is {size}, but {dim} is {bindings[dim]} elsewhere"
            if problem:
                raise InputError(f"input {name!r}: expected shape {format_shape(expected)}, got "
                                 f"{format_shape(data.shape)}: {problem}")
        converted.append(np.asarray(data, dtype=np.float32, order="C"))   # ascontiguousarray makes 0-d 1-d
    return converted, bindings


def concrete_dim(dim, bindings: dict[str, int]) -> int:
    """Size of a dimension once the symbols are bound; symbolic sums of products ("3*N+N") are worked out."""
    if isinstance(dim, int):
        return dim
    size = 0
    for term in str(dim).split("+"):
        product = 1
        for factor in term.split("*"):
            product *= int(factor) if factor.isdigit() else bindings[factor]
        size += product
    return size


def concrete_shape(shape, bindings: dict[str, int]) -> tuple:
    return tuple(concrete_dim(d, bindings) for d in shape)
