"""Normalisations by the statistics of each sample: LayerNorm, GroupNorm, InstanceNorm1d/2d/3d.

Each standardises groups of a sample's values, y = (x − mean) / √(var + eps), with the biased variance (the
mean of squares, as PyTorch), then applies an optional learned affine map. They differ in the groups only:
LayerNorm the trailing ``normalized_shape`` (its affine per element of it), GroupNorm ``num_groups`` runs of
channels with everything after them (its affine per channel), InstanceNorm each channel (a GroupNorm with one
channel per group). Unlike BatchNorm at inference none of them is affine in x, so nothing folds through them.

ONNX: LayerNormalization exists from opset 17, GroupNormalization with per-channel scale from 21 (opset 18's
per-group scale was deprecated): below those opsets they are written as the expressions PyTorch's exporters
write, and passes/canon_layernorm.py reads those expressions back.
"""
from __future__ import annotations

import numpy as np

from ..errors import ExportError, OnnxImportError, ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported, nice_float
from ..onnx.mapping import exports, imports


def _affine_params(shape: tuple, weight: bool, bias: bool) -> dict:
    params = {}
    if weight:
        params["weight"] = np.ones(shape, np.float32)
    if bias:
        params["bias"] = np.zeros(shape, np.float32)
    return params


def _element_macs(output) -> int:
    """About two multiply-adds per element (standardise, then scale and shift); 0 for a symbolic size."""
    dims = output.shape[1:]
    return 2 * int(np.prod(dims)) if all(isinstance(d, int) for d in dims) else 0


class LayerNorm(Layer):
    """Layer normalisation, as ``torch.nn.LayerNorm``: each sample's trailing dims ``normalized_shape`` are
    standardised together, y = (x − mean) / √(var + eps) · weight + bias; input (N, *, *normalized_shape),
    output of the same shape.

    Args:
        normalized_shape: the trailing dims normalised over, an int or a tuple.
        eps: added to the variance (default 1e-5).
        elementwise_affine: learn ``weight`` (and ``bias``) of shape normalized_shape (default True).
        bias: with elementwise_affine, also learn ``bias`` (default True).

    Parameters (float32, shape normalized_shape): weight (initially 1), bias (initially 0).
    """
    batch_independent = True
    prefix = "ln"

    @classmethod
    def example(cls):
        layer = cls((4, 5))
        layer.weight = np.linspace(0.5, 1.5, 20, dtype=np.float32).reshape(4, 5)
        layer.bias = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
        return layer, [(None, 3, 4, 5)]

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or min(shape) < 1 or eps < 0:
            raise ValueError(f"LayerNorm: normalized_shape {normalized_shape!r} must be positive dims, eps >= 0")
        super().__init__(normalized_shape=tuple(int(d) for d in shape), eps=float(eps),
                         elementwise_affine=bool(elementwise_affine), bias=bool(bias and elementwise_affine))

    @classmethod
    def param_shapes(cls, attrs):
        shape = attrs["normalized_shape"]
        return {k: shape for k in ("weight", "bias") if attrs["elementwise_affine"] and (k == "weight" or attrs["bias"])}

    @classmethod
    def init_params(cls, attrs):
        return _affine_params(attrs["normalized_shape"], attrs["elementwise_affine"], attrs["bias"])

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        shape = attrs["normalized_shape"]
        if x.rank <= len(shape) or tuple(x.shape[x.rank - len(shape):]) != shape:
            raise ShapeError(f"normalized_shape {list(shape)} must be the trailing dims of a batched input, "
                             f"got {x.describe()}")
        return x.type

    @classmethod
    def macs(cls, attrs, inputs, output):
        return _element_macs(output)

    @classmethod
    def summary(cls, attrs):
        return "×".join(map(str, attrs["normalized_shape"]))


