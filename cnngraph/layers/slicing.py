"""Taking parts of a computed tensor: Slice, IndexSelect (ONNX Gather on a constant index), plus PyTorch's
``split`` and ``chunk`` as helpers that add one Slice per piece (repeating a tensor is in repeat.py).

Modern blocks cut tensors they computed: ReXNet's residual adds to the first channels only, GhostNet keeps
``out[:, :C]``, ShuffleNetV2 and CSPNet halve the channels with ``chunk(2, dim=1)``. A node of the IR has one
output, so a split is one Slice per piece: the importer reads an ONNX Split with N outputs as N Slice nodes
(named after the Split's outputs), and the exporter writes Slices that cut one value into consecutive pieces
of one axis back as one Split. Every op here is affine in its input (``linear``) and keeps a symbolic
batch symbolic; an op that would have to know the batch's size (a slice of the batch that is not all of it)
is refused with a ShapeError.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..shapes import TensorType

INT64_MAX = 2 ** 63 - 1


def _axis(axis: int, rank: int, what: str, operand) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for {operand.describe()}")
    return axis % rank


def slice_range(start: int, end: int, step: int, size: int) -> range:
    """The indices ONNX's Slice takes along one axis of length ``size``: negative start/end count from the
    end, then both are clamped ([0, size] for a positive step, [-1, size-1] for a negative one) — Python's
    own slice rule."""
    return range(*slice(start, end, step).indices(size))


def as_ints(values) -> tuple[int, ...]:
    """Plain ints of an attribute's values (NumPy integers included)."""
    return tuple(int(v) for v in values)


