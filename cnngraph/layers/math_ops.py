"""Element-wise math on computed tensors: Abs, Neg, Exp, Log, Sqrt, Reciprocal, Erf, Pow, and the variadic Max
and Min.

Imported models compute with these between their layers (a GELU or LayerNorm spelled out, ``torch.pow``,
``torch.maximum``). ONNX's semantics, PyTorch's names where PyTorch has the op (``torch.abs``, ``torch.neg``, ...):
Log of a negative number and Sqrt of one are nan, Log(0) is −inf, Reciprocal(0) is inf, as in both.
"""
from __future__ import annotations

import numpy as np

from ..layer import Layer
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import emit_as, exports, imports
from ..shapes import TensorType
from .activations import _Elementwise
from .structure import broadcast_shape
from .tensor_ops import _Broadcasting


class Abs(_Elementwise):
    """|x| element-wise, as ``torch.abs``. No arguments."""
    derivative_from = "input"
    idempotent = True
    prefix = "abs"

    def __init__(self):
        super().__init__()


class Neg(_Elementwise):
    """−x element-wise, as ``torch.neg``. No arguments."""
    linear = True
    prefix = "neg"

    def __init__(self):
        super().__init__()


class Exp(_Elementwise):
    """exp(x) element-wise, as ``torch.exp``. No arguments."""
    prefix = "exp"

    def __init__(self):
        super().__init__()


class Log(_Elementwise):
    """The natural logarithm element-wise, as ``torch.log`` (nan below 0, −inf at 0). No arguments."""
    prefix = "log"

    def __init__(self):
        super().__init__()


class Sqrt(_Elementwise):
    """√x element-wise, as ``torch.sqrt`` (nan below 0). No arguments."""
    prefix = "sqrt"

    def __init__(self):
        super().__init__()


class Reciprocal(_Elementwise):
    """1/x element-wise, as ``torch.reciprocal``. No arguments."""
    prefix = "reciprocal"

    def __init__(self):
        super().__init__()


class Erf(_Elementwise):
    """The error function erf(x) = 2/√π ∫₀ˣ exp(−t²) dt element-wise, as ``torch.erf`` (GELU's exact form).
    No arguments."""
    derivative_from = "input"
    prefix = "erf"

    def __init__(self):
        super().__init__()


class Pow(_Broadcasting):
    """x ** y element-wise with broadcasting, as ``torch.pow``: the exponent y a constant (often a scalar, as
    in x² of a variance) or a computed tensor. No arguments."""
    prefix = "pow"

    @classmethod
    def example(cls):
        return cls(), [(None, 3, 4, 5), (4, 5)]


class _Variadic(Layer):
    """One or more inputs, NumPy/ONNX broadcasting; no arguments."""
    batch_independent = True
    arity = (1, None)

    def __init__(self):
        super().__init__()

    @classmethod
    def example(cls):
        return cls(), [(None, 3, 4, 5), (None, 3, 4, 5), (4, 1)]

    @classmethod
    def infer(cls, attrs, inputs):
        return TensorType(broadcast_shape(inputs))


class Max(_Variadic):
    """The element-wise maximum of one or more values, with broadcasting, as ``torch.maximum`` (ONNX's Max).
    No arguments. (Not ``idempotent``: max(max(a, b), c) is no repetition.)"""
    prefix = "max"


class Min(_Variadic):
    """The element-wise minimum of one or more values, with broadcasting, as ``torch.minimum`` (ONNX's Min).
    No arguments."""
    prefix = "min"


__all__ = ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Pow", "Max", "Min"]

UNARY = {"Abs": "Abs", "Neg": "Neg", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Reciprocal": "Reciprocal",
         "Erf": "Erf"}                                        # ours -> ONNX op_type (the same names)


# --- ONNX export -----------------------------------------------------------------------------------------------
for _ours, _onnx_op in (*UNARY.items(), ("Pow", "Pow"), ("Max", "Max"), ("Min", "Min")):
    exports(_ours)(emit_as(_onnx_op))


# --- ONNX import -----------------------------------------------------------------------------------------------
def _unary(op: str):
    def handler(imp, node):
        imp.add(node, op, [imp.value(node.input[0])])
    return handler


for _ours, _onnx_op in UNARY.items():
    imports(_onnx_op)(_unary(_ours))