class GroupNorm(Layer):
    """Group normalisation, as ``torch.nn.GroupNorm``: the channels of each sample are split into
    ``num_groups`` runs, each run (with all its positions) standardised together, then per channel c
    y = x̂ · weight[c] + bias[c]; input (N, num_channels, *), output of the same shape.

    Args:
        num_groups: groups the channels are split into; must divide num_channels.
        num_channels: channels of the input (C).
        eps: added to the variance (default 1e-5).
        affine: learn a per-channel ``weight`` and ``bias`` of shape (num_channels,) (default True).
    """
    batch_independent = True
    prefix = "gn"

    @classmethod
    def example(cls):
        layer = cls(2, 4)
        layer.weight = np.array([0.5, 1.0, 1.5, 2.0], np.float32)
        layer.bias = np.array([-1.0, 0.0, 0.5, 1.0], np.float32)
        return layer, [(None, 4, 3, 5)]

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        if num_groups < 1 or num_channels < 1 or num_channels % num_groups or eps < 0:
            raise ValueError(f"GroupNorm: num_groups ({num_groups}) must divide num_channels ({num_channels}), "
                             f"eps >= 0")
        super().__init__(num_groups=int(num_groups), num_channels=int(num_channels), eps=float(eps),
                         affine=bool(affine))

    @classmethod
    def param_shapes(cls, attrs):
        return {k: (attrs["num_channels"],) for k in ("weight", "bias")} if attrs["affine"] else {}

    @classmethod
    def init_params(cls, attrs):
        return _affine_params((attrs["num_channels"],), attrs["affine"], attrs["affine"])

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank < 2 or x.shape[1] != attrs["num_channels"]:
            raise ShapeError(f"expects an input (N, {attrs['num_channels']}, ...), got {x.describe()}")
        return x.type

    @classmethod
    def macs(cls, attrs, inputs, output):
        return _element_macs(output)

    @classmethod
    def summary(cls, attrs):
        return f"{attrs['num_groups']} groups of {attrs['num_channels']}"


