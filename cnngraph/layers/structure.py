"""Layers that reshape, join or pass values through: Flatten, Add, Concat, Identity, Dropout."""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import gradient
from ..errors import ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..onnx.shared import flatten_target
from ..shapes import TensorType, product, total


def _axis(axis: int, rank: int, what: str, operand) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for {operand.describe()}")
    return axis % rank


def broadcast_shape(inputs) -> tuple:
    """NumPy/ONNX multidirectional broadcasting; a symbolic dim broadcasts only against 1 or itself."""
    rank = max(op.rank for op in inputs)
    shape = []
    for axis in range(rank):
        dims = {op.shape[axis - rank + op.rank] for op in inputs if axis - rank + op.rank >= 0} - {1}
        if len(dims) > 1:
            shown = " and ".join(op.describe() for op in inputs)
            raise ShapeError(f"cannot broadcast {shown} (axis {axis - rank} has sizes {sorted(map(str, dims))})")
        shape.append(dims.pop() if dims else 1)
    return tuple(shape)


class Flatten(Layer):
    """Merge axes start_dim..end_dim into one, as ``torch.nn.Flatten``: (N, C, H, W) → (N, C·H·W) by default.

    Args:
        start_dim: first axis merged (default 1: the batch axis is kept).
        end_dim: last axis merged (default −1, the last axis).
    """
    prefix = "flatten"
    linear = True
    reshape_like = True

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__(start_dim=int(start_dim), end_dim=int(end_dim))

    @classmethod
    def per_sample(cls, attrs, rank):
        return rank > 0 and attrs["start_dim"] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank == 0:
            return TensorType((1,))
        start = _axis(attrs["start_dim"], x.rank, "start_dim", x)
        end = _axis(attrs["end_dim"], x.rank, "end_dim", x)
        if start > end:
            raise ShapeError(f"start_dim {attrs['start_dim']} comes after end_dim {attrs['end_dim']} for {x.describe()}")
        return TensorType((*x.shape[:start], product(x.shape[start:end + 1]), *x.shape[end + 1:]))


class Add(Layer):
    """Element-wise sum of two or more values of the same shape (a residual connection): ``g.apply(Add(), a, b)``.

    Args:
        broadcast: allow NumPy/ONNX broadcasting between the inputs (a bias added to every pixel, as imported
            models do); default False, which requires equal shapes.
    """
    batch_independent = True
    prefix = "add"
    linear = True
    arity = (2, None)
    constant_affine = "shift"

    def __init__(self, broadcast: bool = False):
        super().__init__(**({"broadcast": True} if broadcast else {}))

    @classmethod
    def infer(cls, attrs, inputs):
        if attrs.get("broadcast"):
            return TensorType(broadcast_shape(inputs))
        first = inputs[0]
        for other in inputs[1:]:
            if other.shape != first.shape:
                raise ShapeError(f"inputs must have the same shape, got {first.describe()} and {other.describe()}")
        return first.type


class Concat(Layer):
    """Join one or more values along an axis, as ``torch.cat``; the others must match.

    Args:
        axis: the axis joined along (default 1, the channels of (N, C, H, W)).
    """
    prefix = "concat"
    linear = True
    arity = (1, None)

    def __init__(self, axis: int = 1):
        super().__init__(axis=int(axis))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["axis"] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        first = inputs[0]
        axis = _axis(attrs["axis"], first.rank, "axis", first)
        for other in inputs[1:]:
            same_rank = other.rank == first.rank
            if not same_rank or any(a != b for i, (a, b) in enumerate(zip(first.shape, other.shape)) if i != axis):
                raise ShapeError(f"inputs must match on every axis but {axis}: {first.describe()} and {other.describe()}")
        return TensorType((*first.shape[:axis], total([op.shape[axis] for op in inputs]), *first.shape[axis + 1:]))


class Identity(Layer):
    """Returns its input, as ``torch.nn.Identity()``; removed by the optimizer. No arguments."""
    batch_independent = True
    prefix = "identity"
    linear = True
    inference_identity = True

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        return inputs[0].type


