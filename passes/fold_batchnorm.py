"""Fold BatchNorm (and per-channel constant Mul/Add) into the Conv2d or Linear next to it.

Inference BatchNorm is y = s·x + t per channel, s = γ/√(var+ε), t = β − mean·s.
  after a layer:   s·(W∗x + b) + t = (s·W)∗x + (s·b + t)   — W scaled along its output axis, a missing bias
                   gained (ncnn #1339); new arrays, never in place, so a weight shared with another layer is
                   untouched (TNN #808).
  before a layer:  W∗(s·x + t) + b = (W·s)∗x + (b + Σ W·t)  — W scaled along its input axis; exact only where
                   the layer sees no zero padding (a padded border would see t where the original saw 0).
Mul(layer, c) and Add(layer, c) with a constant c that is per output channel (or a scalar) are the same
affine map, as several ONNX zoo models spell BatchNorm.
"""
from __future__ import annotations

import numpy as np

from cnngraph.layers import BatchNorm2d

from .base import Pass, PassResult, constant_value, describe, sole_reader

LAYERS = ("Conv2d", "Linear")


def _channel_axis_ok(layer, reader) -> bool:
    """The reader's channel axis (1) is the layer's output-feature axis: always for Conv2d, for Linear only
    on 2-D values (elsewhere Linear's features are the last axis)."""
    return layer.op == "Conv2d" or len(layer.type.shape) == 2


def _per_channel(graph, node, layer):
    """(scale, shift) of a BatchNorm2d or of Mul/Add by a per-channel constant reading ``layer``; else a reason."""
    channels = layer.type.shape[1]
    if node.op == "BatchNorm2d":
        scale, shift = BatchNorm2d.scale_shift(node.attrs, node.params)
        return np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    if node.op not in ("Mul", "Add") or len(node.inputs) != 2:
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
    if node.op == "Mul":
        return per_channel, np.zeros(channels)
    return np.ones(channels), per_channel


def _fold_after(graph, layer, node, scale, shift):
    weight = layer.params["weight"].astype(np.float64)
    bias = layer.params.get("bias")
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    attrs = dict(layer.attrs, bias=True)
    params = dict(weight=weight.astype(np.float32), bias=(bias * scale + shift).astype(np.float32))
    graph.replace(node.name, layer.op, layer.inputs, attrs, params)
    graph.erase(layer.name)


def _fold_before(graph, norm, layer, scale, shift):
    weight = layer.params["weight"].astype(np.float64)
    bias = layer.params.get("bias")
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    if layer.op == "Linear":
        new_weight, new_bias = weight * scale[None, :], bias + weight @ shift
    else:
        groups = layer.attrs["groups"]
        cout, cin_group = weight.shape[:2]
        index = (np.arange(cout) // (cout // groups))[:, None] * cin_group + np.arange(cin_group)[None, :]
        new_weight = weight * scale[index][:, :, None, None]
        new_bias = bias + np.einsum("oihw,oi->o", weight, shift[index])
    params = dict(weight=new_weight.astype(np.float32), bias=new_bias.astype(np.float32))
    graph.replace(layer.name, layer.op, norm.inputs, dict(layer.attrs, bias=True), params)
    graph.erase(norm.name)


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if node.name not in graph or node.op not in ("BatchNorm2d", "Mul", "Add"):
            continue
        node = graph.node(node.name)
        layer = next((graph.node(i) for i in node.inputs if graph.node(i).op in LAYERS), None)
        if layer is not None:
            _after(graph, layer, node, result)
        elif node.op == "BatchNorm2d":
            _before(graph, node, result)
    return result


def _after(graph, layer, node, result):
    label = f"{describe(layer)} -> {describe(node)}"
    reader, why = sole_reader(graph, layer.name)
    affine = _per_channel(graph, node, layer)
    if affine is None:
        return
    if reader is None or isinstance(affine, str) or layer.attrs.get("activation") or not _channel_axis_ok(layer, node):
        why = why or (affine if isinstance(affine, str) else "an activation is fused into the layer"
                      if layer.attrs.get("activation") else "Linear on a value of rank > 2")
        result.refusals.append(f"{label}: not folded: {why}")
        return
    _fold_after(graph, layer, node, *affine)
    result.rewrites.append(f"{label} -> {node.name} ({layer.op}, {node.op} folded)")


def _before(graph, norm, result):
    reader, why = sole_reader(graph, norm.name)
    if reader is None or reader.op not in LAYERS:
        return
    label = f"{describe(norm)} -> {describe(reader)}"
    if reader.op == "Conv2d" and any(reader.attrs["pads"]):
        result.refusals.append(f"{label}: not folded: the convolution pads with zeros, BatchNorm's shift would "
                               f"reach the border")
        return
    if reader.op == "Linear" and len(norm.type.shape) != 2:
        result.refusals.append(f"{label}: not folded: Linear on a value of rank > 2")
        return
    scale, shift = BatchNorm2d.scale_shift(norm.attrs, norm.params)
    _fold_before(graph, norm, reader, np.asarray(scale, np.float64), np.asarray(shift, np.float64))
    result.rewrites.append(f"{label} -> {reader.name} ({reader.op}, BatchNorm2d folded in front)")


PASS = Pass("fold_batchnorm", 2, run, "BatchNorm and per-channel affine folded into Conv2d/Linear")
