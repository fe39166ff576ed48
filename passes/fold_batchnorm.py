"""Fold BatchNorm (and per-channel constant Mul/Add) into the convolution (any rank, transposed too) or Linear
next to it.

Inference BatchNorm is y = s·x + t per channel, s = γ/√(var+ε), t = β − mean·s.
  after a layer:   s·(W∗x + b) + t = (s·W)∗x + (s·b + t)   — W scaled along its output axis, a missing bias
                   gained (ncnn #1339); new arrays, never in place, so a weight shared with another layer is
                   untouched (TNN #808). Any groups: each output channel has its own filter. A transposed
                   convolution's weight is (in, out/groups, k...): output channel g·(out/groups) + j is
                   column j of group g's block of rows, so s is applied along axis 1, group by group.
  before a layer:  W∗(s·x + t) + b = (W·s)∗x + (b + Σ W·t)  — W scaled along its input axis (for groups, the
                   input channel a filter tap reads); exact only where the layer sees no zero padding (a padded
                   border would see t where the original saw 0). Not into a transposed convolution: its
                   border outputs sum fewer taps than its inner ones, so Σ W·t is not one number per channel.
x·c and x + c with a constant c that is per output channel (or a scalar) are the same affine map, as several
ONNX zoo models spell BatchNorm (ops with the trait ``constant_affine``; BatchNorm has ``channel_affine``).
A fused activation on the layer stops a fold after it (the affine map would have to pass through it).
Cost: a layer without a bias gains one only when the folded shift is not zero (x·c needs none), and at level 2
only when that does not grow the parameters (a scalar c, or a BatchNorm of fewer than half the layer's output
channels in front of it, is smaller than the bias it would become).
"""
from __future__ import annotations

import numpy as np

from . import cost
from .base import constant_value
from .rules import rule, rule_pass

CONVS = ("Conv1d", "Conv2d", "Conv3d")                       # weight (out, in/groups, k...)
TRANSPOSED = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")    # weight (in, out/groups, k...)
LAYERS = CONVS + TRANSPOSED + ("Linear",)                     # Linear: weight (out, in)


def _channel_axis_ok(layer) -> bool:
    """The reader's channel axis (1) is the layer's output-feature axis: always for a convolution, for Linear
    only on 2-D values (elsewhere Linear's features are the last axis)."""
    return layer.op != "Linear" or len(layer.type.shape) == 2


def _affine(graph, node, layer):
    """(scale, shift) per output channel of ``layer`` that ``node`` applies to it, a reason why it is not per
    channel, or None when ``node`` is not an affine map of ``layer`` and a constant."""
    channels = layer.type.shape[1]
    if node.layer.channel_affine:
        scale, shift = node.layer.scale_shift(node.attrs, node.params)
        return np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    if len(node.inputs) != 2:
        return None
    other = node.inputs[1] if node.inputs[0] == layer.name else node.inputs[0]
    value = constant_value(graph, other)
    if value is None:                                   # x + y of two computed values: not an affine map
        return None
    rank = len(layer.type.shape)
    shape = (1,) * (rank - value.ndim) + tuple(value.shape)
    if value.ndim > rank or any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return f"the constant {other} of shape {value.shape} is not per channel"
    if node.type.shape != layer.type.shape:
        return "the operation broadcasts the layer's output"
    per_channel = np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,))
    if node.layer.constant_affine == "scale":
        return per_channel, np.zeros(channels)
    return np.ones(channels), per_channel


def _fold(m, layer, removed, inputs, weight, bias):
    """Replace ``removed`` (the layer and the affine node) by the layer with the folded weight and bias, if the
    cost model allows; the bias is dropped when the layer had none and the fold leaves it zero."""
    graph = m.graph
    with_bias = bool(layer.attrs["bias"]) or bool(np.any(bias))
    before = cost.of_nodes(graph, removed)
    for node in removed:                               # a constant that only the affine node reads goes too
        for name in node.inputs:
            source = graph.node(name)
            if source.layer.constant and graph.use_count(name) == 1:
                before += cost.of_nodes(graph, [source])
    after = cost.Cost(before.macs, cost.param_count(layer.op, dict(layer.attrs, bias=with_bias)))
    why = cost.allows(m.level, before, after)
    if why:
        return m.refuse(why, *removed)
    params = dict(weight=_read_only_float32(weight))
    if with_bias:
        params["bias"] = _read_only_float32(bias)
    keeper = removed[-1].name
    graph.replace(keeper, layer.op, inputs, dict(layer.attrs, bias=with_bias), params)
    for node in removed[:-1]:
        graph.erase(node.name)
    return m.rewrote(removed, [keeper])


