"""Element-wise activations, Softmax and LogSoftmax: the non-linearities that stop a fold of linear layers."""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import from_trait, gradient
from ..errors import GraphError, ShapeError
from ..layer import REGISTRY, Layer
from ..onnx.handler_tools import Unsupported, nice_float, simple
from ..onnx.mapping import emit_as, exports, imports


class _Elementwise(Layer):
    """Output type = input type. (Names starting with "_" are bases, not registered ops.)"""
    batch_independent = True

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        return x.type


class ReLU(_Elementwise):
    """max(x, 0) element-wise, as ``torch.nn.ReLU()``; any input shape, output of the same shape. No arguments."""
    derivative_from = "output"
    fusable_activation = True
    idempotent = True
    prefix = "relu"

    def __init__(self):
        super().__init__()


class LeakyReLU(_Elementwise):
    """x if x ≥ 0 else negative_slope·x element-wise, as ``torch.nn.LeakyReLU``; output of the input's shape.

    Args:
        negative_slope: the slope for negative inputs (default 0.01).
    """
    derivative_from = "output"
    fusable_activation = True
    prefix = "lrelu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__(negative_slope=float(negative_slope))


class ReLU6(_Elementwise):
    """min(max(x, 0), 6) element-wise, as ``torch.nn.ReLU6()`` (MobileNet's activation). No arguments."""
    derivative_from = "output"
    fusable_activation = True
    idempotent = True
    prefix = "relu6"

    def __init__(self):
        super().__init__()


class Hardtanh(_Elementwise):
    """Clamp to [min_val, max_val] element-wise, as ``torch.nn.Hardtanh`` (ONNX's Clip; ReLU6 is Hardtanh(0, 6)).

    Args:
        min_val: the lower bound (default −1).
        max_val: the upper bound (default 1); at least min_val.
    """
    derivative_from = "output"
    fusable_activation = True
    idempotent = True
    prefix = "clip"

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        if not min_val <= max_val:
            raise ValueError(f"Hardtanh: min_val {min_val} is above max_val {max_val}")
        super().__init__(min_val=float(min_val), max_val=float(max_val))


class Sigmoid(_Elementwise):
    """1 / (1 + exp(−x)) element-wise, as ``torch.nn.Sigmoid()``. No arguments."""
    derivative_from = "output"
    fusable_activation = True
    prefix = "sigmoid"

    def __init__(self):
        super().__init__()


class Tanh(_Elementwise):
    """tanh(x) element-wise, as ``torch.nn.Tanh()``. No arguments."""
    derivative_from = "output"
    fusable_activation = True
    prefix = "tanh"

    def __init__(self):
        super().__init__()


class Softsign(_Elementwise):
    """x / (1 + |x|) element-wise, as ``torch.nn.Softsign()``: a tanh-like curve with polynomial tails. No
    arguments."""
    derivative_from = "output"
    fusable_activation = True
    prefix = "softsign"

    def __init__(self):
        super().__init__()


class _AlongAxis(Layer):
    """A normalisation along one axis (Softmax, LogSoftmax): per sample unless along the batch; output of the
    input's shape. ``axis_attr`` names the attribute holding the axis."""
    axis_attr = "axis"

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs[cls.axis_attr] % rank != 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if not -x.rank <= attrs[cls.axis_attr] < x.rank:
            raise ShapeError(f"{cls.axis_attr} {attrs[cls.axis_attr]} is out of range for {x.describe()}")
        return x.type


class Softmax(_AlongAxis):
    """exp(x) / Σ exp(x) along one axis, as ``torch.nn.Softmax(dim)``; output of the input's shape.

    Args:
        axis: the axis normalised over (PyTorch's ``dim``; default −1, the last axis).
    """
    prefix = "softmax"

    def __init__(self, axis: int = -1):
        super().__init__(axis=int(axis))


class LogSoftmax(_AlongAxis):
    """log(softmax(x)) along one axis, computed stably as x − max − log Σ exp(x − max), as
    ``torch.nn.LogSoftmax(dim)``; output of the input's shape.

    Args:
        dim: the axis normalised over (default −1, the last axis).
    """
    prefix = "logsoftmax"
    axis_attr = "dim"

    def __init__(self, dim: int = -1):
        super().__init__(dim=int(dim))


