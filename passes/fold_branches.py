"""Fold parallel linear branches of one input that are summed into one convolution (RepVGG's re-parametrization).

Add(conv_a(x), conv_b(x), ..., x) where each branch reads the same x: convolution is linear in its kernel, so
the sum is one convolution whose kernel is the sum of the branch kernels, each embedded in the largest one.
Tap j of a branch (leading pad p, dilation d) reads input pixel o·s − p + j·d; tap J of the largest kernel
(leading pad P, the same dilation d and stride s) reads o·s − P + J·d. They read the same pixel when
    J = j + (P − p) / d,
so a branch sits at tap offset (P − p)/d, which must be a whole number ≥ 0 with offset + k ≤ K; else the fold
is refused. The zero padding of the input is then the same for every branch (weights outside a branch's own
window are 0), so the fold is exact at the borders too. x itself is a 1×1 identity kernel, and a per-channel
affine op of x (BatchNorm2d) a 1×1 diagonal one plus a bias. Dilation means nothing along an axis where a
kernel has one tap, so only branches wider than 1 must agree on it; every branch must share the stride.
Grouped kernels are expanded to dense ones. The cost model (passes/cost.py) decides whether it pays.
Everything is per axis, so Conv1d and Conv3d branches fold the same way as Conv2d ones.
"""
from __future__ import annotations

import math

import numpy as np

from . import cost
from .fold_conv import CONVS, dense
from .rules import rule, rule_pass


def _as_kernel(graph, node, source):
    """(weight (out, in, k...), bias, pads, stride, dilation) of a branch as a dense convolution, or None
    when it is not a branch: ``node`` is None for x itself."""
    shape = graph.type_of(source).shape
    channels, dims = shape[1], len(shape) - 2
    eye, ones = np.eye(channels).reshape(channels, channels, *[1] * dims), (1,) * dims
    if node is None:
        return eye, None, (0,) * (2 * dims), ones, ones
    if node.layer.channel_affine:
        scale, shift = node.layer.scale_shift(node.attrs, node.params)
        return (eye * np.asarray(scale).reshape(-1, *[1] * (dims + 1)), np.asarray(shift, np.float64),
                (0,) * (2 * dims), ones, ones)
    a = node.attrs
    weight = dense(node.params["weight"].astype(np.float64), a["groups"], a["in_channels"])
    bias = node.params.get("bias")
    return weight, None if bias is None else bias.astype(np.float64), a["pads"], a["stride"], a["dilation"]


def merge_kernels(kernels):
    """The merged (weight, bias, pads, stride, dilation), or why the branches do not line up."""
    if len({k[3] for k in kernels}) > 1:
        return "the branches differ in stride"
    big = max(kernels, key=lambda k: math.prod(k[0].shape[2:]))
    size, pads = big[0].shape[2:], big[2]
    dims, name = len(size), "×".join(map(str, size))
    dilation = []
    for axis in range(dims):                           # only kernels wider than 1 along the axis must agree
        used = {k[4][axis] for k in kernels if k[0].shape[2 + axis] > 1}
        if len(used) > 1:
            return "the branches differ in dilation"
        dilation.append(used.pop() if used else 1)
    weight = np.zeros((big[0].shape[0], big[0].shape[1], *size))
    bias = np.zeros(big[0].shape[0])
    for w, b, branch_pads, _, _ in kernels:
        offsets, branch = [], "×".join(map(str, w.shape[2:]))
        for axis in range(dims):
            shift, d = pads[axis] - branch_pads[axis], dilation[axis]
            if shift % d:
                return (f"a {branch} branch with pads {branch_pads} is {shift} pixels from the "
                        f"{name} one, not a whole number of its taps (dilation {d})")
            offsets.append(shift // d)
        if any(o < 0 or o + k > big_k for o, k, big_k in zip(offsets, w.shape[2:], size)):
            return f"a {branch} branch with pads {branch_pads} does not sit inside the {name} one"
        weight[(slice(None), slice(None)) + tuple(slice(o, o + k) for o, k in zip(offsets, w.shape[2:]))] += w
        if b is not None:
            bias += b
    return weight, bias, pads, big[3], tuple(dilation)


def _branches(graph, add):
    """{source: [branch node, or None for the source itself]} for the summands of ``add``."""
    by_source: dict[str, list] = {}
    for name in dict.fromkeys(add.inputs):
        if add.inputs.count(name) > 1:
            continue
        node = graph.node(name)
        foldable = node.op in CONVS and not node.attrs.get("activation") or node.layer.channel_affine
        if foldable and graph.use_count(name) == 1 and name not in graph.outputs:
            by_source.setdefault(node.inputs[0], []).append(node)
        elif graph.type_of(name).shape == add.type.shape and len(add.type.shape) in (3, 4, 5):
            by_source.setdefault(name, []).append(None)
    return by_source


@rule(anchor=lambda node: node.op == "Add" and not node.attrs.get("broadcast"))
def fold_branches(m):
    """Add(conv_a(x), conv_b(x), bn(x), x) -> conv(x), kernel Σ W_i embedded at offset (P − p_i)/d"""
    graph, add = m.graph, m.node
    for source, branches in _branches(graph, add).items():
        convs = [node for node in branches if node is not None and node.op in CONVS]
        if len(branches) < 2 or not convs:
            continue
        if len(convs) < len(branches) and graph.type_of(source).shape != add.type.shape:
            continue
        return _fold(m, source, branches, convs)
    return None


def _fold(m, source, branches, convs):
    graph, add = m.graph, m.node
    nodes = [node for node in branches if node is not None]
    merged = merge_kernels([_as_kernel(graph, node, source) for node in branches])
    if isinstance(merged, str):
        return m.refuse(merged, *nodes, add)
    weight, bias, pads, stride, dilation = merged
    attrs = dict(in_channels=weight.shape[1], out_channels=weight.shape[0], kernel_size=tuple(weight.shape[2:]),
                 stride=stride, pads=pads, dilation=dilation, groups=1, bias=True)
    op = convs[0].op                                   # one source: every conv branch has its rank
    why = cost.allows(m.level, cost.of_nodes(graph, nodes), cost.of_new(graph, op, [source], attrs, add.type))
    if why:
        return m.refuse(why, *nodes, add)
    params = dict(weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    names = {node.name for node in nodes} | ({source} if None in branches else set())
    rest = [name for name in add.inputs if name not in names]
    keeper = add.name if not rest else convs[0].name   # every summand folded: the Add becomes the conv
    graph.replace(keeper, op, [source], attrs, params)
    if rest:
        graph.set_inputs(add.name, [keeper] + rest)
    for node in nodes:
        if node.name != keeper:
            graph.erase(node.name)
    return m.rewrote(nodes + [add], [keeper] if not rest else [keeper, add.name], f"{len(branches)} branches")


PASS = rule_pass("fold_branches", 2, [fold_branches], "parallel conv branches of one input summed, folded into one conv")
