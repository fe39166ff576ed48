"""Fold two convolutions of the same rank (Conv1d, Conv2d or Conv3d) in a row with nothing non-linear between
them into one. The formulas below are written for 2-D; every one is per axis, so they hold for any rank.

Conv∘Conv (the second conv unpadded, so every value it reads is a real output of the first):
    1×1 after any conv:  W[o,c] = Σ_m W2[o,m]·W1[m,c] (kernel, pads and dilation of the first, strides
        multiplied: keeping every s2-th output of a stride-s1 conv is a stride-s1·s2 conv);
    k×k after k×k (dilation 1): the full 2-D convolution of the kernels,
        W[o,c,a·s1+p,b·s1+q] += Σ_m W2[o,m,a,b]·W1[m,c,p,q], kernel k1+(k2−1)·s1, stride s1·s2, pads of the first;
    both: b[o] = b2[o] + Σ_{m,a,b} W2[o,m,a,b]·b1[m]. Grouped kernels are expanded to dense ones first.
    A padded second conv would read zeros where the folded one computes the first conv over the border:
    never exact, so refused. Dilation is refused along an axis where the second kernel has more than one
    tap (the taps would not form one regular grid); along the others the first kernel keeps its own.
    The geometry is per axis, so a 1×3 after a 2×2 is "1×1 after" along the first axis and "k×k after k×k"
    along the second. An activation fused into the first layer stops the fold; one fused into the second
    stays on the result.
Average pooling is a depthwise convolution with weights 1/(kh·kw) (when it counts its padding, or has none,
    and does not use ceil_mode or dilation): at level 3 it folds like a conv with the conv next to it, where
    that cuts MACs — e.g. 3×3 conv -> 2×2/2 average pool is one 4×4/2 conv, 16 MACs per output instead of 4·9.
The cost model (passes/cost.py) decides whether a fold pays at the level asked. Arithmetic in float64,
rounded once to float32.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

from . import cost
from .rules import rule, rule_pass

CONVS = ("Conv1d", "Conv2d", "Conv3d")


def dense(weight: np.ndarray, groups: int, in_channels: int) -> np.ndarray:
    """A grouped kernel (out, in/groups, k...) as the equivalent dense one (out, in, k...)."""
    if groups == 1:
        return weight
    out, per_group = weight.shape[:2]
    full = np.zeros((out, in_channels, *weight.shape[2:]), weight.dtype)
    for o in range(out):
        start = (o // (out // groups)) * per_group
        full[o, start:start + per_group] = weight[o]
    return full


def _pair_check(first, second) -> str | None:
    a, b = first.attrs, second.attrs
    if any(b["pads"]):
        return f"{second.name} pads its input with zeros: the folded conv would not be exact at the border"
    if any(b["kernel_size"][i] > 1 and (a["dilation"][i] != 1 or b["dilation"][i] != 1)
           for i in range(len(b["kernel_size"]))):
        return "a dilated kernel"            # along an axis where the second kernel has more than one tap
    return None


def composed_attrs(first, second) -> dict:
    """Attributes of the one conv equal to ``second`` after ``first``."""
    a, b = first.attrs, second.attrs
    s1, k1, k2 = a["stride"], a["kernel_size"], b["kernel_size"]
    attrs = dict(in_channels=a["in_channels"], out_channels=b["out_channels"],
                 kernel_size=tuple(k + (k_2 - 1) * s for k, k_2, s in zip(k1, k2, s1)),
                 stride=tuple(s * s2 for s, s2 in zip(s1, b["stride"])), pads=a["pads"],
                 dilation=tuple(d if k_2 == 1 else 1 for d, k_2 in zip(a["dilation"], k2)), groups=1,
                 bias="bias" in first.params or "bias" in second.params)
    if b.get("activation"):
        attrs["activation"] = b["activation"]
    return attrs


def composed_params(first, second, attrs) -> dict:
    """Its parameters: kernels composed as a full N-D convolution over the middle channels."""
    a, b = first.attrs, second.attrs
    w1 = dense(first.params["weight"].astype(np.float64), a["groups"], a["in_channels"])
    w2 = dense(second.params["weight"].astype(np.float64), b["groups"], b["in_channels"])
    s1, k1 = a["stride"], w1.shape[2:]
    middle = w1.reshape(w1.shape[0], -1)
    weight = np.zeros((w2.shape[0], w1.shape[1], *attrs["kernel_size"]))
    for tap in itertools.product(*(range(k) for k in w2.shape[2:])):      # the second kernel's taps
        product = (w2[(slice(None), slice(None)) + tap] @ middle).reshape(w2.shape[0], *w1.shape[1:])
        weight[(slice(None), slice(None)) + tuple(slice(t * s, t * s + k) for t, s, k in zip(tap, s1, k1))] += product
    params = {"weight": weight.astype(np.float32)}
    if attrs["bias"]:
        b1, b2 = first.params.get("bias"), second.params.get("bias")
        bias = np.zeros(w2.shape[0]) if b2 is None else b2.astype(np.float64)
        if b1 is not None:
            bias = bias + w2.sum(axis=tuple(range(2, w2.ndim))) @ b1.astype(np.float64)
        params["bias"] = bias.astype(np.float32)
    return params


def as_conv(graph, node):
    """A convolution, or an AvgPool2d seen as the depthwise convolution it is (weights 1/(kh·kw)), or a reason: a
    pool that divides by fewer taps at the border (count_include_pad off with padding), drops or adds windows
    (ceil_mode) or spreads its taps (dilation) is not that convolution."""
    if node.op in CONVS:
        return node
    a = node.attrs
    if a["ceil_mode"] or (any(a["pads"]) and not a["count_include_pad"]) or tuple(a.get("dilation", (1, 1))) != (1, 1):
        return f"{node.name} (AvgPool2d) is not a convolution (ceil_mode, dilation, or padding not counted)"
    channels, (kh, kw) = graph.type_of(node.name).shape[1], a["kernel_size"]
    attrs = dict(in_channels=channels, out_channels=channels, kernel_size=(kh, kw), stride=a["stride"],
                 pads=a["pads"], dilation=(1, 1), groups=channels, bias=False)
    return SimpleNamespace(name=node.name, attrs=attrs,
                           params={"weight": np.full((channels, 1, kh, kw), 1.0 / (kh * kw), np.float32)})


def _fold(m, first, second):
    """Check and fold ``second``(``first``(x)), each a convolution of one rank or an AvgPool2d."""
    graph = m.graph
    if first.attrs.get("activation"):
        return None                                  # an activation between: not a linear chain at all
    if why := m.read_elsewhere(first.name):
        return m.refuse(why, first, second)
    convs = [as_conv(graph, first), as_conv(graph, second)]
    why = next((c for c in convs if isinstance(c, str)), None) or _pair_check(*convs)
    if why:
        return m.refuse(why, first, second)
    attrs = composed_attrs(*convs)
    op = next(node.op for node in (first, second) if node.op in CONVS)
    why = cost.allows(m.level, cost.of_nodes(graph, [first, second]),
                      cost.of_new(graph, op, first.inputs, attrs, second.type))
    if why:
        return m.refuse(why, first, second)
    graph.replace(second.name, op, first.inputs, attrs, composed_params(*convs, attrs))
    graph.erase(first.name)
    return m.rewrote([first, second], [second.name])


@rule(anchor=lambda node: node.op in CONVS)
def fold_conv_pair(m):
    """conv2(conv1(x)) -> conv(x), W = W2 ⊛ W1, b = b2 + ΣW2·b1 (same rank)"""
    first = m.input()
    return _fold(m, first, m.node) if first.op == m.node.op else None


@rule(anchor=lambda node: node.op in ("Conv2d", "AvgPool2d"), level=3)
def fold_avgpool_with_conv(m):
    """conv(avgpool(x)) or avgpool(conv(x)) -> conv(x), the pool a depthwise conv of weights 1/(kh·kw)"""
    first = m.input()
    ops = {first.op, m.node.op}
    return _fold(m, first, m.node) if ops == {"Conv2d", "AvgPool2d"} else None


PASS = rule_pass("fold_conv", 2, [fold_conv_pair, fold_avgpool_with_conv],
                 "consecutive convolutions (and, at level 3, average pooling) with nothing non-linear between folded")