class Slice(Layer):
    """``x[starts:ends:steps]`` along ``axes``, with ONNX Slice's semantics (PyTorch's basic indexing, which
    exporters write as Slice; PyTorch itself has no negative steps, ONNX has).

    Args:
        starts: the first index taken on each listed axis; negative counts from the end.
        ends: the index one past the last (before it, for a negative step); negative counts from the end;
            clamped to the axis, so ``2**63 - 1`` means "to the end" and ``-2**63`` "to the front".
        axes: the axes sliced, one per start (default 0, 1, ...); negative counts from the last axis.
        steps: the stride on each listed axis, not 0 (default 1); negative walks backwards.
    Output: the input's shape with each sliced axis cut to the indices taken (possibly 0). A symbolic axis
    (the batch) can only be taken whole (start 0, end at or past the end, step 1).
    """
    prefix = "slice"
    linear = True

    @classmethod
    def example(cls):
        return cls((1,), (3,), (1,)), [(None, 4, 4, 5)]

    def __init__(self, starts, ends, axes=None, steps=None):
        starts, ends = as_ints(starts), as_ints(ends)
        axes = tuple(range(len(starts))) if axes is None else as_ints(axes)
        steps = (1,) * len(starts) if steps is None else as_ints(steps)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise ValueError(f"Slice: starts {starts}, ends {ends}, axes {axes} and steps {steps} must have one "
                             f"entry per sliced axis")
        if 0 in steps:
            raise ValueError(f"Slice: steps {steps} must not be 0")
        super().__init__(starts=starts, ends=ends, axes=axes, steps=steps)

    @classmethod
    def ranges(cls, attrs, shape) -> dict[int, range]:
        """Axis -> indices taken, for the sliced axes whose size is known."""
        return {a % len(shape): slice_range(s, e, t, shape[a])
                for s, e, a, t in zip(attrs["starts"], attrs["ends"], attrs["axes"], attrs["steps"])
                if isinstance(shape[a], int)}

    @classmethod
    def per_sample(cls, attrs, rank):
        return all(a % rank != 0 for a in attrs["axes"]) if rank else False

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        axes = [_axis(a, x.rank, "Slice's axis", x) for a in attrs["axes"]]
        if len(set(axes)) != len(axes):
            raise ShapeError(f"Slice's axes {list(attrs['axes'])} repeat an axis of {x.describe()}")
        if 0 in attrs["steps"]:
            raise ShapeError(f"Slice's steps {list(attrs['steps'])} hold a 0")
        shape = list(x.shape)
        for start, end, axis, step in zip(attrs["starts"], attrs["ends"], axes, attrs["steps"]):
            if isinstance(shape[axis], int):
                shape[axis] = len(slice_range(start, end, step, shape[axis]))
            elif not (start == 0 and step == 1 and end >= INT64_MAX // 2):
                raise ShapeError(f"Slice [{start}:{end}:{step}] of the symbolic axis {axis} of {x.describe()}: only "
                                 f"the whole of a symbolic axis can be taken")
        return TensorType(tuple(shape))


class IndexSelect(Layer):
    """Entries at constant indices along one axis: ``torch.index_select(x, dim, index)`` for a list of
    indices (the axis kept, its length the number of indices), ``x.select(dim, index)`` / ``x[:, i]`` for one
    index (the axis removed). ONNX's Gather with a constant index of rank 0 or 1.

    Args:
        dim: the axis indexed; negative counts from the last.
        index: an int (the axis is removed) or a sequence of ints (the axis kept); negative indices count from
            the end, as ONNX allows.
    """
    prefix = "gather"
    linear = True

    @classmethod
    def example(cls):
        return cls(1, (2, 0, -1)), [(None, 3, 4, 5)]

    def __init__(self, dim: int, index):
        index = int(index) if np.ndim(index) == 0 else as_ints(np.asarray(index).reshape(-1))
        super().__init__(dim=int(dim), index=index)

    @classmethod
    def per_sample(cls, attrs, rank):
        return rank > 0 and attrs["dim"] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        axis = _axis(attrs["dim"], x.rank, "IndexSelect's dim", x)
        size, index = x.shape[axis], attrs["index"]
        if not isinstance(size, int):
            raise ShapeError(f"IndexSelect on the symbolic axis {axis} of {x.describe()}: its size is not known")
        indices = index if isinstance(index, tuple) else (index,)
        if any(not -size <= i < size for i in indices):
            raise ShapeError(f"index {index} out of range for axis {axis} of {x.describe()}")
        if isinstance(index, tuple):
            return TensorType((*x.shape[:axis], len(index), *x.shape[axis + 1:]))
        return TensorType((*x.shape[:axis], *x.shape[axis + 1:]))


__all__ = ["Slice", "IndexSelect", "split", "chunk"]


# --- PyTorch's split and chunk: one Slice per piece ------------------------------------------------------------
def split(graph, x, split_size_or_sections, dim: int = 0, name: str | None = None) -> list:
    """``torch.split(x, split_size_or_sections, dim)`` in ``graph``: pieces of ``split_size_or_sections``
    entries (the last one smaller), or of the listed sizes, which must add up to the axis; one Slice each
    (named ``<name>_<i>`` when ``name`` is given). Returns the pieces' values."""
    shape = graph.type_of(x).shape
    size = shape[dim % len(shape)] if -len(shape) <= dim < len(shape) else None
    if not isinstance(size, int):
        raise ShapeError(f"split: axis {dim} of {x} must exist and have a static size")
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step < 1:
            raise ValueError(f"split: split_size must be >= 1, got {step}")
        sizes = [min(step, size - start) for start in range(0, size, step)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != size or min(sizes, default=0) < 0:
            raise ShapeError(f"split: sections {sizes} do not add up to axis {dim} of size {size}")
    pieces, start = [], 0
    for index, length in enumerate(sizes):
        layer = Slice((start,), (start + length,), (dim,))
        pieces.append(graph.apply(layer, x, name=None if name is None else f"{name}_{index}"))
        start += length
    return pieces


def chunk(graph, x, chunks: int, dim: int = 0, name: str | None = None) -> list:
    """``torch.chunk(x, chunks, dim)`` in ``graph``: pieces of ceil(size / chunks) entries, the last one
    smaller (so possibly fewer than ``chunks`` pieces, as in PyTorch)."""
    shape = graph.type_of(x).shape
    size = shape[dim % len(shape)] if -len(shape) <= dim < len(shape) else None
    if not isinstance(size, int) or chunks < 1:
        raise ShapeError(f"chunk: needs chunks >= 1 and a static axis {dim} of {x}")
    return split(graph, x, max(1, -(-size // chunks)), dim, name)


# --- ONNX export -----------------------------------------------------------------------------------------------
def split_pieces(graph, node) -> list[tuple[int, str | None]] | None:
    """When ``node`` (a Slice) is one of two or more step-1 Slices of one static axis of the same value whose
    pieces do not overlap and are not empty: [(length, name or None), ...] along the whole axis, None for a
    gap no Slice takes (a Split that an optimization left an unread output of); else None. Such Slices are
    written back as one ONNX Split (one node where an import made one Slice per output)."""
    a = node.attrs
    if len(a["axes"]) != 1 or a["steps"] != (1,):
        return None
    source = node.inputs[0]
    shape = graph.type_of(source).shape
    axis = a["axes"][0] % len(shape)
    if not isinstance(shape[axis], int):
        return None
    pieces = []
    for name in graph.users(source):
        user = graph.node(name)
        if user.op != "Slice" or len(user.attrs["axes"]) != 1 or user.attrs["steps"] != (1,) \
                or user.attrs["axes"][0] % len(shape) != axis:
            continue
        taken = slice_range(user.attrs["starts"][0], user.attrs["ends"][0], 1, shape[axis])
        pieces.append((taken.start, len(taken), name))
    pieces.sort()
    if len(pieces) < 2 or any(length == 0 for _, length, _ in pieces):
        return None
    layout, position = [], 0
    for start, length, name in pieces:
        if start < position:
            return None                                            # overlapping pieces: Slices
        if start > position:
            layout.append((start - position, None))
        layout.append((length, name))
        position = start + length
    if position < shape[axis]:
        layout.append((shape[axis] - position, None))
    return layout


@exports("Slice")
def _slice_to_onnx(e, n):
    """One Slice, or, for pieces of one axis, one Split writing every piece (emitted when the first piece is
    reached; the others are then already written; a gap is an output nothing reads)."""
    pieces = split_pieces(e.graph, n)
    if pieces is None:
        a = n.attrs
        e.emit(n, "Slice", [n.inputs[0], e.int64(n, "starts", a["starts"]), e.int64(n, "ends", a["ends"]),
                            e.int64(n, "axes", a["axes"]), e.int64(n, "steps", a["steps"])])
        return
    names = [name for _, name in pieces if name is not None]
    if any(name in node.output for node in e.nodes for name in names):
        return
    from onnx import helper
    axis = n.attrs["axes"][0] % len(e.graph.type_of(n.inputs[0]).shape)
    split = e.int64(n, "split", [length for length, _ in pieces])
    outputs = [name if name is not None else e.unique(f"{names[0]}/unused") for _, name in pieces]
    e.nodes.append(helper.make_node("Split", [n.inputs[0], split], outputs, name=e.unique(f"{names[0]}/Split"),
                                    axis=axis))


@exports("IndexSelect")
def _index_select_to_onnx(e, n):
    e.emit(n, "Gather", [n.inputs[0], e.int64(n, "index", n.attrs["index"])], axis=n.attrs["dim"])


# --- ONNX import -----------------------------------------------------------------------------------------------
# Slice and Gather on computed values (on constants the importer folds them); a Split of N outputs becomes
# N Slice nodes, one per output, each named after it.
def constant_ints(imp, node, index: int, what: str):
    if len(node.input) <= index or not node.input[index]:
        return None
    return [int(v) for v in imp.const(node.input[index], what).reshape(-1)]


@imports("Slice")
def _slice(imp, node):
    """starts/ends/axes: attributes before opset 10; inputs (with steps) from 10, which must be constants."""
    x = imp.value(node.input[0])
    if imp.opset < 10:
        a = imp.attrs(node)
        starts, ends = list(a.get("starts", ())), list(a.get("ends", ()))
        axes, steps = a.get("axes"), None
    else:
        starts, ends = constant_ints(imp, node, 1, "starts"), constant_ints(imp, node, 2, "ends")
        axes, steps = constant_ints(imp, node, 3, "axes"), constant_ints(imp, node, 4, "steps")
    try:
        layer = Slice(starts, ends, axes, steps)
    except ValueError as error:
        raise ShapeError(str(error)) from None
    imp.add(node, "Slice", [x], dict(layer.attrs))


@imports("Gather")
def _gather(imp, node):
    """A constant index of rank 0 (the axis removed) or 1 (kept): IndexSelect."""
    from ..onnx import batch_index
    x = imp.value(node.input[0])
    if isinstance(imp.consts.get(node.input[1]), batch_index.BatchIndex):   # as_strided on the symbolic batch
        return batch_index.gather(imp, node, imp.consts[node.input[1]])
    index = imp.const(node.input[1], "indices")
    if index.ndim > 1:
        raise Unsupported(f"indices of rank {index.ndim} (only a scalar or a list)")
    value = int(index) if index.ndim == 0 else [int(i) for i in index]
    imp.add(node, "IndexSelect", [x], dict(IndexSelect(int(imp.attrs(node).get("axis", 0)), value).attrs))


@imports("Split")
def _split(imp, node):
    """ONNX Split as one Slice per output: sizes from the ``split`` attribute (before 13) or input (from 13),
    or equal pieces (``num_outputs`` from 18, else the number of outputs; the last smaller when uneven)."""
    from ..onnx.safety import check_node_sizes
    x = imp.value(node.input[0])
    a = imp.attrs(node)
    shape = imp.shape(x)
    axis = int(a.get("axis", 0))
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"Split's axis {axis} is out of range for a tensor of rank {len(shape)}")
    axis %= len(shape)
    size, count = shape[axis], len(node.output)
    if "num_outputs" in a and int(a["num_outputs"]) != count:
        raise ShapeError(f"Split: num_outputs {a['num_outputs']} but {count} outputs")
    if not isinstance(size, int):
        raise Unsupported(f"a split of the symbolic axis {axis}")
    sizes = [int(s) for s in a["split"]] if imp.opset < 13 and "split" in a else constant_ints(imp, node, 1, "split")
    if sizes is None:
        chunk_size = -(-size // count)
        sizes = [min(chunk_size, size - start) for start in range(0, size, chunk_size)] if chunk_size else []
    if len(sizes) != count or sum(sizes) != size or min(sizes, default=0) < 0:
        raise ShapeError(f"Split: pieces {sizes} for {count} outputs do not cut axis {axis} of size {size}")
    start = 0
    for name, length in zip(node.output, sizes):
        if name:
            imp.graph.add("Slice", [x], dict(Slice((start,), (start + length,), (axis,)).attrs), name=name)
            check_node_sizes(imp.graph, name)
            imp.values.add(name)
        start += length


# --- gradients -------------------------------------------------------------------------------------------------
# Each op reads x[..., index[j], ...] along some axes, so ∂x adds ∂y back along each of them (GatherGrad;
# gather_back serves repeat.py's Tile too). A symbolic axis is never gathered: Slice takes it whole.
from ..autodiff.registry import gradient  # noqa: E402
from . import tensor_gradients  # noqa: E402,F401  (GatherGrad)


def gather_back(b, node, dy: str, maps: dict) -> str:
    """∂y added back along each axis of ``maps`` (axis -> (indices read, the input's length))."""
    for axis, (index, size) in sorted(maps.items()):
        dy = b.add(node, f"x.axis{axis}", "GatherGrad", [dy], axis=axis, index=tuple(index), size=size)
    return dy


@gradient("Slice")
def _slice_gradient(b, node, dy):
    shape = b.shape(node.inputs[0])
    maps = {axis: (taken, shape[axis]) for axis, taken in Slice.ranges(node.attrs, shape).items()
            if list(taken) != list(range(shape[axis]))}
    return {0: gather_back(b, node, dy, maps)}


@gradient("IndexSelect")
def _index_select_gradient(b, node, dy):
    shape = b.shape(node.inputs[0])
    axis, index = node.attrs["dim"] % len(shape), node.attrs["index"]
    if not isinstance(index, tuple):                       # the axis was removed: put it back, of length 1
        dy = b.add(node, "x.kept", "Reshape", [dy], shape=(*shape[:axis], 1, *shape[axis + 1:]))
        index = (index,)
    return {0: gather_back(b, node, dy, {axis: ([i % shape[axis] for i in index], shape[axis])})}
