"""Repeating a computed tensor: Expand (broadcast to a larger shape) and Tile (whole copies along axes).

Both are affine in their input (``linear``) and keep a symbolic batch symbolic; tiling the batch is refused
for training (its size is unknown when the gradient graph is built). Their gradients add ∂y back onto the
input: Expand's sums ∂y down to x's shape, Tile's gathers it back along each tiled axis (slicing.gather_back).
"""
from __future__ import annotations

from ..autodiff.registry import gradient
from ..errors import ExportError, ShapeError
from ..layer import Layer, Operand
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..shapes import TensorType, product
from .slicing import as_ints, constant_ints, gather_back
from .structure import broadcast_shape


class Expand(Layer):
    """Broadcast to a larger shape, as ``torch.broadcast_to`` / ``Tensor.expand`` (ONNX's Expand): the input
    and ``shape`` broadcast against each other; a 1 in ``shape`` keeps the input's size (PyTorch writes -1,
    read here as 1).

    Args:
        shape: the target shape; an entry may name a symbolic dim (the batch), equal to the input's there.
    """
    prefix = "expand"
    linear = True

    @classmethod
    def example(cls):
        return cls((1, 3, 4, 5)), [(None, 3, 1, 5)]

    def __init__(self, shape):
        super().__init__(shape=tuple(d if isinstance(d, str) else 1 if int(d) == -1 else int(d) for d in shape))

    @classmethod
    def per_sample(cls, attrs, rank):
        shape = attrs["shape"]
        return len(shape) < rank or (len(shape) == rank and rank > 0 and shape[0] == 1)

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if any(isinstance(d, int) and d < 0 for d in attrs["shape"]):
            raise ShapeError(f"Expand's shape {list(attrs['shape'])} has a negative dim")
        target = Operand("shape", TensorType(tuple(attrs["shape"])))
        return TensorType(broadcast_shape([x, target]))


class Tile(Layer):
    """Repeat the whole tensor along each axis, as ``torch.tile(x, dims)`` (ONNX's Tile): axis i of the output
    is ``dims[i]`` copies of axis i of the input, one after another.

    Args:
        dims: repetitions per axis, each >= 0; fewer than the input's rank are padded with 1s in front
            (PyTorch's rule).
    """
    prefix = "tile"
    linear = True

    @classmethod
    def example(cls):
        return cls((1, 2, 1, 3)), [(None, 3, 4, 5)]

    def __init__(self, dims):
        super().__init__(dims=as_ints(dims))

    @classmethod
    def repeats(cls, attrs, rank: int) -> tuple[int, ...]:
        dims = attrs["dims"]
        return (1,) * (rank - len(dims)) + tuple(dims)

    @classmethod
    def per_sample(cls, attrs, rank):
        return rank > 0 and cls.repeats(attrs, rank)[0] == 1

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        dims = attrs["dims"]
        if len(dims) > x.rank or min(dims, default=0) < 0:
            raise ShapeError(f"Tile's dims {list(dims)} must be >= 0, at most one per axis of {x.describe()}")
        repeats = cls.repeats(attrs, x.rank)
        return TensorType(tuple(d if r == 1 else product([r, d]) for r, d in zip(repeats, x.shape)))


__all__ = ["Expand", "Tile"]


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Expand")
def _expand_to_onnx(e, n):
    """A symbolic dim of the target is written as 1 where the input has that dim (broadcasting keeps it)."""
    shape, target = e.graph.type_of(n.inputs[0]).shape, n.attrs["shape"]
    aligned = (None,) * (len(target) - len(shape)) + tuple(shape)
    written = []
    for dim, own in zip(target, aligned):
        if isinstance(dim, str) and dim != own:
            raise ExportError(f"{n.label()}: the target dim {dim!r} is not the input's: its size is not known here")
        written.append(1 if isinstance(dim, str) else dim)
    e.emit(n, "Expand", [n.inputs[0], e.int64(n, "shape", written)])


@exports("Tile")
def _tile_to_onnx(e, n):
    rank = len(e.graph.type_of(n.inputs[0]).shape)
    e.emit(n, "Tile", [n.inputs[0], e.int64(n, "repeats", Tile.repeats(n.attrs, rank))])


# --- ONNX import -----------------------------------------------------------------------------------------------
@imports("Expand")
def _expand(imp, node):
    """A constant target shape; a symbolic entry (the batch, from Shape) stays symbolic."""
    x = imp.value(node.input[0])
    if node.input[1] not in imp.consts:
        raise Unsupported("the target shape must be a constant (or computed from shapes)")
    target = [d if isinstance(d, str) else int(d) for d in imp.consts[node.input[1]].reshape(-1)]
    imp.add(node, "Expand", [x], dict(Expand(target).attrs))


@imports("Tile")
def _tile(imp, node):
    x = imp.value(node.input[0])
    repeats = constant_ints(imp, node, 1, "repeats")
    if len(repeats) != len(imp.shape(x)):
        raise ShapeError(f"Tile: {len(repeats)} repeats for a tensor of rank {len(imp.shape(x))}")
    imp.add(node, "Tile", [x], dict(dims=tuple(repeats)))


# --- gradients -------------------------------------------------------------------------------------------------
@gradient("Tile")
def _tile_gradient(b, node, dy):
    from ..errors import GraphError
    shape = b.shape(node.inputs[0])
    maps = {}
    for axis, (r, d) in enumerate(zip(Tile.repeats(node.attrs, len(shape)), shape)):
        if r == 1:
            continue
        if not isinstance(d, int):
            raise GraphError(f"{node.label()}: no gradient rule for a Tile of the symbolic axis {axis}")
        maps[axis] = ([j % d for j in range(r * d)], d)
    return {0: gather_back(b, node, dy, maps)}


@gradient("Expand")
def _expand_gradient(b, node, dy):
    from .structure import reduce_to
    return {0: reduce_to(b, node, "x", dy, node.inputs[0])}
