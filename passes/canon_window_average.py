"""Recognise the exporter's ceil_mode average: window sums times 1/divisor -> AvgPool2d (level 1).

An AvgPool2d(ceil_mode) whose divisors no ONNX AveragePool reproduces (pytorch #183528) is exported as a
depthwise Conv of ones, no bias (the window sums), times a constant of 1/divisor per output position. The
importer maps both nodes one to one; this rule gives the pool back.
Conv(x, ones; groups = channels, pads P) · S = AvgPool2d(x, pads p, ceil_mode, count_include_pad c) exactly
when the pool's windows are the Conv's (the same output size, and P's end pads are p's plus the last window's
overhang, which the Conv reads as zeros) and S[i, j] = 1/(d_h[i]·d_w[j]), d the pool's divisors
(cnngraph.shapes.average_pool_divisor, the backend's own definition), bit for bit in float32. The candidate
pools tried have p's begin pads equal to P's and end pads up to P's, count_include_pad either way: at most
2·kh·kw small candidates, symmetric pads (PyTorch's) first; scale tables over SEARCH_TAPS are not searched.
Anything else stays a Conv and a Mul, which compute the same thing.
"""
from __future__ import annotations

import numpy as np

from cnngraph.shapes import average_pool_divisor, overhang, pool_output_size

from .base import constant_value
from .rules import rule, rule_pass

SEARCH_TAPS = 2 ** 20             # the largest window-sum tap table (outputs × kernel per axis) matched to a pool


def is_window_sum(conv) -> bool:
    """A depthwise Conv2d of ones with no bias and nothing fused: a sum over each window, channel by channel."""
    a, weight = conv.attrs, conv.params.get("weight")
    return (conv.op == "Conv2d" and not a["bias"] and not a.get("activation") and a["groups"] > 1
            and a["groups"] == a["in_channels"] == a["out_channels"] and weight is not None
            and bool(np.all(weight == 1)))


def matching_pool(size, conv_attrs, conv_out, scale):
    """The AvgPool2d(ceil_mode) attributes whose windows and 1/divisors are the Conv's and ``scale``, or None."""
    (kh, kw), stride, conv_pads = conv_attrs["kernel_size"], conv_attrs["stride"], conv_attrs["pads"]
    if conv_attrs["dilation"] != (1, 1) or conv_pads[2] >= kh or conv_pads[3] >= kw or scale.ndim != 4 or any(
            n * k > SEARCH_TAPS for n, k in zip(scale.shape[2:], (kh, kw))):
        return None
    top, left = conv_pads[0], conv_pads[1]
    candidates = sorted(((include, bottom, right) for include in (True, False) for bottom in range(conv_pads[2] + 1)
                         for right in range(conv_pads[3] + 1)), key=lambda c: (c[1] != top) + (c[2] != left))
    for include, bottom, right in candidates:
        pads = (top, left, bottom, right)
        out = [pool_output_size(size[i], (kh, kw)[i], stride[i], pads[i], pads[2 + i], 1, True) for i in range(2)]
        if (1, 1, *out) != scale.shape or tuple(out) != tuple(conv_out):
            continue
        beyond = [overhang(size[i], out[i], (kh, kw)[i], stride[i], pads[i], pads[2 + i]) for i in range(2)]
        if (bottom + beyond[0], right + beyond[1]) != (conv_pads[2], conv_pads[3]):
            continue
        divisor = np.outer(*(average_pool_divisor(size[i], out[i], (kh, kw)[i], stride[i], pads[i], pads[2 + i],
                                                  include) for i in range(2)))
        if np.any(divisor == 0):
            continue
        if np.array_equal((1.0 / divisor).astype(np.float32)[None, None], scale):
            return dict(kernel_size=(kh, kw), stride=stride, pads=pads, dilation=(1, 1), ceil_mode=True,
                        count_include_pad=include)
    return None


@rule(anchor=lambda node: node.op == "Mul")
def window_sums_to_avgpool(m):
    """Mul(Conv(x, ones, depthwise), 1/divisor) -> AvgPool2d(x, ceil_mode) with those divisors"""
    mul = m.node
    index = next((i for i in (0, 1) if is_window_sum(m.graph.node(mul.inputs[i]))), None)
    if index is None:
        return None
    conv = m.graph.node(mul.inputs[index])
    scale = constant_value(m.graph, mul.inputs[1 - index])
    if scale is None:
        return m.refuse(f"the scale {mul.inputs[1 - index]} is not a constant", conv, mul)
    if why := m.read_elsewhere(conv.name):
        return m.refuse(why, conv, mul)
    x = conv.inputs[0]
    size = m.graph.type_of(x).shape[2:]
    attrs = matching_pool(size, conv.attrs, conv.type.shape[2:], scale) if all(isinstance(s, int) for s in size) else None
    if attrs is None:
        return m.refuse("no ceil_mode average pool has these windows and divisors", conv, mul)
    m.graph.replace(mul.name, "AvgPool2d", [x], attrs)
    m.graph.erase(conv.name)
    return m.rewrote([conv, mul], [mul.name])


PASS = rule_pass("canon_window_average", 1, [window_sums_to_avgpool],
                 "window sums times 1/divisor made the ceil_mode AvgPool2d they compute")
