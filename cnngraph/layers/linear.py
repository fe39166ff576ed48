"""Linear (fully connected), as PyTorch defines it: y = x · Wᵀ + b with weight (out, in) over the last axis."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..init import fan_in_uniform
from ..layer import Layer, require_activation
from ..onnx.mapping import exports
from ..shapes import TensorType, product


class Linear(Layer):
    """Fully connected layer as ``torch.nn.Linear``: y = x · weightᵀ + bias over the last axis; input
    (..., in_features), output (..., out_features). A Flatten usually comes before it in a CNN.

    Args:
        in_features: size of the input's last axis.
        out_features: size of the output's last axis.
        bias: whether the layer has a bias (default True).

    Parameters (PyTorch's layout, float32):
        weight: (out_features, in_features).
        bias: (out_features,), when ``bias``.
    """
    batch_independent = True
    prefix = "fc"
    linear = True
    weighted = True
    accepts_epilogue = True

    @classmethod
    def example(cls):
        return cls(5, 3), [(None, 5)]

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        if in_features < 1 or out_features < 1:
            raise ValueError("Linear: in_features and out_features must be >= 1")
        super().__init__(in_features=int(in_features), out_features=int(out_features), bias=bool(bias))

    @classmethod
    def param_shapes(cls, attrs):
        shapes = {"weight": (attrs["out_features"], attrs["in_features"])}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_features"],)
        return shapes

    @classmethod
    def init_params(cls, attrs):
        return {name: fan_in_uniform(shape, attrs["in_features"]) for name, shape in cls.param_shapes(attrs).items()}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        require_activation(attrs)
        if x.rank < 1:
            raise ShapeError(f"expects an input with at least one axis, got {x.describe()}")
        if x.shape[-1] != attrs["in_features"]:
            hint = " (is a Flatten missing?)" if x.rank > 2 else ""
            raise ShapeError(f"expects {attrs['in_features']} input features, got {x.shape[-1]} "
                             f"from {x.describe()}{hint}")
        return TensorType((*x.shape[:-1], attrs["out_features"]))

    @classmethod
    def summary(cls, attrs):
        return f"{attrs['in_features']}→{attrs['out_features']}"

    @classmethod
    def macs(cls, attrs, inputs, output):
        rows = product(output.shape[1:-1]) if output.rank > 2 else 1
        rows = rows if isinstance(rows, int) else 1
        return rows * attrs["in_features"] * attrs["out_features"]


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Linear")
def _linear_to_onnx(e, n):
    """Gemm(transB) for 2-D inputs; else MatMul on the last axis with the transposed weight [+ Add]."""
    x, bias = n.inputs[0], n.attrs["bias"]
    if len(e.graph.type_of(x).shape) == 2:                       # y = x·Wᵀ + b in one Gemm
        weight = e.param(n, "weight")
        e.emit(n, "Gemm", [x, weight] + ([e.param(n, "bias")] if bias else []), transB=1)
        return
    weight_t = e.param(n, "weight_t", np.ascontiguousarray(n.params["weight"].T))
    if not bias:
        e.emit(n, "MatMul", [x, weight_t])
        return
    product = e.helper_node(n, "MatMul", [x, weight_t])
    e.emit(n, "Add", [product, e.param(n, "bias")])
