"""Gradient ops of the 1-D and 3-D convolutions, the transposed convolutions, the N-D pools and the adaptive
pools (training graphs only; their rules are declared in conv.py, conv_transpose.py, pooling.py and
adaptive_pooling.py).

The input gradient of a convolution is a transposed convolution with the same weight, and the input gradient
of a transposed convolution is a convolution with it: those need no new op. What does:
  ConvNdGradWeight      ∂W of Conv1d/Conv3d, Σ over the batch of ∂y ⋆ x (a GEMM per group over N·positions);
                        with x and ∂y swapped, ∂W of ConvTranspose1d/3d;
  MaxPoolNdGrad         MaxPool2dGrad's rule (∂y to the first maximum of each window) for any rank;
  AvgPoolNdGrad         AvgPool2dGrad's (∂y/divisor over each window's taps) for any rank;
  AdaptiveAvgPoolGrad   ∂y times the transpose of each axis's averaging matrix;
  AdaptiveMaxPoolGrad   ∂y to the first maximum (row-major) of each adaptive window, as PyTorch.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import REGISTRY, Layer
from ..shapes import TensorType
from .conv import CONV_BY_RANK, Conv1d
from .pool_gradients import AvgPool2dGrad, MaxPool2dGrad
from .pooling import MaxPool1d

_CONV_KEYS = ("in_channels", "out_channels", "kernel_size", "stride", "pads", "dilation", "groups")


def conv_window_attrs(attrs) -> dict:
    """The attributes a convolution's gradient ops keep (no bias, no fused activation)."""
    return {k: attrs[k] for k in _CONV_KEYS}


class ConvNdGradWeight(Layer):
    """∂L/∂W of a Conv1d or Conv3d (any number of spatial axes) from its input x and ∂L/∂y, summed over the
    batch: inputs x (N, in_channels, *size) and dy (N, out_channels, *out), output the weight's shape
    (out_channels, in_channels / groups, *kernel_size).

    Args:
        attrs: the convolution's (in_channels, out_channels, kernel_size, stride, pads, dilation, groups).
    """
    prefix = "dconv_w"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls(**conv_window_attrs(Conv1d(4, 6, 3, stride=2, padding=1, groups=2).attrs)), [(None, 4, 7), (None, 6, 4)]

    def __init__(self, **attrs):
        super().__init__(**conv_window_attrs(attrs))

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        dims = len(attrs["kernel_size"])
        if dims not in CONV_BY_RANK:
            raise ShapeError(f"{dims} spatial axes: 1, 2 or 3 expected")
        forward = REGISTRY[CONV_BY_RANK[dims]].infer(dict(attrs, bias=False), [x])
        if tuple(forward.shape) != tuple(dy.shape):
            raise ShapeError(f"dy {dy.describe()} is not the output {forward} of this convolution of {x.describe()}")
        return TensorType((attrs["out_channels"], attrs["in_channels"] // attrs["groups"], *attrs["kernel_size"]))


class MaxPoolNdGrad(MaxPool2dGrad):
    """∂L/∂x of a MaxPool1d/2d/3d: inputs x (N, C, *size), y (the pool's output) and dy, output of x's shape;
    each window's ∂y goes to its first maximum in row-major order (PyTorch's choice among ties).

    Args:
        attrs: the pool's attributes (kernel_size, stride, pads, dilation, ceil_mode).
    """

    @classmethod
    def example(cls):
        return cls(**MaxPool1d(3, 2, 1, ceil_mode=True).attrs), [(None, 2, 6), (None, 2, 4), (None, 2, 4)]


class AvgPoolNdGrad(AvgPool2dGrad):
    """∂L/∂x of an AvgPool1d/2d/3d from ∂L/∂y: dy (N, C, *out) → (N, C, *input_size), ∂y/divisor to every tap
    of each window.

    Args:
        attrs: the pool's attributes (kernel_size, stride, pads, ceil_mode, count_include_pad) and input_size.
    """

    @classmethod
    def example(cls):
        from .pooling import AvgPool1d
        return cls(**dict(AvgPool1d(3, 2, 1, ceil_mode=True).attrs, input_size=(6,))), [(None, 2, 4)]


class AdaptiveAvgPoolGrad(Layer):
    """∂L/∂x of an adaptive average pool: dy (N, C, *out) → (N, C, *input_size); each cell gets the ∂y of
    every window holding it divided by that window's length (the transpose of the averaging, axis by axis).

    Args:
        input_size: the forward input's spatial size.
    """
    prefix = "dpool"
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls((5, 7)), [(None, 2, 3, 3)]

    def __init__(self, input_size):
        super().__init__(input_size=tuple(int(s) for s in input_size))

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        if dy.rank != 2 + len(attrs["input_size"]) or min(attrs["input_size"], default=0) < 1:
            raise ShapeError(f"dy {dy.describe()} and input_size {list(attrs['input_size'])} do not match")
        return TensorType((*dy.shape[:2], *attrs["input_size"]))


class AdaptiveMaxPoolGrad(Layer):
    """∂L/∂x of an adaptive max pool: inputs x (N, C, *size), y (the pool's output) and dy, output of x's
    shape; each window's ∂y goes to its first maximum in row-major order (PyTorch's choice among ties).
    No arguments."""
    prefix = "dpool"
    arity = (3, 3)
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(), [(None, 2, 5, 7), (None, 2, 3, 3), (None, 2, 3, 3)]

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        x, y, dy = inputs
        if x.rank < 3 or y.shape != dy.shape or y.rank != x.rank or tuple(y.shape[:2]) != tuple(x.shape[:2]):
            raise ShapeError(f"y {y.describe()} and dy {dy.describe()} are not a pooling of {x.describe()}")
        return x.type