def _weight_and_bias(layer, weight: bool = True):
    """The layer's weight (None when not asked for) and bias (zeros when it has none) in float64."""
    bias = layer.params.get("bias")
    channels = layer.type.shape[1] if layer.op != "Linear" else layer.params["weight"].shape[0]
    return layer.params["weight"].astype(np.float64) if weight else None, \
        np.zeros(channels) if bias is None else bias.astype(np.float64)


def _read_only_float32(array: np.ndarray) -> np.ndarray:
    """The array rounded to float32 (kept when it already is), read-only, so the graph stores it without
    another copy: the weights of a whole network pass through here."""
    result = np.asarray(array, np.float32)
    if result is array and array.flags.writeable:       # not a new array: not ours to make read-only
        result = array.copy()
    result.flags.writeable = False
    return result


def _scale_outputs(layer, weight, scale):
    """W with output channel o scaled by scale[o]: axis 0, or for a transposed convolution axis 1 per group.
    The float32 weight is multiplied in float64 and rounded once, in one pass (no float64 copy of W)."""
    if layer.op in TRANSPOSED:
        groups, (cin, cout_g, *kernel) = layer.attrs["groups"], weight.shape
        shape, scale = (groups, cin // groups, cout_g, *kernel), scale.reshape(groups, 1, cout_g, *[1] * len(kernel))
    else:
        shape, scale = weight.shape, scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    result = np.empty(weight.shape, np.float32)
    np.multiply(weight.reshape(shape), scale, out=result.reshape(shape), dtype=np.float64, casting="same_kind")
    result.flags.writeable = False
    return result


@rule(anchor=lambda node: node.layer.channel_affine or bool(node.layer.constant_affine))
def fold_affine_after_layer(m):
    """s·(W∗x + b) + t -> (s·W)∗x + (s·b + t)"""
    graph, node = m.graph, m.node
    layer = next((graph.node(i) for i in node.inputs if graph.node(i).op in LAYERS), None)
    if layer is None:
        return None
    affine = _affine(graph, node, layer)
    if affine is None:
        return None
    for why in (m.read_elsewhere(layer.name), affine if isinstance(affine, str) else None,
                "an activation is fused into the layer" if layer.attrs.get("activation") else None,
                None if _channel_axis_ok(layer) else "Linear on a value of rank > 2"):
        if why:
            return m.refuse(why, layer, node)
    scale, shift = affine
    bias = _weight_and_bias(layer, weight=False)[1]
    weight = _scale_outputs(layer, layer.params["weight"], scale)
    return _fold(m, layer, [layer, node], layer.inputs, weight, bias * scale + shift)


@rule(anchor=lambda node: node.layer.channel_affine)
def fold_batchnorm_before_layer(m):
    """W∗(s·x + t) + b -> (W·s)∗x + (b + Σ W·t), the layer unpadded"""
    graph, norm = m.graph, m.node
    if m.read_elsewhere(norm.name):
        return None
    layer = graph.node(graph.users(norm.name)[0])
    if layer.op not in LAYERS:
        return None
    if layer.op in TRANSPOSED:
        return m.refuse("a transposed convolution's border outputs sum fewer taps: the shift is not uniform",
                        norm, layer)
    if layer.op in CONVS and any(layer.attrs["pads"]):
        return m.refuse("the convolution pads with zeros, the shift would reach the border", norm, layer)
    if layer.op == "Linear" and len(norm.type.shape) != 2:
        return m.refuse("Linear on a value of rank > 2", norm, layer)
    scale, shift = (np.asarray(a, np.float64) for a in norm.layer.scale_shift(norm.attrs, norm.params))
    weight, bias = _weight_and_bias(layer)
    if layer.op == "Linear":
        new_weight, new_bias = weight * scale[None, :], bias + weight @ shift
    else:
        groups = layer.attrs["groups"]
        cout, cin_group = weight.shape[:2]
        index = (np.arange(cout) // (cout // groups))[:, None] * cin_group + np.arange(cin_group)[None, :]
        spatial = (1,) * (weight.ndim - 2)
        new_weight = weight * scale[index].reshape(cout, cin_group, *spatial)
        new_bias = bias + np.einsum("oi,oi->o", weight.sum(axis=tuple(range(2, weight.ndim))), shift[index])
    return _fold(m, layer, [norm, layer], norm.inputs, new_weight, new_bias)


PASS = rule_pass("fold_batchnorm", 2, [fold_affine_after_layer, fold_batchnorm_before_layer],
                 "BatchNorm and per-channel affine folded into convolutions and Linear")