# --- ONNX export -----------------------------------------------------------------------------------------------
exports("ReLU")(emit_as("Relu"))
exports("Sigmoid")(emit_as("Sigmoid"))
exports("Tanh")(emit_as("Tanh"))
exports("Softsign")(emit_as("Softsign"))


@exports("LeakyReLU")
def _leaky_relu_to_onnx(e, n):
    e.emit(n, "LeakyRelu", n.inputs, alpha=n.attrs["negative_slope"])


@exports("ReLU6", "Hardtanh")
def _clip_to_onnx(e, n):
    """Clip(x, low, high): Clip's bounds are inputs from opset 11 on (every opset we write), scalars of x's type."""
    low, high = (0.0, 6.0) if n.op == "ReLU6" else (n.attrs["min_val"], n.attrs["max_val"])
    low = e.initializer(f"{n.name}.min", np.array(low, np.float32))
    high = e.initializer(f"{n.name}.max", np.array(high, np.float32))
    e.emit(n, "Clip", [n.inputs[0], low, high])


@exports("Softmax", "LogSoftmax")
def _softmax_to_onnx(e, n):
    """The opset-13 form: along ``axis`` only."""
    e.emit(n, n.op, n.inputs, axis=n.attrs[n.layer.axis_attr])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.



@imports("Clip")
def _clip(imp, node):
    """Clip(0, 6) is ReLU6, Clip(0, ∞) ReLU, any other Hardtanh(min, max)."""
    if imp.opset < 11:
        a = imp.attrs(node)
        low, high = a.get("min"), a.get("max")
    else:
        low, high = (None if bound is None else bound.item()
                     for bound in (imp.optional_const(node, 1, "min"), imp.optional_const(node, 2, "max")))
    low = -np.inf if low is None else nice_float(low)
    high = np.inf if high is None else nice_float(high)
    x = imp.value(node.input[0])
    if (low, high) == (0.0, 6.0):
        imp.add(node, "ReLU6", [x])
    elif (low, high) == (0.0, np.inf):
        imp.add(node, "ReLU", [x])
    elif low > high:                                   # min(max(x, low), high) is high everywhere
        imp.add(node, "Hardtanh", [x], dict(min_val=high, max_val=high))
    else:
        imp.add(node, "Hardtanh", [x], dict(min_val=low, max_val=high))


@imports("Softmax", "LogSoftmax")
def _softmax(imp, node):
    """From opset 13 (Log)Softmax normalizes along ``axis``; before, over the axes from ``axis`` on, flattened."""
    op = node.op_type
    key = REGISTRY[op].axis_attr
    x = imp.value(node.input[0])
    rank = len(imp.shape(x))
    axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    if imp.opset >= 13 or axis % rank == rank - 1:
        imp.add(node, op, [x], {key: axis if imp.opset >= 13 else -1})
        return
    block = imp.shape(x)[axis % rank:]
    wide = [i for i, d in enumerate(block) if d != 1]
    if len(wide) <= 1:                  # (N, 1000, 1, 1) from axis 1: flattening the block leaves one axis
        imp.add(node, op, [x], {key: axis % rank + (wide[0] if wide else 0)})
        return
    flat = imp.add_step(node, "Flatten", [x], dict(start_dim=axis % rank, end_dim=-1))
    soft = imp.add_step(node, op, [flat], {key: -1})
    imp.add(node, "Reshape", [soft], dict(shape=imp.shape(x)))


for _onnx_op, _ours, _attrs in (("Relu", "ReLU", {}), ("LeakyRelu", "LeakyReLU", {"negative_slope": ("alpha", 0.01)}),
                                ("Sigmoid", "Sigmoid", {}), ("Tanh", "Tanh", {})):
    imports(_onnx_op)(simple(_ours, **_attrs))


@imports("Softsign")
def _softsign_from_onnx(imp, node):
    imp.add(node, "Softsign", [imp.value(node.input[0])])


# --- gradients -------------------------------------------------------------------------------------------------
# Each activation's derivative is read from its OUTPUT y (ReLU: y > 0, Sigmoid: y·(1 − y), Tanh: 1 − y², ...),
# so the backward pass keeps the activation's output and never its input: the ops with derivative_from = "output"
# share one rule (cnngraph/autodiff/registry.py).


