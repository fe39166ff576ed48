"""Canonicalize the expressions exporters write for LayerNorm and GroupNorm back into those layers (level 1: the
importer maps each ONNX node one to one).

LayerNorm before opset 17 (PyTorch's TorchScript exporter, and ours):
    m = ReduceMean(x, trailing axes A), d = x − m, v = ReduceMean(d², A), y = d / √(v + eps) [· γ] [+ β]
is LayerNorm(normalized_shape = x.shape[A], eps, γ, β): the same mean, the same biased variance (d² written
as Pow(d, 2) or d·d), the same division. γ and β must be constants that broadcast to the normalized shape only
(a γ that also varies along a leading axis is no LayerNorm weight).

GroupNorm before opset 21 (PyTorch's TorchScript exporter, and ours):
    r = Reshape(x, (N, G, −1)), s = InstanceNorm1d(r) without affine, y = Reshape(s, x.shape) [· γ] [+ β]
is GroupNorm(G, C, eps, γ, β) when γ, β are per-channel constants ((C, 1, …) or a scalar): InstanceNorm over
the G rows of C/G·spatial values each is exactly GroupNorm's standardisation.

Every intermediate must have its single reader and not be a graph output: the rewrite removes it.
"""
from __future__ import annotations

import numpy as np

from .base import constant_value
from .rules import rule, rule_pass


def _chain(m, first):
    """The nodes after ``first`` that each read their predecessor alone: [(node, other operand)], for the
    optional trailing Mul γ and Add β."""
    steps, current = [], first
    for op in ("Mul", "Add"):
        users = m.graph.users(current.name)
        if m.read_elsewhere(current.name) or len(users) != 1:
            break
        user = m.graph.node(users[0])
        if user.op != op or len(user.inputs) != 2:
            continue
        other = user.inputs[1] if user.inputs[0] == current.name else user.inputs[0]
        value = constant_value(m.graph, other)
        if value is None:
            break
        steps.append((user, value))
        current = user
    return steps


def _fitted(value: np.ndarray, rank: int, wanted: tuple, axis_from: int) -> np.ndarray | None:
    """``value`` as an array of shape ``wanted`` when, broadcast against a rank-``rank`` value, it varies only
    along the axes axis_from, axis_from + 1, ... of ``wanted``; None otherwise."""
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    end = axis_from + len(wanted)
    if any(d != 1 for d in shape[:axis_from] + shape[end:]):
        return None
    try:
        return np.ascontiguousarray(np.broadcast_to(value.reshape(shape[axis_from:end]), wanted), np.float32)
    except ValueError:
        return None


def _affine(m, last, rank, wanted, axis_from):
    """(params, nodes, last node) of the optional Mul γ, Add β after ``last``; a reason string if they misfit."""
    params, nodes = {}, []
    for node, value in _chain(m, last):
        key = "weight" if node.op == "Mul" else "bias"
        fitted = _fitted(value, rank, wanted, axis_from)
        if fitted is None:
            return f"the constant of {node.name} (shape {list(value.shape)}) is not per {wanted}"
        params[key] = fitted
        nodes.append(node)
    return params, nodes


def _finish(m, matched, nodes, op, inputs, attrs, params):
    """Replace the chain by one ``op`` node named after its last node; erase the rest (last first)."""
    last = nodes[-1]
    m.graph.replace(last.name, op, inputs, attrs, params)
    for node in reversed(nodes[:-1]):
        m.graph.erase(node.name)
    return m.rewrote(matched, [last.name])


@rule(anchor=lambda node: node.op == "InstanceNorm1d")
def group_norm_from_instance_norm(m):
    """Reshape(N, G, −1) → InstanceNorm1d → Reshape(x.shape) [→ Mul γ] [→ Add β] -> GroupNorm(G, C)"""
    norm = m.node
    grouped = m.input()
    if not grouped.layer.reshape_like or norm.attrs["affine"]:
        return None
    x = grouped.inputs[0]
    shape, rows = m.graph.type_of(x).shape, grouped.type.shape
    groups = rows[1]
    if len(shape) < 2 or not isinstance(shape[1], int) or rows[0] != shape[0] or shape[1] % groups:
        return m.refuse(f"{grouped.name} reshapes {list(shape)} to {list(rows)}, not (N, G, -1) of (N, C, ...)",
                        grouped, norm)
    for node in (grouped, norm):
        if why := m.read_elsewhere(node.name):
            return m.refuse(why, grouped, norm)
    back = m.graph.node(m.graph.users(norm.name)[0])
    if not back.layer.reshape_like or back.type.shape != shape:
        return m.refuse(f"{norm.name} is not reshaped back to {list(shape)}", grouped, norm)
    channels = shape[1]
    found = _affine(m, back, len(shape), (channels,), 1)
    if isinstance(found, str):
        return m.refuse(found, grouped, norm, back)
    params, affine_nodes = found
    nodes = [grouped, norm, back, *affine_nodes]
    if params:
        params.setdefault("weight", np.ones(channels, np.float32))
        params.setdefault("bias", np.zeros(channels, np.float32))
    attrs = dict(num_groups=int(groups), num_channels=channels, eps=norm.attrs["eps"], affine=bool(params))
    return _finish(m, nodes, nodes, "GroupNorm", [x], attrs, params)


