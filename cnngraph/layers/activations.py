"""Element-wise activations and Softmax: the non-linearities that stop a fold of linear layers."""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import Layer


class _Elementwise(Layer):
    """Output type = input type. (Names starting with "_" are bases, not registered ops.)"""
    batch_independent = True

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        return x.type


class ReLU(_Elementwise):
    fusable_activation = True
    idempotent = True
    prefix = "relu"

    def __init__(self):
        super().__init__()


class LeakyReLU(_Elementwise):
    fusable_activation = True
    prefix = "lrelu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__(negative_slope=float(negative_slope))


class ReLU6(_Elementwise):
    fusable_activation = True
    idempotent = True
    prefix = "relu6"

    def __init__(self):
        super().__init__()


class Sigmoid(_Elementwise):
    fusable_activation = True
    prefix = "sigmoid"

    def __init__(self):
        super().__init__()


class Tanh(_Elementwise):
    fusable_activation = True
    prefix = "tanh"

    def __init__(self):
        super().__init__()


class Softmax(Layer):
    prefix = "softmax"

    def __init__(self, axis: int = -1):
        super().__init__(axis=int(axis))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["axis"] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if not -x.rank <= attrs["axis"] < x.rank:
            raise ShapeError(f"axis {attrs['axis']} is out of range for {x.describe()}")
        return x.type
