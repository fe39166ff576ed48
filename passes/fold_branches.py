"""Fold parallel linear branches of one input that are summed into one convolution (RepVGG's re-parametrization).

Add(conv_a(x), conv_b(x), ..., x) where each branch reads the same x: convolution is linear in its kernel, so
the sum is one convolution whose kernel is the sum of the branch kernels, each embedded in the largest one.
A branch with kernel k and leading pad p sits at offset P − p inside a kernel of size K with leading pad P;
it fits when that offset is ≥ 0 and offset + k ≤ K. The zero padding of the input is then the same for
every branch (weights outside a branch's own window are 0), so the fold is exact at the borders too. x itself
is a 1×1 identity kernel, and BatchNorm2d(x) a 1×1 diagonal one plus a bias. All branches must share the
stride and dilation and produce the same shape; grouped kernels are expanded to dense ones.
"""
from __future__ import annotations

import numpy as np

from .base import Pass, PassResult, sole_reader
from .fold_linear import allowed, dense


def _branch(graph, add, name):
    """(kind, node) when input ``name`` of ``add`` is a foldable branch; kind is "conv", "bn" or "identity"."""
    node = graph.node(name)
    if node.op in ("Conv2d", "BatchNorm2d") and sole_reader(graph, name)[0] is add:
        if node.op == "Conv2d" and node.attrs.get("activation"):
            return None
        return ("conv" if node.op == "Conv2d" else "bn"), node
    return None


def _as_kernel(kind, node, channels):
    """(weight (out, in, kh, kw), bias, pads, stride, dilation) of a branch, as a dense convolution."""
    if kind == "conv":
        a = node.attrs
        weight = dense(node.params["weight"].astype(np.float64), a["groups"], a["in_channels"])
        bias = node.params.get("bias")
        return weight, None if bias is None else bias.astype(np.float64), a["pads"], a["stride"], a["dilation"]
    eye = np.eye(channels)[:, :, None, None]
    if kind == "identity":
        return eye, None, (0, 0, 0, 0), (1, 1), (1, 1)
    from cnngraph.layers import BatchNorm2d
    scale, shift = BatchNorm2d.scale_shift(node.attrs, node.params)
    return eye * np.asarray(scale)[:, None, None, None], np.asarray(shift, np.float64), (0, 0, 0, 0), (1, 1), (1, 1)


def _merge(kernels):
    """The merged (weight, bias, pads) or a reason."""
    strides = {k[3] for k in kernels}
    dilations = {k[4] for k in kernels}
    if len(strides) > 1 or len(dilations) > 1:
        return "the branches differ in stride or dilation"
    big = max(kernels, key=lambda k: k[0].shape[2] * k[0].shape[3])
    (kh, kw), (top, left) = big[0].shape[2:], big[2][:2]
    weight = np.zeros((big[0].shape[0], big[0].shape[1], kh, kw))
    bias = np.zeros(big[0].shape[0])
    for w, b, pads, _, _ in kernels:
        dh, dw = top - pads[0], left - pads[1]
        if dh < 0 or dw < 0 or dh + w.shape[2] > kh or dw + w.shape[3] > kw:
            return f"a {w.shape[2]}×{w.shape[3]} branch with pads {pads} does not sit inside the {kh}×{kw} one"
        weight[:, :, dh:dh + w.shape[2], dw:dw + w.shape[3]] += w
        if b is not None:
            bias += b
    return weight, bias, big[2], big[3], big[4]


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if node.op != "Add" or node.name not in graph or node.attrs.get("broadcast"):
            continue
        add = graph.node(node.name)
        by_source: dict[str, list] = {}
        for name in dict.fromkeys(add.inputs):
            if add.inputs.count(name) > 1:
                continue
            branch = _branch(graph, add, name)
            if branch is not None:
                by_source.setdefault(branch[1].inputs[0], []).append(branch)
            elif graph.type_of(name).shape == add.type.shape and len(graph.type_of(name).shape) == 4:
                by_source.setdefault(name, []).append(("identity", None))
        for source, branches in by_source.items():
            if len(branches) < 2 or not any(kind == "conv" for kind, _ in branches):
                continue
            _fold(graph, add, source, branches, level, result)
    return result


def _fold(graph, add, source, branches, level, result):
    channels = graph.type_of(source).shape[1]
    names = [node.name if node is not None else source for _, node in branches]
    label = f"{add.name} (Add of {', '.join(names)})"
    if any(kind != "conv" for kind, _ in branches) and graph.type_of(source).shape != add.type.shape:
        return
    kernels = [_as_kernel(kind, node, channels) for kind, node in branches]
    merged = _merge(kernels)
    if isinstance(merged, str):
        result.refusals.append(f"{label}: branches not folded: {merged}")
        return
    weight, bias, pads, stride, dilation = merged
    convs = [node for kind, node in branches if kind == "conv"]
    old_macs = sum(int(np.prod(add.type.shape[1:])) * n.params["weight"][0].size for n in convs)
    old_params = sum(n.params[k].size for _, n in branches if n is not None for k in ("weight", "bias") if k in n.params)
    new_macs = int(np.prod(add.type.shape[1:])) * int(np.prod(weight.shape[1:]))
    why = allowed(level, old_macs, new_macs, old_params, weight.size + bias.size)
    if why is not None:
        result.refusals.append(f"{label}: branches not folded: {why}")
        return
    attrs = dict(in_channels=channels, out_channels=weight.shape[0], kernel_size=tuple(weight.shape[2:]),
                 stride=stride, pads=pads, dilation=dilation, groups=1, bias=True)
    params = dict(weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    rest = [name for name in add.inputs if name not in names]
    if not rest:                                       # every summand folded: the Add becomes the conv
        graph.replace(add.name, "Conv2d", [source], attrs, params)
        keeper = add.name
    else:                                              # the first branch conv becomes the sum of the branches
        keeper = convs[0].name
        graph.replace(keeper, "Conv2d", [source], attrs, params)
        graph.set_inputs(add.name, [keeper] + rest)
    for _, node in branches:
        if node is not None and node.name != keeper and node.name in graph and not graph.users(node.name):
            graph.erase(node.name)
    result.rewrites.append(f"{label} -> {keeper} (Conv2d {weight.shape[2]}×{weight.shape[3]}, {len(branches)} branches)")


PASS = Pass("fold_branches", 2, run, "parallel conv branches of one input summed, folded into one conv")
