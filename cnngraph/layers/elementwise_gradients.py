"""The gradient ops of the modern activations and the element-wise math (training graphs only).

Their rules are declared in the family modules (modern_activations.py, math_ops.py); the ops live here so those
modules stay one concept each. Derivatives that the output cannot give (GELU, SiLU, Mish, Hardswish, Softplus
with its threshold, the ELU family with any alpha, Abs, Erf) are read from the INPUT x: the backward pass keeps x.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import from_trait, gradient
from ..errors import ShapeError
from ..layer import Layer
from ..shapes import TensorType
from .activations import _Elementwise, derivative_source
from .structure import broadcast_shape


def _same_shapes(first, second):
    if first.shape != second.shape:
        raise ShapeError(f"the two inputs must have the same shape, got {first.describe()} and {second.describe()}")


class ElementwiseGrad(_Elementwise):
    """∂L/∂x of an element-wise function from its input x and ∂L/∂y: inputs (x, dy), output of dy's shape.
    At a kink (Abs at 0, Hardswish at ±3) the derivative is PyTorch's choice (Abs: sign(0) = 0).

    Args:
        function: the function differentiated, ``{"op": "GELU", "attrs": {...}}`` (an op with derivative_from =
            "input", or LeakyReLU with a negative slope).
    """
    prefix = "dfun"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls({"op": "GELU", "attrs": {"approximate": "none"}}), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, function: dict):
        super().__init__(function={"op": function["op"], "attrs": dict(function.get("attrs", {}))})

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        if derivative_source(attrs["function"]) != "input":
            raise ShapeError(f"no derivative from the input for {attrs['function'].get('op')!r}")
        _same_shapes(x, dy)
        return dy.type


class LogSoftmaxGrad(Layer):
    """∂L/∂x of LogSoftmax from its output y and ∂L/∂y: dx = dy − exp(y)·Σ_dim dy. Inputs (y, dy).

    Args:
        dim: the LogSoftmax's axis (default −1).
    """
    prefix = "dlogsoftmax"
    arity = (2, 2)
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(1), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, dim: int = -1):
        super().__init__(dim=int(dim))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["dim"] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        y, dy = inputs
        _same_shapes(y, dy)
        if not -dy.rank <= attrs["dim"] < dy.rank:
            raise ShapeError(f"dim {attrs['dim']} is out of range for {dy.describe()}")
        return dy.type


class PReLUGrad(Layer):
    """∂L/∂x (``wrt="x"``: dy where x > 0, slope·dy elsewhere, as PyTorch) or ∂L/∂weight (``wrt="weight"``:
    Σ dy·min(x, 0) over every axis but the channel axis 1, or over all when one slope is shared) of a PReLU.
    Inputs (x, dy); parameter ``weight`` (num_parameters,), the PReLU's slopes.

    Args:
        num_parameters: the PReLU's number of slopes (1 or the channels of axis 1).
        wrt: "x" or "weight".
    """
    prefix = "dprelu"
    arity = (2, 2)
    training_only = True
    batch_independent = True
    WRT = ("x", "weight")

    @classmethod
    def example(cls):
        return cls(3, "weight"), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, num_parameters: int = 1, wrt: str = "x"):
        if wrt not in self.WRT:
            raise ValueError(f"PReLUGrad: wrt must be one of {self.WRT}, got {wrt!r}")
        super().__init__(num_parameters=int(num_parameters), wrt=wrt)

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["wrt"] == "x"

    @classmethod
    def param_shapes(cls, attrs):
        return {"weight": (attrs["num_parameters"],)}

    @classmethod
    def init_params(cls, attrs):
        return {"weight": np.full(attrs["num_parameters"], 0.25, np.float32)}

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        _same_shapes(x, dy)
        count = attrs["num_parameters"]
        if count != 1 and (x.rank < 2 or x.shape[1] != count):
            raise ShapeError(f"{count} slopes need an input (N, {count}, ...), got {x.describe()}")
        return dy.type if attrs["wrt"] == "x" else TensorType((count,))


class ExtremumGrad(Layer):
    """∂L/∂(operand ``index``) of a variadic Max or Min, before summing down to the operand's shape: dy where
    that operand is the FIRST to hold the extremum y (a subgradient: a tie gives all of dy to the earliest
    operand, as MaxPool2d's first maximum), 0 elsewhere. Inputs (y, dy, x0, x1, ...); output of dy's shape.

    Args:
        index: which operand's gradient (0-based).
    """
    prefix = "dextremum"
    arity = (3, None)
    training_only = True
    batch_independent = True

    @classmethod
    def example(cls):
        return cls(1), [(None, 3, 4, 5), (None, 3, 4, 5), (None, 3, 4, 5), (4, 1)]

    def __init__(self, index: int = 0):
        super().__init__(index=int(index))

    @classmethod
    def infer(cls, attrs, inputs):
        y, dy, *operands = inputs
        _same_shapes(y, dy)
        if not 0 <= attrs["index"] < len(operands):
            raise ShapeError(f"index {attrs['index']} out of range for {len(operands)} operands")
        if tuple(broadcast_shape(operands)) != tuple(dy.shape):
            raise ShapeError(f"the operands do not broadcast to {dy.describe()}")
        return dy.type


@gradient(from_trait("input"))
def _from_input_gradient(b, node, dy):
    """Every op with derivative_from = "input" (GELU, SiLU, Abs, ...): dy·f'(x), x kept for the backward pass."""
    return {0: b.add(node, "x", "ElementwiseGrad", [node.inputs[0], dy], function=b.activation_of(node))}