@imports("Pow")
def _pow(imp, node):
    """The exponent may be of another numeric type than the base (an int64 or double 2 from an exporter):
    a constant one becomes a float32 Constant; our values are float32."""
    base = imp.operand(node.input[0])
    name = node.input[1]
    if name in imp.consts and name not in imp.values and imp.consts[name].dtype != np.float32:
        exponent = imp.const(name, "the exponent")
        if exponent.dtype.kind not in "iuf":
            raise Unsupported(f"an exponent of type {exponent.dtype}")
        value = exponent.astype(np.float32)
        if not np.array_equal(value, exponent):
            raise Unsupported("an exponent that float32 does not hold exactly")
        power = imp.add_step(node, "Constant", [], dict(shape=value.shape), dict(value=value))
    else:
        power = imp.operand(name)
    imp.add(node, "Pow", [base, power])


@imports("Max", "Min")
def _max_min(imp, node):
    imp.add(node, node.op_type, [imp.operand(name) for name in node.input])



# --- gradients -------------------------------------------------------------------------------------------------
# Composed of forward ops where the derivative is one (exp: dy·y, log: dy/x, √: dy/(2y), 1/x: −dy·y²);
# Abs and Erf through ElementwiseGrad (from x); Max and Min send dy to the FIRST operand holding the extremum
# (a subgradient at ties, as MaxPool2d), each operand's share summed down to its shape.
from ..autodiff.registry import gradient  # noqa: E402
from . import elementwise_gradients  # noqa: E402,F401  (the gradient ops and the rule of derivative_from = "input")
from .structure import reduce_to  # noqa: E402


def _times(b, node, tag: str, value: str, factor: float) -> str:
    constant = b.add(node, f"{tag}.constant", "Constant", [], {"value": np.array(factor, np.float32)}, shape=())
    return b.add(node, tag, "Mul", [value, constant])


@gradient("Neg")
def _neg_gradient(b, node, dy):
    return {0: _times(b, node, "x", dy, -1.0)}


@gradient("Exp")
def _exp_gradient(b, node, dy):
    return {0: b.add(node, "x", "Mul", [dy, node.name])}


@gradient("Log")
def _log_gradient(b, node, dy):
    return {0: b.add(node, "x", "Div", [dy, node.inputs[0]])}


@gradient("Sqrt")
def _sqrt_gradient(b, node, dy):
    return {0: _times(b, node, "x", b.add(node, "x.quotient", "Div", [dy, node.name]), 0.5)}


@gradient("Reciprocal")
def _reciprocal_gradient(b, node, dy):
    squared = b.add(node, "x.square", "Mul", [b.add(node, "x.product", "Mul", [dy, node.name]), node.name])
    return {0: _times(b, node, "x", squared, -1.0)}


@gradient("Pow")
def _pow_gradient(b, node, dy):
    """z = x^p: ∂x = ∂z·p·x^(p−1) (x^(p−1), not z/x: finite at x = 0 for p ≥ 1); ∂p = ∂z·z·log(x), nan for
    x < 0 (as PyTorch), offered only when p is computed (a Constant's rule takes nothing)."""
    x, p = node.inputs
    lowered = b.add(node, "0.exponent", "Sub", [p, _constant(b, node, "0.one", 1.0)])
    slope = b.add(node, "0.slope", "Mul", [b.add(node, "0.scaled", "Mul", [dy, p]),
                                           b.add(node, "0.power", "Pow", [x, lowered])])
    log_x = b.add(node, "1.log", "Log", [x])
    share = b.add(node, "1.product", "Mul", [b.add(node, "1.scaled", "Mul", [dy, node.name]), log_x])
    return {0: reduce_to(b, node, "0", slope, x), 1: reduce_to(b, node, "1", share, p)}


def _constant(b, node, tag: str, value: float) -> str:
    return b.add(node, tag, "Constant", [], {"value": np.array(value, np.float32)}, shape=())


@gradient("Max", "Min")
def _extremum_gradient(b, node, dy):
    operands = list(node.inputs)
    return {i: reduce_to(b, node, str(i), b.add(node, f"{i}.share", "ExtremumGrad", [node.name, dy, *operands],
                                                 index=i), x)
            for i, x in enumerate(operands)}
