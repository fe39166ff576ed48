"""The gradient ops of the tensor ops (training graphs only): what moves values between positions needs its
moves undone, and what picks an extremum needs to know where it was.

  GatherGrad     one axis of a gather added back: the gradient of Slice (any step), IndexSelect, Tile and the
                 reflect and edge Pads, one axis at a time (each of them reads x[..., index[j], ...]);
  ReduceGrad     ReduceMax / ReduceMin / ReduceL2 from x, y and ∂y;
  UpsampleGrad   the transpose of the resize's per-axis interpolation (nearest, linear, cubic).

Their rules are declared with the ops they differentiate (slicing.py, padding.py, reductions.py,
resample.py); the ops live here so those modules stay one concept each.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import Layer
from ..shapes import TensorType
from .resample import Upsample


class GatherGrad(Layer):
    """∂L/∂x of a gather along one axis: the output has length ``size`` on ``axis`` and
    out[..., i, ...] = Σ over j with index[j] = i of dy[..., j, ...] (0 where no j reads i).

    Args:
        axis: the axis gathered along (static in dy, of length len(index)).
        index: the input position each position of dy was read from, each in [0, size).
        size: the input's length on that axis.
    """
    prefix = "dgather"
    training_only = True

    @classmethod
    def example(cls):
        return cls(1, (2, 0, 0, 1), 3), [(None, 4, 5)]

    def __init__(self, axis: int, index, size: int):
        super().__init__(axis=int(axis), index=tuple(int(i) for i in index), size=int(size))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["axis"] % rank != 0 if rank else False

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        if not -dy.rank <= attrs["axis"] < dy.rank:
            raise ShapeError(f"axis {attrs['axis']} is out of range for {dy.describe()}")
        axis = attrs["axis"] % dy.rank
        if dy.shape[axis] != len(attrs["index"]):
            raise ShapeError(f"{len(attrs['index'])} indices for axis {axis} of {dy.describe()}")
        if any(not 0 <= i < attrs["size"] for i in attrs["index"]):
            raise ShapeError(f"an index of {list(attrs['index'])} is outside [0, {attrs['size']})")
        return TensorType((*dy.shape[:axis], attrs["size"], *dy.shape[axis + 1:]))


class ReduceGrad(Layer):
    """∂L/∂x of ReduceMax, ReduceMin or ReduceL2 from the input x, the output y and ∂L/∂y (inputs (x, y, dy)):
    max/min split ∂y evenly among the elements equal to the extremum (PyTorch's amax/amin; torch.max(dim)
    would pick one index instead), L2 gives ∂y·x/y (0 where y = 0, as PyTorch's vector_norm).

    Args:
        how: "max", "min" or "l2".
        axes: the reduction's axes (empty: all).
        keepdims: the reduction's keepdims.
    """
    prefix = "dreduce"
    arity = (3, 3)
    training_only = True
    HOW = ("max", "min", "l2")

    @classmethod
    def example(cls):
        return cls("max", (1, -1), False), [(None, 3, 4, 5), (None, 4), (None, 4)]

    def __init__(self, how: str, axes: tuple = (), keepdims: bool = True):
        if how not in self.HOW:
            raise ValueError(f"ReduceGrad: how must be one of {self.HOW}, got {how!r}")
        super().__init__(how=how, axes=tuple(int(a) for a in axes), keepdims=bool(keepdims))

    @classmethod
    def per_sample(cls, attrs, rank):
        return bool(attrs["axes"]) and all(a % rank != 0 for a in attrs["axes"])

    @classmethod
    def infer(cls, attrs, inputs):
        from .reductions import ReduceMax
        x, y, dy = inputs
        reduced = ReduceMax.infer({"axes": attrs["axes"], "keepdims": attrs["keepdims"]}, [x])
        if tuple(y.shape) != tuple(reduced.shape) or tuple(dy.shape) != tuple(reduced.shape):
            raise ShapeError(f"y {y.describe()} and dy {dy.describe()} are not the reduction {reduced} of {x.describe()}")
        return x.type


class UpsampleGrad(Layer):
    """∂L/∂x of an Upsample: dy (N, C, *output size) → (N, C, *input_size), each spatial axis by the transpose
    of the forward's interpolation (a nearest output cell sends its gradient to the cell it copied, a linear or
    cubic one to its taps, by their weights).

    Args:
        input_size: the forward input's spatial size.
        the Upsample's attributes (size, scale_factor, mode, coordinate_transformation_mode, nearest_mode).
    """
    prefix = "dupsample"
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        layer = Upsample(scale_factor=2, mode="bilinear")
        return cls(input_size=(4, 5), **layer.attrs), [(None, 3, 8, 10)]

    def __init__(self, input_size, **attrs):
        super().__init__(input_size=tuple(int(s) for s in input_size), **attrs)

    @classmethod
    def forward_attrs(cls, attrs) -> dict:
        return {k: v for k, v in attrs.items() if k != "input_size"}

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        shape = (*dy.shape[:2], *attrs["input_size"])
        forward = Upsample.infer(cls.forward_attrs(attrs), [type(dy)(dy.name, TensorType(shape))])
        if tuple(forward.shape[2:]) != tuple(dy.shape[2:]) or dy.rank != len(shape):
            raise ShapeError(f"dy {dy.describe()} is not the output {forward} of this Upsample of {shape}")
        return TensorType(shape)
