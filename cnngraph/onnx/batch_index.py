"""Index arithmetic that counts the symbolic batch, as PyTorch's dynamo exporter writes ``as_strided``.

ConvNeXt's head (AdaptiveAvgPool2d to 1x1, then as_strided) comes out as Reshape(x, [-1]) and a Gather whose
indices are Range(0, N, 1) * stride, unsqueezed, plus constant offsets. The indices have the symbolic length
N, so they cannot be a NumPy constant. A ``BatchIndex`` holds them exactly: ``scale * n + offset``, n counting
along one axis of length ``count`` (a symbolic dim), ``offset`` a constant with size 1 on that axis.

Folded on it: Range (start 0, a positive step that divides the limit), Mul by a scalar, Add/Sub of a
constant with size 1 on the counting axis, Unsqueeze, Cast to an integer, Identity. (A Range to a static dim
read from a shape that holds the batch is a plain array.) A Gather along axis 0 of a
value whose dim 0 is ``scale * count``, with 0 <= offset < scale, reads element ``offset`` of row n of the
value seen as (count, scale, ...): a Reshape (when the offsets are 0, 1, ... in order) or Reshape -> IndexSelect
-> Reshape, whatever the batch. Anything else (another axis, an offset reaching into the next row, dim 0 not
``scale * count``) depends on the batch's value and is refused naming the node.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from . import symbolic
from .handler_tools import Unsupported
from .shared import axis_index


class BatchIndexError(Unsupported):
    """Not exact for every batch (or a use of the index not mapped); the importer lists the node with it."""


class BatchIndex:
    """``scale * n + offset`` for n in range(count) along ``axis`` (count symbolic); int64."""

    dtype = np.dtype(object)              # like a shape holding a symbolic dim: imp.const refuses to read it

    def __init__(self, count, axis: int, scale: int, offset: np.ndarray):
        self.count, self.axis, self.scale = count, axis, int(scale)
        self.offset = np.asarray(offset, dtype=np.int64)
        assert self.offset.shape[axis] == 1

    @property
    def shape(self) -> tuple:
        return tuple(self.count if i == self.axis else d for i, d in enumerate(self.offset.shape))

    @property
    def ndim(self) -> int:
        return self.offset.ndim

    def reshape(self, *args):
        raise BatchIndexError("reads an index computed from the symbolic batch (a Range over it) as a shape")

    def __array__(self, *args, **kwargs):
        raise BatchIndexError("needs the values of an index computed from the symbolic batch (a Range over it)")


def applies(node, inputs) -> bool:
    """Whether ``node`` is folded here: it reads a BatchIndex, or it is a Range up to a symbolic dim."""
    if any(isinstance(a, BatchIndex) for a in inputs):
        return True
    return node.op_type == "Range" and len(inputs) == 3 and np.asarray(inputs[1]).dtype == object


def _scalar(array, what: str) -> int:
    if isinstance(array, BatchIndex) or array is None or np.asarray(array).dtype == object or array.size != 1:
        raise BatchIndexError(f"{what} must be a number")
    if np.asarray(array).dtype.kind not in "iu":
        raise BatchIndexError(f"{what} must be an integer")
    return int(np.asarray(array).reshape(-1)[0])


def _range(node, inputs, opset):
    start, limit, delta = inputs
    start, delta = _scalar(start, "Range's start"), _scalar(delta, "Range's delta")
    if np.asarray(limit).size != 1:
        raise BatchIndexError("Range's limit must be a scalar")
    if delta <= 0:
        raise BatchIndexError(f"Range up to the symbolic dim with delta {delta} (only a positive delta)")
    limit = np.asarray(limit).reshape(-1)[0]
    if isinstance(limit, (int, np.integer)):          # a static dim read from a shape that holds the batch
        from .fold import check_elements  # fold.py imports this module
        check_elements(max(0, -(-(int(limit) - start) // delta)), "Range's output")
        return np.arange(start, int(limit), delta, dtype=np.asarray(inputs[0]).dtype)
    try:
        count = symbolic.floor_divide(symbolic.subtract(limit, start), delta)
        if symbolic.monomial(count)[0] <= 0:
            raise symbolic.SymbolicError(f"{count} entries, not a positive count")
    except symbolic.SymbolicError as error:
        raise BatchIndexError(f"its length: {error}") from None
    return BatchIndex(count, 0, delta, np.array([start]))


def _mul(node, inputs, opset):
    index, other = inputs if isinstance(inputs[0], BatchIndex) else inputs[::-1]
    k = _scalar(other, "the factor of an index counting the batch")
    if np.asarray(other).ndim > index.ndim:
        raise BatchIndexError("a Mul that raises the rank of an index counting the batch")
    return BatchIndex(index.count, index.axis, index.scale * k, index.offset * k)


def _add(node, inputs, opset):
    a, b = inputs
    sign = -1 if node.op_type == "Sub" else 1
    if isinstance(b, BatchIndex) and (sign < 0 or isinstance(a, BatchIndex)):
        raise BatchIndexError(f"{node.op_type} of an index counting the batch to another (only a constant)")
    index, other = (a, b) if isinstance(a, BatchIndex) else (b, a)
    other = np.asarray(other)
    if other.dtype.kind not in "iu":
        raise BatchIndexError(f"{node.op_type} of a {other.dtype} to an index counting the batch")
    rank = max(index.ndim, other.ndim)
    offset = index.offset.reshape((1,) * (rank - index.ndim) + index.offset.shape)
    other = other.reshape((1,) * (rank - other.ndim) + other.shape)
    axis = index.axis + rank - index.ndim
    if other.shape[axis] != 1:
        raise BatchIndexError(f"{node.op_type} of a constant with {other.shape[axis]} entries along the axis that "
                              "counts the batch")
    try:
        offset = offset + sign * other.astype(np.int64)
    except ValueError as error:
        raise BatchIndexError(str(error)) from None
    return BatchIndex(index.count, axis, index.scale, offset)


def _unsqueeze(node, inputs, opset):
    index = inputs[0]
    if opset < 13:
        axes = [int(a) for a in helper.get_attribute_value(next(a for a in node.attribute if a.name == "axes"))]
    else:
        axes = [_scalar(np.asarray(a).reshape(1), "Unsqueeze's axes") for a in np.asarray(inputs[1]).reshape(-1)]
    rank = index.ndim + len(axes)
    inserted = sorted(axis_index(a, rank, "Unsqueeze's axis") for a in axes)
    if len(set(inserted)) != len(inserted):
        raise BatchIndexError("Unsqueeze with a repeated axis")
    kept = [i for i in range(rank) if i not in inserted]
    offset = index.offset
    for axis in inserted:
        offset = np.expand_dims(offset, axis)
    return BatchIndex(index.count, kept[index.axis], index.scale, offset)


def _cast(node, inputs, opset):
    to = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "to")
    if helper.tensor_dtype_to_np_dtype(int(to)).kind not in "iu":
        raise BatchIndexError("a cast of an index counting the batch to a non-integer type")
    return inputs[0]


FOLDERS = {
    "Range": _range,
    "Mul": _mul,
    "Add": _add,
    "Sub": _add,
    "Unsqueeze": _unsqueeze,
    "Cast": _cast,
    "Identity": lambda node, inputs, opset: inputs[0],
}


def fold(node, inputs, opset):
    """The BatchIndex ``node`` computes (a Range to a static dim: its array); BatchIndexError for any other op
    or form."""
    folder = FOLDERS.get(node.op_type)
    if folder is None or (node.op_type != "Range" and not isinstance(inputs[0], BatchIndex)
                          and node.op_type not in ("Mul", "Add")):
        raise BatchIndexError(f"{node.op_type} of an index computed from the symbolic batch (a Range over it)")
    return folder(node, inputs, opset)


def gather(imp, node, index: BatchIndex) -> None:
    """Gather of a graph value at a BatchIndex: a Reshape (-> IndexSelect -> Reshape) that keeps the batch."""
    from ..layers.slicing import IndexSelect  # the layers import the onnx package: not at module level
    x = imp.value(node.input[0])
    shape = list(imp.shape(x))
    axis = axis_index(int(imp.attrs(node).get("axis", 0)), len(shape), "Gather's axis")
    if axis != 0 or index.axis != 0:
        raise BatchIndexError(f"indices counting the batch along axis {index.axis}, gathered along axis {axis} "
                              "(only both 0)")
    rows = symbolic.multiply(index.scale, index.count)
    try:
        whole = index.scale > 0 and symbolic.equal(shape[0], rows)
    except symbolic.SymbolicError:
        whole = False
    if not whole:
        raise BatchIndexError(f"indices {index.scale}*n + offset for n < {index.count} on a dim {shape[0]}: "
                              f"which elements they read depends on the batch")
    offsets = index.offset.reshape(index.offset.shape[1:])
    if offsets.size == 0 or offsets.min() < 0 or offsets.max() >= index.scale:
        raise BatchIndexError(f"offsets {offsets.min() if offsets.size else ''}..{offsets.max() if offsets.size else ''}"
                              f" reach outside the {index.scale} elements of each batch entry")
    tail = tuple(shape[1:])
    out_shape = (-1, *offsets.shape, *tail)
    if offsets.size == index.scale and np.array_equal(offsets.reshape(-1), np.arange(index.scale)):
        imp.add(node, "Reshape", [x], dict(shape=out_shape))
        return
    rows_of = imp.add_step(node, "Reshape", [x], dict(shape=(-1, index.scale, *tail)))
    picked = imp.add_step(node, "IndexSelect", [rows_of], dict(IndexSelect(1, offsets.reshape(-1)).attrs))
    imp.add(node, "Reshape", [picked], dict(shape=out_shape))


__all__ = ["BatchIndex", "BatchIndexError", "applies", "fold", "gather"]
