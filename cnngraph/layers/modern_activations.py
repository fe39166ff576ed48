"""The activations of modern CNNs beyond ReLU: PReLU, the ELU family, GELU, SiLU, Mish, the hard sigmoid and
swish of MobileNetV3, and Softplus (LogSoftmax is with Softmax, in activations.py).

Each follows PyTorch's module of the same name (arguments, defaults, the learned PReLU weight). The element-wise
ones without parameters are ``fusable_activation``: the NumPy backend runs them in place on a GEMM's output, and
fuse_activation folds them into the Conv2d or Linear before them. Where an opset has no ONNX op for one, the
export writes the expression PyTorch's exporter writes, and passes/canon_activation.py gives the layer back.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ExportError, ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported, nice_float
from ..onnx.mapping import exports, imports
from .activations import _Elementwise

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SOFTPLUS_EXACT_THRESHOLD = 15.0   # above β·x = 15, log(1 + exp(βx))/β and x agree to float32 (exp(−15) ≈ 3e-7)


class PReLU(Layer):
    """x if x ≥ 0 else a·x element-wise with a learned slope a, as ``torch.nn.PReLU``; output of the input's shape.

    Args:
        num_parameters: 1 (one slope shared by every channel) or the number of channels C of an input
            (N, C, ...): one slope per channel, along axis 1 (default 1).
        init: the initial slope (default 0.25).
    Parameters: ``weight`` of shape (num_parameters,). It is learned but is no map of features: not ``weighted``.
    """
    batch_independent = True
    prefix = "prelu"

    @classmethod
    def example(cls):
        return cls(3), [(None, 3, 4, 5)]

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        if int(num_parameters) < 1:
            raise ValueError(f"PReLU: num_parameters must be >= 1, got {num_parameters}")
        super().__init__(num_parameters=int(num_parameters), init=float(init))

    @classmethod
    def param_shapes(cls, attrs):
        return {"weight": (attrs["num_parameters"],)}

    @classmethod
    def init_params(cls, attrs):
        return {"weight": np.full(attrs["num_parameters"], attrs["init"], np.float32)}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        count = attrs["num_parameters"]
        if count != 1 and (x.rank < 2 or x.shape[1] != count):
            raise ShapeError(f"{count} slopes need an input (N, {count}, ...), got {x.describe()}")
        return x.type


class ELU(_Elementwise):
    """x if x > 0 else alpha·(exp(x) − 1) element-wise, as ``torch.nn.ELU``.

    Args:
        alpha: the value the negative side tends to is −alpha (default 1.0).
    """
    derivative_from = "input"
    fusable_activation = True
    prefix = "elu"

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha=float(alpha))


class SELU(_Elementwise):
    """scale·(max(0, x) + min(0, alpha·(exp(x) − 1))) element-wise with PyTorch's fixed alpha ≈ 1.6733 and
    scale ≈ 1.0507 (self-normalizing networks), as ``torch.nn.SELU()``. No arguments."""
    derivative_from = "input"
    fusable_activation = True
    prefix = "selu"

    def __init__(self):
        super().__init__()


class CELU(_Elementwise):
    """max(0, x) + min(0, alpha·(exp(x/alpha) − 1)) element-wise, as ``torch.nn.CELU``.

    Args:
        alpha: the scale of the negative side (default 1.0; not 0).
    """
    derivative_from = "input"
    fusable_activation = True
    prefix = "celu"

    def __init__(self, alpha: float = 1.0):
        if float(alpha) == 0.0:
            raise ValueError("CELU: alpha must not be 0")
        super().__init__(alpha=float(alpha))


class GELU(_Elementwise):
    """x·Φ(x) element-wise, Φ the standard normal CDF, as ``torch.nn.GELU``.

    Args:
        approximate: "none" (default): 0.5·x·(1 + erf(x/√2)); "tanh": 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    """
    derivative_from = "input"
    fusable_activation = True
    prefix = "gelu"
    FORMS = ("none", "tanh")

    def __init__(self, approximate: str = "none"):
        if approximate not in self.FORMS:
            raise ValueError(f"GELU: approximate must be one of {self.FORMS}, got {approximate!r}")
        super().__init__(approximate=approximate)


class SiLU(_Elementwise):
    """x·sigmoid(x) element-wise (swish), as ``torch.nn.SiLU()``. No arguments."""
    derivative_from = "input"
    fusable_activation = True
    prefix = "silu"

    def __init__(self):
        super().__init__()


class Mish(_Elementwise):
    """x·tanh(softplus(x)) element-wise, as ``torch.nn.Mish()``. No arguments."""
    derivative_from = "input"
    fusable_activation = True
    prefix = "mish"

    def __init__(self):
        super().__init__()


class Hardsigmoid(_Elementwise):
    """min(max(alpha·x + beta, 0), 1) element-wise, as ``torch.nn.Hardsigmoid()`` (= relu6(x + 3)/6).

    Args:
        alpha, beta: PyTorch's module has no arguments; its slope and offset are the defaults. Other values are
            ONNX's HardSigmoid in general (its own defaults are 0.2 and 0.5), kept when imported.
    """
    derivative_from = "input"
    fusable_activation = True
    prefix = "hardsigmoid"

    def __init__(self, alpha: float = 1 / 6, beta: float = 0.5):
        super().__init__(alpha=float(alpha), beta=float(beta))

    @classmethod
    def is_pytorch(cls, attrs) -> bool:
        return np.float32(attrs["alpha"]) == np.float32(1 / 6) and np.float32(attrs["beta"]) == np.float32(0.5)


class Hardswish(_Elementwise):
    """x·relu6(x + 3)/6 element-wise (MobileNetV3's activation), as ``torch.nn.Hardswish()``. No arguments."""
    derivative_from = "input"
    fusable_activation = True
    prefix = "hardswish"

    def __init__(self):
        super().__init__()


class Softplus(_Elementwise):
    """log(1 + exp(beta·x))/beta element-wise, and x where beta·x > threshold, as ``torch.nn.Softplus``.

    Args:
        beta: the sharpness (default 1; not 0).
        threshold: above beta·x = threshold the output is x (default 20).
    """
    derivative_from = "input"
    fusable_activation = True
    prefix = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        if float(beta) == 0.0:
            raise ValueError("Softplus: beta must not be 0")
        super().__init__(beta=float(beta), threshold=float(threshold))


__all__ = ["PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardsigmoid", "Hardswish", "Softplus"]


# --- ONNX export -----------------------------------------------------------------------------------------------
def _scalar(e, n, key: str, value: float) -> str:                  # a float32 scalar initializer
    return e.initializer(f"{n.name}.{key}", np.array(value, np.float32))


@exports("PReLU")
def _prelu_to_onnx(e, n):
    """PRelu broadcasts the slope unidirectionally from the right: C slopes become (C, 1, ...) to meet axis 1."""
    rank = len(n.type.shape)
    weight = n.params["weight"]
    if weight.size > 1:
        weight = weight.reshape((-1,) + (1,) * (rank - 2))
    e.emit(n, "PRelu", [n.inputs[0], e.param(n, "weight", weight)])


@exports("ELU", "CELU")
def _elu_celu_to_onnx(e, n):
    e.emit(n, n.op.capitalize(), n.inputs, alpha=n.attrs["alpha"])


@exports("SELU")
def _selu_to_onnx(e, n):
    e.emit(n, "Selu", n.inputs, alpha=SELU_ALPHA, gamma=SELU_SCALE)


@exports("GELU")
def _gelu_to_onnx(e, n):
    """Gelu from opset 20; before, what PyTorch's TorchScript exporter writes: Mul(Mul(x, Add(Erf(Div(x, √2)), 1)),
    0.5), or Mul(Mul(x, Add(Tanh(Mul(Add(x, Mul(Mul(x, Mul(x, x)), 0.044715)), √(2/π))), 1)), 0.5)."""
    x, form = n.inputs[0], n.attrs["approximate"]
    if e.opset >= 20:
        e.emit(n, "Gelu", [x], approximate=form)
        return
    if form == "none":
        inner = e.helper_node(n, "Erf", [e.helper_node(n, "Div", [x, _scalar(e, n, "sqrt2", math.sqrt(2))])])
    else:
        cube = e.helper_node(n, "Mul", [x, e.helper_node(n, "Mul", [x, x])])
        shifted = e.helper_node(n, "Add", [x, e.helper_node(n, "Mul", [cube, _scalar(e, n, "kappa", 0.044715)])])
        scaled = e.helper_node(n, "Mul", [shifted, _scalar(e, n, "beta", math.sqrt(2 / math.pi))])
        inner = e.helper_node(n, "Tanh", [scaled])
    plus_one = e.helper_node(n, "Add", [inner, _scalar(e, n, "one", 1.0)])
    e.emit(n, "Mul", [e.helper_node(n, "Mul", [x, plus_one]), _scalar(e, n, "half", 0.5)])


@exports("SiLU")
def _silu_to_onnx(e, n):
    """x·Sigmoid(x), as both PyTorch exporters write it (ONNX's Swish, opset 24, has no onnxruntime kernel)."""
    x = n.inputs[0]
    e.emit(n, "Mul", [x, e.helper_node(n, "Sigmoid", [x])])


@exports("Mish")
def _mish_to_onnx(e, n):
    """Mish from opset 18; before, x·Tanh(Softplus(x))."""
    x = n.inputs[0]
    if e.opset >= 18:
        e.emit(n, "Mish", [x])
    else:
        e.emit(n, "Mul", [x, e.helper_node(n, "Tanh", [e.helper_node(n, "Softplus", [x])])])


@exports("Hardsigmoid")
def _hardsigmoid_to_onnx(e, n):
    e.emit(n, "HardSigmoid", n.inputs, **n.attrs)


@exports("Hardswish")
def _hardswish_to_onnx(e, n):
    """HardSwish from opset 14; at 13, x·HardSigmoid(x; 1/6, 1/2)."""
    x = n.inputs[0]
    if e.opset >= 14:
        e.emit(n, "HardSwish", [x])
    else:
        e.emit(n, "Mul", [x, e.helper_node(n, "HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


@exports("Softplus")
def _softplus_to_onnx(e, n):
    """ONNX's Softplus is log(1 + exp(x)), no beta, no threshold: beta ≠ 1 is written Div(Softplus(Mul(x, β)), β).
    Dropping the threshold is exact to float32 when it is at least 15; a lower one (a visible kink) is refused."""
    beta, threshold = n.attrs["beta"], n.attrs["threshold"]
    if threshold < SOFTPLUS_EXACT_THRESHOLD:
        raise ExportError(f"{n.label()}: threshold {threshold} makes Softplus switch to x where log(1 + exp(βx))/β "
                          f"still differs; ONNX's Softplus has no threshold (exact from {SOFTPLUS_EXACT_THRESHOLD})")
    if beta == 1.0:
        e.emit(n, "Softplus", n.inputs)
        return
    scaled = e.helper_node(n, "Mul", [n.inputs[0], _scalar(e, n, "beta", beta)])
    e.emit(n, "Div", [e.helper_node(n, "Softplus", [scaled]), _scalar(e, n, "beta_divisor", beta)])


# --- ONNX import -----------------------------------------------------------------------------------------------
@imports("PRelu")
def _prelu(imp, node):
    """The slope broadcasts from the right (unidirectionally): a scalar, (1,), (C, 1, 1) as TorchScript writes,
    (C,) on a 2-D input, (1, C, 1, 1) ... Only a shared slope or one per channel of axis 1 is a PReLU."""
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    slope = np.asarray(imp.const(node.input[1], "the slope"), np.float32)
    if slope.size == 1:
        imp.add(node, "PReLU", [x], dict(num_parameters=1, init=0.25), dict(weight=slope.reshape(1)))
        return
    full = (1,) * (len(shape) - slope.ndim) + slope.shape
    broadcasts = slope.ndim <= len(shape) and all(d in (1, n) for d, n in zip(full, shape))
    legacy = slope.ndim == 1 and len(shape) >= 3 and slope.shape[0] == shape[1]   # opset 6's per-channel (C,),
    if not broadcasts and not legacy:                     # which onnx's version converter carries forward as is
        raise Unsupported(f"slope of shape {list(slope.shape)} does not broadcast to the input's {list(shape)}")
    if not broadcasts or (len(shape) >= 2 and full[1] == shape[1] and all(d == 1 for i, d in enumerate(full) if i != 1)):
        imp.add(node, "PReLU", [x], dict(num_parameters=int(slope.size), init=0.25), dict(weight=slope.reshape(-1)))
        return
    # any other slope (per element, along the last axis): ONNX's broadcast spelled out, max(x, 0) + s·min(x, 0)
    zero = imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.zeros((), np.float32)))
    scale = imp.add_step(node, "Constant", [], dict(shape=slope.shape), dict(value=slope))
    negative = imp.add_step(node, "Mul", [imp.add_step(node, "Min", [x, zero]), scale])
    imp.add(node, "Add", [imp.add_step(node, "Max", [x, zero]), negative], dict(broadcast=True))


@imports("Elu", "Celu")
def _elu_celu(imp, node):
    alpha = nice_float(imp.attrs(node).get("alpha", 1.0))
    imp.add(node, "ELU" if node.op_type == "Elu" else "CELU", [imp.value(node.input[0])], dict(alpha=alpha))


@imports("Selu")
def _selu(imp, node):
    """SELU's own constants (ONNX's defaults are their float32 values) make a SELU; any others gamma·ELU(alpha)."""
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    alpha, gamma = a.get("alpha", SELU_ALPHA), a.get("gamma", SELU_SCALE)
    if np.float32(alpha) == np.float32(SELU_ALPHA) and np.float32(gamma) == np.float32(SELU_SCALE):
        imp.add(node, "SELU", [x])
        return
    elu = imp.add_step(node, "ELU", [x], dict(alpha=nice_float(alpha)))
    scale = imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.array(gamma, np.float32)))
    imp.add(node, "Mul", [elu, scale])


