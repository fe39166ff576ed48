"""Reductions over some axes: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceL2 (ONNX's names; PyTorch's
``torch.sum``, ``torch.mean``, ``torch.amax``, ``torch.amin``, ``torch.linalg.vector_norm(x, 2, dim)``).

Each takes ``axes`` (empty: all axes) and ``keepdims``. ONNX moved ``axes`` from an attribute to an input in
two steps: ReduceSum at opset 13, the others at 18; ``noop_with_empty_axes`` came with the input form. The
export writes the form of the target opset; the import reads both, and an empty axes list with
``noop_with_empty_axes = 1`` (the reduction does nothing) becomes an Identity.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from ..layer import Layer
from ..onnx.mapping import exports, imports
from ..shapes import TensorType


class _Reduction(Layer):
    """A reduction over ``axes`` (empty: all), keeping them as 1 when ``keepdims``."""
    onnx_op: ClassVar[str]
    axes_input_since: ClassVar[int] = 18          # the opset from which ONNX takes axes as an input
    singleton_reduction = True                    # over one element: that element (ReduceL2 says no)

    @classmethod
    def example(cls):
        return cls((1, -1)), [(None, 3, 4, 5)]

    def __init__(self, axes: tuple[int, ...] = (), keepdims: bool = True):
        super().__init__(axes=tuple(int(a) for a in axes), keepdims=bool(keepdims))

    @classmethod
    def axes(cls, attrs, rank: int) -> tuple:
        """The reduced axes, sorted and non-negative."""
        if any(not -rank <= a < rank for a in attrs["axes"]):
            raise ShapeError(f"axes {list(attrs['axes'])} out of range for rank {rank}")
        if len({a % rank for a in attrs["axes"]}) != len(attrs["axes"]):
            raise ShapeError(f"axes {list(attrs['axes'])} name an axis twice")
        return tuple(sorted({a % rank for a in attrs["axes"]}) if attrs["axes"] else range(rank))

    @classmethod
    def per_sample(cls, attrs, rank):
        return bool(attrs["axes"]) and all(a % rank != 0 for a in attrs["axes"])

    @classmethod
    def summary(cls, attrs):
        return f"axes {list(attrs['axes']) or 'all'}" + (", keepdims" if attrs["keepdims"] else "")

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        axes = cls.axes(attrs, x.rank)
        if attrs["keepdims"]:
            return TensorType(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
        return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes))


class ReduceSum(_Reduction):
    """Sum over some axes, as ``torch.sum(x, dim, keepdim)``.

    Args:
        axes: the axes summed over; empty (the default) means all axes.
        keepdims: keep the summed axes as size 1 (default True, ONNX's default).
    """
    prefix = "sum"
    linear = True
    onnx_op = "ReduceSum"
    axes_input_since = 13


class ReduceMean(_Reduction):
    """Mean over some axes, as ``torch.mean(x, dim, keepdim)``.

    Args:
        axes: the axes averaged over; empty (the default) means all axes.
        keepdims: keep the averaged axes as size 1 (default True).
    """
    prefix = "mean"
    linear = True
    onnx_op = "ReduceMean"

    @classmethod
    def example(cls):                   # the default example, kept from before this family existed
        return cls(), [(None, 3, 4, 5)]


class ReduceMax(_Reduction):
    """Maximum over some axes, as ``torch.amax(x, dim, keepdim)``.

    Args:
        axes: the axes reduced; empty (the default) means all axes.
        keepdims: keep the reduced axes as size 1 (default True).
    """
    prefix = "max"
    onnx_op = "ReduceMax"


class ReduceMin(_Reduction):
    """Minimum over some axes, as ``torch.amin(x, dim, keepdim)``.

    Args:
        axes: the axes reduced; empty (the default) means all axes.
        keepdims: keep the reduced axes as size 1 (default True).
    """
    prefix = "min"
    onnx_op = "ReduceMin"


class ReduceL2(_Reduction):
    """Euclidean norm over some axes, √(Σ x²), as ``torch.linalg.vector_norm(x, 2, dim, keepdim)``.

    Args:
        axes: the axes reduced; empty (the default) means all axes.
        keepdims: keep the reduced axes as size 1 (default True).
    """
    prefix = "l2"
    onnx_op = "ReduceL2"
    singleton_reduction = False                   # over one element: |x|, not x


REDUCTIONS = (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceL2)
__all__ = [cls.__name__ for cls in REDUCTIONS]


# --- ONNX export -----------------------------------------------------------------------------------------------
def _reduction_to_onnx(e, n):
    """axes: an attribute before the op's ``axes_input_since`` opset, an input from it on (empty: omitted, and
    noop_with_empty_axes keeps its default 0, reduce over all)."""
    cls, a = _BY_OP[n.op], n.attrs
    attrs, inputs = {"keepdims": int(a["keepdims"])}, [n.inputs[0]]
    if a["axes"] and e.opset >= cls.axes_input_since:
        inputs.append(e.int64(n, "axes", a["axes"]))
    elif a["axes"]:
        attrs["axes"] = list(a["axes"])
    e.emit(n, cls.onnx_op, inputs, **attrs)


_BY_OP = {cls.op: cls for cls in REDUCTIONS}
for _cls in REDUCTIONS:
    exports(_cls.op)(_reduction_to_onnx)


# --- ONNX import -----------------------------------------------------------------------------------------------
def _reduction_from_onnx(imp, node):
    """Both forms of axes; empty axes with noop_with_empty_axes = 1 is the input unchanged (an Identity)."""
    cls = _BY_ONNX[node.op_type]
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    axes = a.get("axes") if imp.opset < cls.axes_input_since else imp.optional_const(node, 1, "axes")
    axes = () if axes is None else tuple(int(v) for v in np.asarray(axes).reshape(-1))
    if not axes and a.get("noop_with_empty_axes", 0):
        imp.add(node, "Identity", [x])
        return
    imp.add(node, cls.op, [x], dict(axes=axes, keepdims=bool(a.get("keepdims", 1))))


_BY_ONNX = {cls.onnx_op: cls for cls in REDUCTIONS}
for _cls in REDUCTIONS:
    imports(_cls.onnx_op)(_reduction_from_onnx)


# --- gradients -------------------------------------------------------------------------------------------------
# ReduceSum: every input element gets the ∂y of its group (∂y with the reduced axes kept as 1, expanded to the
# input's shape); max, min and L2 read x and y too (ReduceGrad: ties split evenly, PyTorch's amax/amin).
# ReduceMean's rule is in tensor_ops.py.
from ..autodiff.registry import gradient  # noqa: E402
from . import tensor_gradients  # noqa: E402,F401  (ReduceGrad)


@gradient("ReduceSum")
def _reduce_sum_gradient(b, node, dy):
    x = b.shape(node.inputs[0])
    axes = ReduceSum.axes(node.attrs, len(x))
    kept = tuple(1 if i in axes else d for i, d in enumerate(x))
    if b.shape(dy) != kept:
        dy = b.add(node, "x.kept", "Reshape", [dy], shape=kept)
    return {0: b.add(node, "x", "Expand", [dy], shape=tuple(x))}


@gradient("ReduceMax", "ReduceMin", "ReduceL2")
def _reduce_extremum_gradient(b, node, dy):
    how = {"ReduceMax": "max", "ReduceMin": "min", "ReduceL2": "l2"}[node.op]
    return {0: b.add(node, "x", "ReduceGrad", [node.inputs[0], node.name, dy], how=how, **node.attrs)}