class Dropout(Layer):
    """``torch.nn.Dropout`` at inference: the identity, kept as a layer so a graph reads like the network it
    came from (lint points it out; the optimizer removes it).

    Args:
        p: the training-time drop probability, in [0, 1] (default 0.5); recorded, not used at inference.
    """
    batch_independent = True
    prefix = "dropout"
    linear = True
    inference_identity = True

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        super().__init__(p=float(p))

    @classmethod
    def summary(cls, attrs):
        return f"p={attrs['p']}"

    @classmethod
    def infer(cls, attrs, inputs):
        return inputs[0].type


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Flatten")
def _flatten_to_onnx(e, n):
    """Flatten(axis=1) for (N, ...) -> (N, prod); else a Reshape, its shape computed at run time when too many
    dims are symbolic."""
    shape = e.graph.type_of(n.inputs[0]).shape
    rank = len(shape)
    if rank == 0:
        e.emit(n, "Reshape", [n.inputs[0], e.int64(n, "shape", [1])])
        return
    start, end = n.attrs["start_dim"] % rank, n.attrs["end_dim"] % rank
    if start == 1 and end == rank - 1:
        e.emit(n, "Flatten", [n.inputs[0]], axis=1)
        return
    target = flatten_target(shape, start, end)
    target_name = _dynamic_flatten_shape(e, n, start, end) if target is None else e.int64(n, "shape", target)
    e.emit(n, "Reshape", [n.inputs[0], target_name])


def _dynamic_flatten_shape(e, n, start: int, end: int) -> str:
    """Shape(x)[:start] ++ [prod(Shape(x)[start:end+1])] ++ Shape(x)[end+1:], with opset-13+ Slice inputs;
    ReduceProd reduces a 1-D tensor over all axes, so it needs axes in neither of its forms."""
    full = e.helper_node(n, "Shape", [n.inputs[0]])
    big = np.iinfo(np.int64).max

    def piece(begin, stop, key):
        return e.helper_node(n, "Slice", [full, e.int64(n, f"{key}_begin", [begin]), e.int64(n, f"{key}_end", [stop])])
    merged = e.helper_node(n, "ReduceProd", [piece(start, end + 1, "merged")], keepdims=1)
    parts = ([piece(0, start, "head")] if start > 0 else []) + [merged] + [piece(end + 1, big, "tail")]
    return e.helper_node(n, "Concat", parts, axis=0)


@exports("Add")
def _add_to_onnx(e, n):
    e.emit(n, "Add" if len(n.inputs) == 2 else "Sum", n.inputs)


@exports("Concat")
def _concat_to_onnx(e, n):
    e.emit(n, "Concat", n.inputs, axis=n.attrs["axis"])


@exports("Identity", "Dropout")
def _identity_to_onnx(e, n):
    e.emit(n, "Identity", n.inputs)                              # Dropout at inference: passes its input through


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


@imports("Add", "Sum")
def _sum(imp, node):
    inputs = [imp.operand(name) for name in node.input]
    if len(inputs) == 1:
        imp.add(node, "Identity", inputs)
        return
    same = all(imp.shape(i) == imp.shape(inputs[0]) for i in inputs)
    imp.add(node, "Add", inputs, {} if same else dict(broadcast=True))


@imports("Concat")
def _concat(imp, node):
    imp.add(node, "Concat", [imp.operand(n) for n in node.input if n], dict(axis=int(imp.attrs(node)["axis"])))


@imports("Flatten")
def _flatten(imp, node):
    """ONNX Flatten gives 2-D (prod(dims[:axis]), prod(dims[axis:])): our Flatten when axis is 1."""
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    rank, axis = len(shape), int(imp.attrs(node).get("axis", 1))
    if not -rank <= axis <= rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    axis += rank if axis < 0 else 0
    if axis == 1 and rank >= 2:
        imp.add(node, "Flatten", [x], dict(start_dim=1, end_dim=-1))
    else:
        imp.add(node, "Reshape", [x], dict(shape=(product(shape[:axis]), product(shape[axis:]))))


