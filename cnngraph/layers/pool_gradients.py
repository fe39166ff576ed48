"""Gradient ops of the 2-D pools (training graphs only; their rules are declared in pooling.py).

Max pooling routes ∂y to the first maximum of each window (PyTorch's choice among ties); average pooling
spreads ∂y/divisor over the window's taps; the global average spreads ∂y/(H·W) over the whole map. The 1-D and
3-D pools' ops generalise the first two (nd_gradients.py).
"""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import Layer, require_rank
from ..shapes import TensorType
from .pooling import AvgPool2d, MaxPool2d, infer_pool


class MaxPool2dGrad(Layer):
    """∂L/∂x of a MaxPool2d (training graphs only): inputs x (N, C, H, W), y (the pool's output) and dy (of
    y's shape), output of x's shape: each window's ∂y goes to its first maximum in row-major order.

    Args:
        attrs: the MaxPool2d's attributes (kernel_size, stride, pads, dilation, ceil_mode).
    """
    prefix = "dpool"
    arity = (3, 3)
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(**MaxPool2d(3, 2, 1, ceil_mode=True).attrs), [(None, 2, 5, 6), (None, 2, 3, 4), (None, 2, 3, 4)]

    def __init__(self, **attrs):
        super().__init__(**attrs)

    @classmethod
    def infer(cls, attrs, inputs):
        x, y, dy = inputs
        forward = infer_pool(attrs, [x])
        if forward.shape[1:] != y.shape[1:] or y.shape != dy.shape:
            raise ShapeError(f"y {y.describe()} and dy {dy.describe()} must be this pool's output {forward}")
        return x.type


class AvgPool2dGrad(Layer):
    """∂L/∂x of an AvgPool2d from ∂L/∂y (training graphs only): dy (N, C, H', W') → (N, C, H, W) with (H, W)
    given by ``input_size``.

    Args:
        attrs: the AvgPool2d's attributes (kernel_size, stride, pads, ceil_mode, count_include_pad) and
            input_size.
    """
    prefix = "dpool"
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(**dict(AvgPool2d(3, 2, 1, ceil_mode=True).attrs, input_size=(5, 6))), [(None, 2, 3, 4)]

    def __init__(self, **attrs):
        super().__init__(**attrs)

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        x = TensorType((dy.shape[0], dy.shape[1], *attrs["input_size"]))
        forward = infer_pool(attrs, [type(dy)(dy.name, x)])
        if forward.shape != dy.shape:
            raise ShapeError(f"dy {dy.describe()} is not this pool's output {forward}")
        return x


class GlobalAvgPool2dGrad(Layer):
    """∂L/∂x of a GlobalAvgPool2d (training graphs only): dy (N, C, 1, 1) → (N, C, H, W), each pixel dy/(H·W).

    Args:
        input_size: the forward input's (H, W).
    """
    prefix = "dgap"
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(input_size=(4, 5)), [(None, 3, 1, 1)]

    def __init__(self, input_size: tuple[int, int]):
        super().__init__(input_size=tuple(int(s) for s in input_size))

    @classmethod
    def infer(cls, attrs, inputs):
        require_rank(inputs, 4, "(N, C, 1, 1)")
        dy, = inputs
        if tuple(dy.shape[2:]) != (1, 1):
            raise ShapeError(f"expects dy (N, C, 1, 1), got {dy.describe()}")
        return TensorType((dy.shape[0], dy.shape[1], *attrs["input_size"]))