def _derivative_from(op) -> str:
    layer = REGISTRY.get(op)
    return layer.derivative_from if layer else ""


def derivative_source(function: dict) -> str:
    """Where an activation's derivative is read from: its op's ``derivative_from``, except LeakyReLU with a
    negative slope, whose output no longer tells the input's sign, so its derivative reads the input."""
    if function["op"] == "LeakyReLU" and function.get("attrs", {}).get("negative_slope", 0.0) < 0:
        return "input"
    return _derivative_from(function["op"])


class ActivationGrad(_Elementwise):
    """∂L/∂x of an element-wise activation from its output y and ∂L/∂y (training graphs only): inputs (y, dy),
    output of dy's shape. At a kink (ReLU at 0) the derivative is that of the open side y > 0, as in PyTorch.

    Args:
        function: the activation differentiated, ``{"op": "ReLU", "attrs": {...}}`` (an op with
            derivative_from = "output"; LeakyReLU with a non-negative slope, whose output keeps the input's sign).
    """
    prefix = "dact"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls({"op": "Sigmoid", "attrs": {}}), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, function: dict):
        super().__init__(function={"op": function["op"], "attrs": dict(function.get("attrs", {}))})

    @classmethod
    def infer(cls, attrs, inputs):
        y, dy = inputs
        fused = attrs["function"]
        if _derivative_from(fused.get("op")) != "output":
            raise ShapeError(f"no derivative from the output for {fused.get('op')!r}")
        if fused["op"] == "LeakyReLU" and fused["attrs"]["negative_slope"] < 0:
            raise ShapeError("LeakyReLU with a negative slope: its output does not tell the input's sign")
        if y.shape != dy.shape:
            raise ShapeError(f"y and dy must have the same shape, got {y.describe()} and {dy.describe()}")
        return dy.type


class SoftmaxGrad(Layer):
    """∂L/∂x of Softmax from its output y and ∂L/∂y (training graphs only): dx = y·(dy − Σ_axis dy·y).

    Args:
        axis: the Softmax's axis (default −1).
    """
    prefix = "dsoftmax"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls(1), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, axis: int = -1):
        super().__init__(axis=int(axis))

    per_sample = Softmax.per_sample

    @classmethod
    def infer(cls, attrs, inputs):
        y, dy = inputs
        if y.shape != dy.shape:
            raise ShapeError(f"y and dy must have the same shape, got {y.describe()} and {dy.describe()}")
        return Softmax.infer(attrs, [dy])


def activation_gradient(b, node, dy) -> str:
    """dy through the node's fused activation (Conv2d, Linear), or dy itself when it has none. An activation whose
    derivative needs its input (GELU, SiLU, ...: ElementwiseGrad's) gets it recomputed: the node again without
    the activation, on the same inputs and parameter arrays (one more forward GEMM, no activation kept)."""
    fused = node.attrs.get("activation")
    if not fused:
        return dy
    if derivative_source(fused) == "input":
        attrs = {k: v for k, v in node.attrs.items() if k != "activation"}
        before = b.add(node, "act.input", node.op, node.inputs, dict(node.params), **attrs)
        return b.add(node, "act", "ElementwiseGrad", [before, dy], function=dict(fused))
    if _derivative_from(fused["op"]) != "output":
        raise GraphError(f"{node.label()}: no gradient rule for its fused activation {fused['op']}")
    return b.add(node, "act", "ActivationGrad", [node.name, dy], function=dict(fused))


@gradient(from_trait("output"))
def _activation_gradient(b, node, dy):
    if derivative_source(b.activation_of(node)) == "input":          # LeakyReLU with a negative slope
        return {0: b.add(node, "x", "ElementwiseGrad", [node.inputs[0], dy], function=b.activation_of(node))}
    return {0: b.add(node, "x", "ActivationGrad", [node.name, dy], function=b.activation_of(node))}


@gradient("Softmax")
def _softmax_gradient(b, node, dy):
    return {0: b.add(node, "x", "SoftmaxGrad", [node.name, dy], axis=node.attrs["axis"])}


@gradient("LogSoftmax")
def _log_softmax_gradient(b, node, dy):
    return {0: b.add(node, "x", "LogSoftmaxGrad", [node.name, dy], dim=node.attrs["dim"])}