# --- gradients -------------------------------------------------------------------------------------------------
# Identity and Dropout (inference) pass ∂y through; Add gives every input ∂y (summed down to an input's shape
# when it broadcast); Concat gives each input its slice of ∂y; Flatten reshapes ∂y back.
class SumExcept(Layer):
    """Sum over every axis but one (training graphs only: a bias's gradient): (N, C, H, W) → (C,) for axis 1.

    Args:
        axis: the axis kept.
    """
    prefix = "dsum"
    training_only = True

    @classmethod
    def example(cls):
        return cls(1), [(None, 3, 4, 5)]

    def __init__(self, axis: int):
        super().__init__(axis=int(axis))

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        return TensorType((x.shape[_axis(attrs["axis"], x.rank, "axis", x)],))


class SumToShape(Layer):
    """Sum a broadcast value back to the shape it was broadcast from (training graphs only): axes it gained on
    the left are summed away, axes of size 1 in ``shape`` summed keeping them.

    Args:
        shape: the target shape (static, or equal to the input's dims where symbolic).
    """
    prefix = "dsum"
    training_only = True

    @classmethod
    def example(cls):
        return cls((3, 1, 5)), [(None, 3, 4, 5)]

    def __init__(self, shape: tuple):
        super().__init__(shape=tuple(shape))

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        shape = tuple(attrs["shape"])
        tail = x.shape[x.rank - len(shape):] if len(shape) <= x.rank else None
        if tail is None or any(t != 1 and t != d for t, d in zip(shape, tail)):
            raise ShapeError(f"{x.describe()} was not broadcast from {shape}")
        return TensorType(shape)


class ConcatGrad(Layer):
    """The slice [start, start + length) of one axis (training graphs only: the part of a Concat's ∂y that
    belongs to one of its inputs).

    Args:
        axis: the Concat's axis.
        start: where the input's part begins.
        length: its size along the axis.
    """
    prefix = "dconcat"
    training_only = True

    @classmethod
    def example(cls):
        return cls(1, 1, 2), [(None, 3, 4, 5)]

    def __init__(self, axis: int, start: int, length: int):
        super().__init__(axis=int(axis), start=int(start), length=int(length))

    per_sample = Concat.per_sample

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        axis = _axis(attrs["axis"], x.rank, "axis", x)
        size = x.shape[axis]
        if attrs["start"] < 0 or attrs["length"] < 1 or not isinstance(size, int) or attrs["start"] + attrs["length"] > size:
            raise ShapeError(f"slice [{attrs['start']}, +{attrs['length']}) is outside axis {axis} of {x.describe()}")
        return TensorType((*x.shape[:axis], attrs["length"], *x.shape[axis + 1:]))


def reduce_to(b, node, tag: str, dy: str, value: str) -> str:
    """dy summed down to the shape of ``value`` when broadcasting made it larger, else dy."""
    shape = b.shape(value)
    return dy if b.shape(dy) == shape else b.add(node, tag, "SumToShape", [dy], shape=shape)


def reshape_back(b, node, dy: str) -> str:
    return b.add(node, "x", "Reshape", [dy], shape=b.shape(node.inputs[0]))


@gradient("Identity", "Dropout")
def _pass_through_gradient(b, node, dy):
    return {0: dy}


@gradient("Add")
def _add_gradient(b, node, dy):
    return {i: reduce_to(b, node, str(i), dy, value) for i, value in enumerate(node.inputs)}


@gradient("Concat")
def _concat_gradient(b, node, dy):
    axis = node.attrs["axis"] % len(node.type.shape)
    grads, start = {}, 0
    for i, value in enumerate(node.inputs):
        length = b.shape(value)[axis]
        grads[i] = b.add(node, str(i), "ConcatGrad", [dy], axis=axis, start=start, length=length)
        start += length
    return grads


@gradient("Flatten")
def _flatten_gradient(b, node, dy):
    return {0: reshape_back(b, node, dy)}
