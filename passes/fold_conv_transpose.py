"""Fold a pointwise convolution (kernel 1 on every axis, stride 1, unpadded) into the transposed convolution
next to it: channel mixing pixel by pixel commutes with the transposed convolution's scatter.

With T of weight (in, out, k…) (groups expanded to a dense weight) and P of weight (out_P, in_P):
  P after T:   P(T(x) + b_T) + b_P  ->  W'[i, o, k…] = Σ_m P[o, m]·T[i, m, k…],  b' = P·b_T + b_P.
               Always exact.
  T after P:   T(P(x)) + b_T        ->  W'[c, o, k…] = Σ_m P[m, c]·T[m, o, k…],  b' = b_T.
               Only when P has no bias: a constant input is not constant after T at the border (fewer taps
               land there), so P's bias cannot move through T.
An activation fused into the first layer stops the fold (it is between them); one fused into the second stays
on the result. The cost model (passes/cost.py) decides whether it pays at the level asked (at level 2 neither
MACs nor parameters may grow). Arithmetic in float64, rounded once to float32.
"""
from __future__ import annotations

import numpy as np

from . import cost
from .fold_conv import CONVS, dense
from .rules import rule, rule_pass

TRANSPOSED = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")


def dense_transposed(node) -> np.ndarray:
    """A grouped transposed weight (in, out/groups, k…) as the dense (in, out, k…) one, in float64."""
    weight, groups = node.params["weight"].astype(np.float64), node.attrs["groups"]
    if groups == 1:
        return weight
    cin, cout_g = weight.shape[:2]
    full = np.zeros((cin, cout_g * groups, *weight.shape[2:]))
    for g in range(groups):
        rows = slice(g * (cin // groups), (g + 1) * (cin // groups))
        full[rows, g * cout_g:(g + 1) * cout_g] = weight[rows]
    return full


def pointwise(node) -> np.ndarray | None:
    """A convolution's (out, in) matrix when it mixes channels pixel by pixel, else None."""
    a = node.attrs
    if any(k != 1 for k in a["kernel_size"]) or any(s != 1 for s in a["stride"]) or any(a["pads"]):
        return None
    weight = dense(node.params["weight"].astype(np.float64), a["groups"], a["in_channels"])
    return weight.reshape(weight.shape[0], weight.shape[1])


def _replace(m, first, second, op, attrs, params):
    graph = m.graph
    why = cost.allows(m.level, cost.of_nodes(graph, [first, second]),
                      cost.of_new(graph, op, first.inputs, attrs, second.type))
    if why:
        return m.refuse(why, first, second)
    graph.replace(second.name, op, first.inputs, attrs, {k: v.astype(np.float32) for k, v in params.items()})
    graph.erase(first.name)
    return m.rewrote([first, second], [second.name])


def _check(m, first, second):
    if first.attrs.get("activation"):
        return "an activation is fused into the first layer"
    if len(first.type.shape) != len(second.type.shape):
        return "layers of different ranks"
    return m.read_elsewhere(first.name)


@rule(anchor=lambda node: node.op in CONVS)
def fold_pointwise_after_transposed(m):
    """P(T(x)) -> T'(x), W' = P·T along T's output axis, b' = P·b_T + b_P"""
    deconv, conv = m.input(), m.node
    if deconv.op not in TRANSPOSED:
        return None
    matrix = pointwise(conv)
    if matrix is None:
        return m.refuse(f"{conv.name} is not a pointwise convolution (kernel 1, stride 1, unpadded)", deconv, conv)
    if why := _check(m, deconv, conv):
        return m.refuse(why, deconv, conv)
    weight = np.einsum("om,im...->io...", matrix, dense_transposed(deconv))
    attrs = dict(deconv.attrs, out_channels=conv.attrs["out_channels"], groups=1,
                 bias="bias" in deconv.params or "bias" in conv.params)
    attrs.pop("activation", None)
    if conv.attrs.get("activation"):
        attrs["activation"] = conv.attrs["activation"]
    params = {"weight": weight}
    if attrs["bias"]:
        bias = conv.params["bias"].astype(np.float64) if "bias" in conv.params else np.zeros(matrix.shape[0])
        if "bias" in deconv.params:
            bias = bias + matrix @ deconv.params["bias"].astype(np.float64)
        params["bias"] = bias
    return _replace(m, deconv, conv, deconv.op, attrs, params)


@rule(anchor=lambda node: node.op in TRANSPOSED)
def fold_pointwise_before_transposed(m):
    """T(P(x)) -> T'(x), W' = Pᵀ·T along T's input axis; P without a bias"""
    conv, deconv = m.input(), m.node
    if conv.op not in CONVS:
        return None
    matrix = pointwise(conv)
    if matrix is None:
        return m.refuse(f"{conv.name} is not a pointwise convolution (kernel 1, stride 1, unpadded)", conv, deconv)
    if "bias" in conv.params:
        return m.refuse("the pointwise convolution has a bias: after the transposed one it is not constant at "
                        "the border", conv, deconv)
    if why := _check(m, conv, deconv):
        return m.refuse(why, conv, deconv)
    weight = np.einsum("mc,mo...->co...", matrix, dense_transposed(deconv))
    attrs = dict(deconv.attrs, in_channels=conv.attrs["in_channels"], groups=1)
    params = {"weight": weight}
    if "bias" in deconv.params:
        params["bias"] = deconv.params["bias"]
    return _replace(m, conv, deconv, deconv.op, attrs, params)


PASS = rule_pass("fold_conv_transpose", 2, [fold_pointwise_after_transposed, fold_pointwise_before_transposed],
                 "pointwise convolutions folded into the transposed convolution next to them")