@imports("Gelu")
def _gelu(imp, node):
    form = imp.attrs(node).get("approximate", b"none")
    form = form.decode() if isinstance(form, bytes) else form
    if form not in GELU.FORMS:
        raise Unsupported(f"approximate {form!r}")
    imp.add(node, "GELU", [imp.value(node.input[0])], dict(approximate=form))


@imports("Mish", "HardSwish")
def _mish_hardswish(imp, node):
    imp.add(node, node.op_type.capitalize(), [imp.value(node.input[0])])


@imports("Swish")
def _swish(imp, node):
    """Swish (opset 24) is x·sigmoid(alpha·x): SiLU for alpha = 1, else the product spelled out."""
    x = imp.value(node.input[0])
    alpha = nice_float(imp.attrs(node).get("alpha", 1.0))
    if alpha == 1.0:
        imp.add(node, "SiLU", [x])
        return
    factor = imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.array(alpha, np.float32)))
    gate = imp.add_step(node, "Sigmoid", [imp.add_step(node, "Mul", [x, factor])])
    imp.add(node, "Mul", [x, gate])


@imports("HardSigmoid")
def _hardsigmoid(imp, node):
    a = imp.attrs(node)
    attrs = dict(alpha=nice_float(a.get("alpha", 0.2)), beta=nice_float(a.get("beta", 0.5)))
    if Hardsigmoid.is_pytorch(attrs):
        attrs = dict(alpha=1 / 6, beta=0.5)
    imp.add(node, "Hardsigmoid", [imp.value(node.input[0])], attrs)


@imports("Softplus")
def _softplus(imp, node):
    """log(1 + exp(x)) is PyTorch's Softplus(1, 20) to float32: past x = 20 they differ by exp(−20) ≈ 2e-9."""
    imp.add(node, "Softplus", [imp.value(node.input[0])], dict(beta=1.0, threshold=20.0))


# --- gradients -------------------------------------------------------------------------------------------------
# PReLU's slopes get their gradient too; the others' derivatives are read from the
# input x (ElementwiseGrad, cnngraph/layers/elementwise_gradients.py).
from ..autodiff.registry import gradient  # noqa: E402
from . import elementwise_gradients  # noqa: E402,F401  (the gradient ops and the rule of derivative_from = "input")


@gradient("PReLU")
def _prelu_gradient(b, node, dy):
    x, slopes, count = node.inputs[0], {"weight": node.params["weight"]}, node.attrs["num_parameters"]
    return {0: b.add(node, "x", "PReLUGrad", [x, dy], slopes, num_parameters=count, wrt="x"),
            "weight": b.add(node, "weight", "PReLUGrad", [x, dy], slopes, num_parameters=count, wrt="weight")}