class _InstanceNorm(Layer):
    """Shared by InstanceNorm1d/2d/3d: each channel of each sample standardised over its positions."""
    batch_independent = True
    prefix = "in"
    op = "_InstanceNorm"
    spatial_dims = 2

    @classmethod
    def example(cls):
        layer = cls(3, affine=True)
        layer.weight = np.array([0.5, 1.0, 2.0], np.float32)
        layer.bias = np.array([-1.0, 0.0, 1.0], np.float32)
        return layer, [(None, 3, *(4, 5, 3)[:cls.spatial_dims])]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False):
        name = type(self).__name__
        if num_features < 1 or eps < 0:
            raise ValueError(f"{name}: num_features must be >= 1 and eps >= 0")
        if track_running_stats:
            raise ValueError(f"{name}: track_running_stats=True (running statistics at inference) is not "
                             f"supported; at inference that is a BatchNorm")
        super().__init__(num_features=int(num_features), eps=float(eps), affine=bool(affine))

    @classmethod
    def param_shapes(cls, attrs):
        return {k: (attrs["num_features"],) for k in ("weight", "bias")} if attrs["affine"] else {}

    @classmethod
    def init_params(cls, attrs):
        return _affine_params((attrs["num_features"],), attrs["affine"], attrs["affine"])

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        rank = 2 + cls.spatial_dims
        if x.rank != rank or x.shape[1] != attrs["num_features"]:
            raise ShapeError(f"expects a {rank}-D input (N, {attrs['num_features']}, ...), got {x.describe()}")
        return x.type

    @classmethod
    def macs(cls, attrs, inputs, output):
        return _element_macs(output)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation, as ``torch.nn.InstanceNorm1d`` (inference, no running statistics): each channel
    of each sample standardised over its positions, y = (x − mean) / √(var + eps) · weight[c] + bias[c];
    input (N, C, L), output of the same shape.

    Args:
        num_features: channels (C).
        eps: added to the variance (default 1e-5).
        momentum: accepted for PyTorch's signature; unused at inference.
        affine: learn a per-channel ``weight`` and ``bias`` of shape (C,) (default False).
        track_running_stats: must be False (the default): with running statistics it is a BatchNorm.
    """
    op = "InstanceNorm1d"
    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation, as ``torch.nn.InstanceNorm2d``; input (N, C, H, W). Arguments as InstanceNorm1d:
    num_features, eps (1e-5), momentum (unused), affine (False; weight and bias of shape (C,)),
    track_running_stats (must be False)."""
    op = "InstanceNorm2d"
    spatial_dims = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation, as ``torch.nn.InstanceNorm3d``; input (N, C, D, H, W). Arguments as
    InstanceNorm1d: num_features, eps (1e-5), momentum (unused), affine (False; weight and bias of shape (C,)),
    track_running_stats (must be False)."""
    op = "InstanceNorm3d"
    spatial_dims = 3


INSTANCE_NORMS = {cls.spatial_dims + 2: cls.op for cls in (InstanceNorm1d, InstanceNorm2d, InstanceNorm3d)}


# --- ONNX export -----------------------------------------------------------------------------------------------
def _weight_or(e, n, key: str, shape, fill: float) -> str:
    array = n.params[key] if key in n.params else np.full(shape, fill, np.float32)
    return e.param(n, key, array)


def _reduce_mean(e, n, x, axes) -> str:
    if e.opset >= 18:
        return e.helper_node(n, "ReduceMean", [x, e.int64(n, "axes", axes)], keepdims=1)
    return e.helper_node(n, "ReduceMean", [x], axes=list(axes), keepdims=1)


@exports("LayerNorm")
def _layernorm_to_onnx(e, n):
    """LayerNormalization from opset 17; before, the expression PyTorch's TorchScript exporter writes:
    d = x − mean(x), y = d / √(mean(d²) + eps) · γ + β (passes/canon_layernorm.py reads it back)."""
    a = n.attrs
    shape, x = a["normalized_shape"], n.inputs[0]
    if e.opset >= 17:
        inputs = [x, _weight_or(e, n, "weight", shape, 1.0)] + ([e.param(n, "bias")] if "bias" in n.params else [])
        e.emit(n, "LayerNormalization", inputs, axis=-len(shape), epsilon=a["eps"])
        return
    axes = list(range(-len(shape), 0))
    centred = e.helper_node(n, "Sub", [x, _reduce_mean(e, n, x, axes)])
    square = e.helper_node(n, "Pow", [centred, e.initializer(f"{n.name}.two", np.array(2.0, np.float32))])
    shifted = e.helper_node(n, "Add", [_reduce_mean(e, n, square, axes),
                                       e.initializer(f"{n.name}.eps", np.array(a["eps"], np.float32))])
    steps = [("Div", e.helper_node(n, "Sqrt", [shifted]))]
    steps += [("Mul", e.param(n, "weight"))] if "weight" in n.params else []
    steps += [("Add", e.param(n, "bias"))] if "bias" in n.params else []
    value = centred
    for op, operand in steps[:-1]:
        value = e.helper_node(n, op, [value, operand])
    e.emit(n, steps[-1][0], [value, steps[-1][1]])


def _static_tail(e, n) -> list[int]:
    tail = list(n.type.shape[1:])
    if not all(isinstance(d, int) for d in tail):
        raise ExportError(f"{n.label()}: needs static channel and spatial sizes to export below opset 21, "
                          f"got {list(n.type.shape)}")
    return tail


@exports("GroupNorm")
def _groupnorm_to_onnx(e, n):
    """GroupNormalization (per-channel scale and bias) from opset 21; before, PyTorch's form:
    Reshape (N, G, −1) → InstanceNormalization (scale 1, bias 0) → Reshape back → Mul γ → Add β."""
    a, x = n.attrs, n.inputs[0]
    c, g = a["num_channels"], a["num_groups"]
    if e.opset >= 21:
        e.emit(n, "GroupNormalization", [x, _weight_or(e, n, "weight", (c,), 1.0), _weight_or(e, n, "bias", (c,), 0.0)],
               num_groups=g, epsilon=a["eps"])
        return
    tail = _static_tail(e, n)
    grouped = e.helper_node(n, "Reshape", [x, e.int64(n, "groups", [0, g, -1])])
    normed = e.helper_node(n, "InstanceNormalization", [
        grouped, e.initializer(f"{n.name}.ones", np.ones(g, np.float32)),
        e.initializer(f"{n.name}.zeros", np.zeros(g, np.float32))], epsilon=a["eps"])
    if not a["affine"]:
        e.emit(n, "Reshape", [normed, e.int64(n, "shape", [0, *tail])])
        return
    per_channel = (c,) + (1,) * (len(tail) - 1)
    back = e.helper_node(n, "Reshape", [normed, e.int64(n, "shape", [0, *tail])])
    scaled = e.helper_node(n, "Mul", [back, e.param(n, "weight", n.params["weight"].reshape(per_channel))])
    e.emit(n, "Add", [scaled, e.param(n, "bias", n.params["bias"].reshape(per_channel))])


@exports(*INSTANCE_NORMS.values())
def _instancenorm_to_onnx(e, n):
    c = (n.attrs["num_features"],)
    e.emit(n, "InstanceNormalization", [n.inputs[0], _weight_or(e, n, "weight", c, 1.0),
                                        _weight_or(e, n, "bias", c, 0.0)], epsilon=n.attrs["eps"])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


def _per_channel(imp, node, index: int, what: str, channels: int) -> np.ndarray:
    array = imp.const(node.input[index], what)
    if array.size != channels:
        raise OnnxImportError(f"{what} ({node.input[index]!r}) has shape {list(array.shape)}; "
                              f"one value per channel ({channels}) expected")
    return array.reshape(channels).astype(np.float32)


def _stash_type(imp, node) -> None:
    if int(imp.attrs(node).get("stash_type", 1)) != 1:
        raise Unsupported("stash_type other than float32")


@imports("LayerNormalization")
def _layernorm(imp, node):
    a = imp.attrs(node)
    _stash_type(imp, node)
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    axis = int(a.get("axis", -1))
    if not -len(shape) <= axis < len(shape):
        raise OnnxImportError(f"axis {axis} is out of range for an input of rank {len(shape)}")
    axis %= len(shape)
    if axis == 0:
        raise Unsupported("axis 0 (normalising across the batch)")
    normalized = tuple(shape[axis:])
    if not all(isinstance(d, int) for d in normalized):
        raise Unsupported(f"normalizes over symbolic dims {list(normalized)}")
    weight = imp.const(node.input[1], "Scale")
    bias = imp.optional_const(node, 2, "B")
    try:
        params = {"weight": np.broadcast_to(weight, normalized).astype(np.float32)}
        if bias is not None:
            params["bias"] = np.broadcast_to(bias, normalized).astype(np.float32)
    except ValueError:
        raise OnnxImportError(f"Scale and B must broadcast to the normalized shape {list(normalized)}") from None
    attrs = dict(normalized_shape=normalized, eps=nice_float(a.get("epsilon", 1e-5)), elementwise_affine=True,
                 bias=bias is not None)
    imp.add(node, "LayerNorm", [x], attrs, params)


@imports("GroupNormalization")
def _groupnorm(imp, node):
    """Opset 21: scale and bias per channel (opset 18's per-group form is deprecated: the checker refuses it)."""
    a = imp.attrs(node)
    _stash_type(imp, node)
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    groups = int(a["num_groups"])
    if len(shape) < 3 or not isinstance(shape[1], int):
        raise Unsupported(f"input shape {list(shape)}: needs (N, C, ...) with a static C")
    channels = shape[1]
    if groups < 1 or channels % groups:
        raise OnnxImportError(f"num_groups {groups} does not divide the {channels} channels")
    scale, bias = (_per_channel(imp, node, i, what, channels) for i, what in ((1, "scale"), (2, "bias")))
    attrs = dict(num_groups=groups, num_channels=channels, eps=nice_float(a.get("epsilon", 1e-5)), affine=True)
    imp.add(node, "GroupNorm", [x], attrs, dict(weight=scale, bias=bias))


@imports("InstanceNormalization")
def _instancenorm(imp, node):
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    if len(shape) not in INSTANCE_NORMS or not isinstance(shape[1], int):
        raise Unsupported(f"input shape {list(shape)}: needs (N, C, L), (N, C, H, W) or (N, C, D, H, W), C static")
    scale, bias = (_per_channel(imp, node, i, what, shape[1]) for i, what in ((1, "scale"), (2, "B")))
    affine = not (np.all(scale == 1) and np.all(bias == 0))
    attrs = dict(num_features=shape[1], eps=nice_float(imp.attrs(node).get("epsilon", 1e-5)), affine=affine)
    imp.add(node, INSTANCE_NORMS[len(shape)], [x], attrs, dict(weight=scale, bias=bias) if affine else {})


# --- gradients -------------------------------------------------------------------------------------------------
# ∂x and ∂weight by SampleNormGrad (norm_gradients.py says the math), ∂bias = ∂y summed over the axes the
# affine map broadcasts along.
from ..autodiff.registry import gradient  # noqa: E402
from . import norm_gradients  # noqa: E402,F401  (SampleNormGrad)


@gradient("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
def _sample_norm_gradient(b, node, dy):
    x, norm = node.inputs[0], {"op": node.op, "attrs": dict(node.attrs)}
    grads = {0: b.add(node, "x", "SampleNormGrad", [x, dy], node.params, norm=norm, wrt="x")}
    if "weight" in node.params:
        grads["weight"] = b.add(node, "weight", "SampleNormGrad", [x, dy], node.params, norm=norm, wrt="weight")
    if "bias" in node.params and node.op == "LayerNorm":
        grads["bias"] = b.add(node, "bias", "SumToShape", [dy], shape=node.attrs["normalized_shape"])
    elif "bias" in node.params:
        grads["bias"] = b.add(node, "bias", "SumExcept", [dy], axis=1)
    return grads