def _trailing_mean(m, node, x_rank):
    """The axes of a ReduceMean with keepdims over trailing axes, as positives; None otherwise."""
    if node.op != "ReduceMean" or not node.attrs["keepdims"]:
        return None
    axes = sorted(a % x_rank for a in (node.attrs["axes"] or range(x_rank)))
    return axes if axes == list(range(x_rank - len(axes), x_rank)) and axes[0] > 0 else None


def _is_square_of(m, node, d) -> bool:
    """Pow(d, 2) or d·d."""
    if node.op == "Mul":
        return list(node.inputs) == [d, d]
    if node.op == "Pow" and node.inputs[0] == d:
        exponent = constant_value(m.graph, node.inputs[1])
        return exponent is not None and exponent.size == 1 and float(exponent.reshape(())) == 2.0
    return False


@rule(anchor=lambda node: node.op == "Div")
def layer_norm_from_expression(m):
    """(x − mean(x)) / √(mean((x − mean(x))²) + eps) [· γ] [+ β], means over trailing axes -> LayerNorm"""
    div = m.node
    sub, sqrt = (m.graph.node(name) for name in div.inputs)
    if sub.op != "Sub" or sqrt.op != "Sqrt":
        return None
    x, mean = (m.graph.node(name) for name in sub.inputs)
    if mean.op != "ReduceMean" or mean.inputs[0] != x.name:
        return None
    rank = len(m.graph.type_of(x.name).shape)
    axes = _trailing_mean(m, mean, rank)
    if axes is None:
        return m.refuse(f"{mean.name} does not average trailing axes with keepdims", sub, div)
    add = m.graph.node(sqrt.inputs[0])
    if add.op != "Add" or len(add.inputs) != 2:
        return None
    variance = m.graph.node(add.inputs[0])
    eps = constant_value(m.graph, add.inputs[1])
    if variance.op != "ReduceMean" or eps is None or eps.size != 1:
        return m.refuse("the variance is not shifted by a constant eps", sub, div)
    square = m.graph.node(variance.inputs[0])
    if _trailing_mean(m, variance, rank) != axes or not _is_square_of(m, square, sub.name):
        return m.refuse("the variance is not the mean of the squared deviation over the same axes", sub, div)
    shape = m.graph.type_of(x.name).shape
    normalized = tuple(shape[axes[0]:])
    if not all(isinstance(d, int) for d in normalized):
        return m.refuse(f"normalizes over symbolic dims {list(normalized)}", sub, div)
    inner = [mean, sub, square, variance, add, sqrt]
    readers = {mean.name: 1, sub.name: 3 if square.op == "Mul" else 2}
    for node in inner:
        if node.name in m.graph.outputs:
            return m.refuse(f"{node.name} is a graph output", sub, div)
        if m.graph.use_count(node.name) != readers.get(node.name, 1):
            return m.refuse(f"{node.name} has another reader", sub, div)
    found = _affine(m, div, rank, normalized, axes[0])
    if isinstance(found, str):
        return m.refuse(found, sub, div)
    params, affine_nodes = found
    if "bias" in params:
        params.setdefault("weight", np.ones(normalized, np.float32))
    eps_value = float(np.float32(eps.reshape(())))
    attrs = dict(normalized_shape=normalized, eps=float(str(np.float32(eps_value))), elementwise_affine=bool(params),
                 bias="bias" in params)
    nodes = [*inner, div, *affine_nodes]
    return _finish(m, nodes, nodes, "LayerNorm", [x.name], attrs, params)


PASS = rule_pass("canon_layernorm", 1, [group_norm_from_instance_norm, layer_norm_from_expression],
                 "the expressions exporters write for LayerNorm and GroupNorm made those layers")
