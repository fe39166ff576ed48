"""Linear (fully connected), as PyTorch defines it: y = x · Wᵀ + b with weight (out, in) over the last axis."""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import gradient
from ..errors import OnnxImportError, ShapeError
from ..init import fan_in_uniform
from ..layer import Layer, require_activation
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..shapes import TensorType, product
from .activations import activation_gradient


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
    """Gemm(transB) for 2-D inputs; else MatMul on the last axis with the transposed weight [+ Add, unless the
    bias is zero]."""
    x, bias = n.inputs[0], n.attrs["bias"]
    if len(e.graph.type_of(x).shape) == 2:                       # y = x·Wᵀ + b in one Gemm
        weight = e.param(n, "weight")
        e.emit(n, "Gemm", [x, weight] + ([e.param(n, "bias")] if bias else []), transB=1)
        return
    weight_t = e.param(n, "weight_t", np.ascontiguousarray(n.params["weight"].T))
    if not bias or not n.params["bias"].any():                   # x + 0 is x: no Add for a zero bias
        e.emit(n, "MatMul", [x, weight_t])
        return
    product = e.helper_node(n, "MatMul", [x, weight_t])
    e.emit(n, "Add", [product, e.param(n, "bias")])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.



@imports("Gemm")
def _gemm(imp, node):
    """alpha·A'·B' + beta·C: a Linear when B (and C) are constants, else MatMul and friends."""
    a = imp.attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if not (np.isfinite(alpha) and np.isfinite(beta)):      # alpha·(A·B) is not A·(alpha·B) for infinities
        raise Unsupported(f"alpha {alpha} and beta {beta} must be finite")
    x = imp.value(node.input[0])
    if len(imp.shape(x)) != 2:
        raise Unsupported("the input must be 2-D")
    if a.get("transA", 0):
        x = imp.add_step(node, "Transpose", [x], dict(perm=(1, 0)))
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.input[1] in imp.consts:
        b = imp.const(node.input[1], "B")
        if b.ndim != 2:
            raise OnnxImportError(f"B ({node.input[1]!r}) has shape {list(b.shape)}; Gemm takes a matrix")
        weight = b if a.get("transB", 0) else b.T
        weight = weight if alpha == 1.0 else weight * np.float32(alpha)
        out = int(weight.shape[0])
        bias = None
        if c is not None and c in imp.consts:
            constant = imp.const(c, "C")
            if constant.size in (1, out) and (constant.ndim < 2 or constant.shape[0] == 1):
                bias, c = np.broadcast_to(constant.reshape(-1), (out,)) * np.float32(beta), None
        params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        attrs = dict(in_features=int(weight.shape[1]), out_features=out, bias=bias is not None)
        if c is None:
            imp.add(node, "Linear", [x], attrs, params)
            return
        product = imp.add_step(node, "Linear", [x], attrs, params)
    else:
        b = imp.value(node.input[1])
        if a.get("transB", 0):
            b = imp.add_step(node, "Transpose", [b], dict(perm=(1, 0)))
        product = imp.add_step(node, "MatMul", [x, b])
        if alpha != 1.0:
            product = imp.add_step(node, "Mul", [product, _scalar(imp, node, "alpha", alpha)])
        if c is None:
            imp.add(node, "Identity", [product])
            return
    c_value = imp.operand(c)
    if beta != 1.0:
        c_value = imp.add_step(node, "Mul", [c_value, _scalar(imp, node, "beta", beta)])
    imp.add(node, "Add", [product, c_value], dict(broadcast=True))


def _scalar(imp, node, key: str, value: float) -> str:
    return imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.array(value, np.float32)))


# --- gradients -------------------------------------------------------------------------------------------------
# y = x·Wᵀ + b  =>  ∂x = ∂y·W (LinearGradInput), ∂W = ∂yᵀ·x over all leading axes (LinearGradWeight),
# ∂b = Σ ∂y over the leading axes: two GEMMs and a sum.
class LinearGradInput(Layer):
    """∂L/∂x of a Linear from ∂L/∂y (training graphs only): dy (..., out_features) → (..., in_features).

    Args: the Linear's in_features and out_features.
    Parameters: weight, the Linear's (out_features, in_features).
    """
    prefix = "dfc_x"
    training_only = True

    @classmethod
    def example(cls):
        return cls(in_features=5, out_features=3), [(None, 3)]

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features=int(in_features), out_features=int(out_features))

    @classmethod
    def param_shapes(cls, attrs):
        return {"weight": (attrs["out_features"], attrs["in_features"])}

    @classmethod
    def init_params(cls, attrs):
        return Linear.init_params(dict(attrs, bias=False))

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        if dy.rank < 1 or dy.shape[-1] != attrs["out_features"]:
            raise ShapeError(f"expects dy with {attrs['out_features']} features, got {dy.describe()}")
        return TensorType((*dy.shape[:-1], attrs["in_features"]))


class LinearGradWeight(Layer):
    """∂L/∂W of a Linear from its input x (..., in_features) and ∂L/∂y (..., out_features), summed over
    every leading axis (training graphs only): output (out_features, in_features). No arguments."""
    prefix = "dfc_w"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls(), [(None, 5), (None, 3)]

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        if x.rank < 1 or x.shape[:-1] != dy.shape[:-1]:
            raise ShapeError(f"x {x.describe()} and dy {dy.describe()} must agree on the leading axes")
        return TensorType((dy.shape[-1], x.shape[-1]))


@gradient("Linear")
def _linear_gradient(b, node, dy):
    dy = activation_gradient(b, node, dy)
    a = node.attrs
    grads = {0: b.add(node, "x", "LinearGradInput", [dy], {"weight": node.params["weight"]},
                      in_features=a["in_features"], out_features=a["out_features"]),
             "weight": b.add(node, "weight", "LinearGradWeight", [node.inputs[0], dy])}
    if a["bias"]:
        grads["bias"] = b.add(node, "bias", "SumExcept", [dy], axis=-1)
    return grads
