"""Fold consecutive linear layers with no non-linearity between them: two linear maps in a row are one.

Linear∘Linear:  W2·(W1·x + b1) + b2 = (W2·W1)·x + (W2·b1 + b2). A chain of any length is split into the
    groups that cost least (a matrix-chain choice): folding a 4096→64→4096 bottleneck into one 4096×4096
    matrix would cost 32× more, so that group is not formed.
Conv∘Conv (the second conv unpadded, so every value it reads is a real output of the first):
    1×1 after any conv:  W[o,c] = Σ_m W2[o,m]·W1[m,c] (kernel, pads and dilation of the first, strides
        multiplied: keeping every s2-th output of a stride-s1 conv is a stride-s1·s2 conv);
    k×k after k×k (dilation 1): the full 2-D convolution of the kernels,
        W[o,c,a·s1+p,b·s1+q] += Σ_m W2[o,m,a,b]·W1[m,c,p,q], kernel k1+(k2−1)·s1, stride s1·s2, pads of the first;
    both: b[o] = b2[o] + Σ_{m,a,b} W2[o,m,a,b]·b1[m]. Grouped kernels are expanded to dense ones first.
    A padded second conv would read zeros where the folded one computes the first conv over the border:
    never exact, so refused. An activation fused into the first layer stops the fold; one fused into the
    last stays on the result.
Average pooling is a depthwise convolution with weights 1/(kh·kw) (when it counts padding, or has none, and
    does not use ceil_mode): at level 3 it folds like a conv with the conv next to it, where that cuts MACs —
    e.g. 3×3 conv -> 2×2/2 average pool is one 4×4/2 conv, 16 MACs per output instead of 4·9.
Cost: a fold happens at level 2 only when neither MACs nor parameters grow, at level 3 whenever MACs fall.
Arithmetic in float64, rounded once to float32.
"""
from __future__ import annotations

import numpy as np

from cnngraph.graph import Node
from cnngraph.layer import Operand
from cnngraph.layers import Conv2d

from .base import Pass, PassResult, describe, sole_reader


def _macs(graph, name: str, inputs, attrs) -> int:
    """MACs per sample of a Conv2d with ``attrs`` over ``inputs`` producing node ``name``'s type."""
    return Conv2d.macs(attrs, [Operand(i, graph.type_of(i)) for i in inputs], graph.type_of(name))


def _param_count(params) -> int:
    return sum(int(a.size) for a in params.values())


def allowed(level: int, old_macs: int, new_macs: int, old_params: int, new_params: int) -> str | None:
    """None when the cost model lets the fold happen at ``level``, else why not."""
    if level >= 3:
        return None if new_macs < old_macs else f"MACs would not fall ({old_macs} -> {new_macs})"
    if new_macs <= old_macs and new_params <= old_params:
        return None
    return (f"it would grow MACs {old_macs} -> {new_macs} or parameters {old_params} -> {new_params} "
            f"(level 3 folds when MACs fall)")


# --- Linear chains ---------------------------------------------------------------------------------------------
def _linear_chain(graph, start):
    """The maximal chain of Linear nodes from ``start`` on, each read only by the next."""
    chain = [start]
    while True:
        reader, _ = sole_reader(graph, chain[-1].name)
        if reader is None or reader.op != "Linear" or chain[-1].attrs.get("activation"):
            return chain
        chain.append(reader)


def _compose_linear(chain):
    weight = chain[0].params["weight"].astype(np.float64)
    bias = chain[0].params.get("bias")
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    for layer in chain[1:]:
        w = layer.params["weight"].astype(np.float64)
        b = layer.params.get("bias")
        bias = w @ bias + (0.0 if b is None else b.astype(np.float64))
        weight = w @ weight
    has_bias = any("bias" in layer.params for layer in chain)
    params = {"weight": weight.astype(np.float32)}
    if has_bias:
        params["bias"] = bias.astype(np.float32)
    return params


def _group_cost(chain, i, j):
    """(old MACs, new MACs, old params, new params) per row for folding chain[i..j]."""
    old_macs = sum(layer.attrs["in_features"] * layer.attrs["out_features"] for layer in chain[i:j + 1])
    old_params = sum(_param_count(layer.params) for layer in chain[i:j + 1])
    fin, fout = chain[i].attrs["in_features"], chain[j].attrs["out_features"]
    has_bias = any(layer.attrs["bias"] for layer in chain[i:j + 1])
    return old_macs, fin * fout, old_params, fin * fout + (fout if has_bias else 0)


def _best_groups(chain, level):
    """Split the chain into consecutive groups of least total MACs, each group allowed by the cost model."""
    n = len(chain)
    best = [(0, 0)] + [None] * n                    # best[j] = (MACs, groups) for chain[:j]
    choice = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            old_macs, new_macs, old_params, new_params = _group_cost(chain, i, j - 1)
            if j - 1 > i and allowed(level, old_macs, new_macs, old_params, new_params):
                continue
            cost = (best[i][0] + (new_macs if j - 1 > i else old_macs), best[i][1] + 1)
            if best[j] is None or cost < best[j]:
                best[j], choice[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append((choice[j], j - 1))
        j = choice[j]
    return groups[::-1]


def _fold_linear_chains(graph, level, result):
    seen = set()
    for node in graph.layers():
        if node.op != "Linear" or node.name in seen or node.name not in graph:
            continue
        producer = graph.node(node.inputs[0])
        if producer.op == "Linear" and sole_reader(graph, producer.name)[0] is not None \
                and not producer.attrs.get("activation"):
            continue                                 # not the start of its chain
        chain = _linear_chain(graph, graph.node(node.name))
        seen.update(layer.name for layer in chain)
        if len(chain) < 2:
            continue
        for i, j in _best_groups(chain, level):
            if i == j:
                continue
            _replace_linear_group(graph, chain[i:j + 1], result)
        if len(_best_groups(chain, level)) == len(chain):
            old_macs, new_macs, old_params, new_params = _group_cost(chain, 0, len(chain) - 1)
            why = allowed(level, old_macs, new_macs, old_params, new_params)
            result.refusals.append(f"{' -> '.join(describe(c) for c in chain)}: not folded: {why}")


def _replace_linear_group(graph, group, result):
    last = group[-1]
    params = _compose_linear(group)
    attrs = dict(in_features=group[0].attrs["in_features"], out_features=last.attrs["out_features"],
                 bias="bias" in params)
    if last.attrs.get("activation"):
        attrs["activation"] = last.attrs["activation"]
    graph.replace(last.name, "Linear", group[0].inputs, attrs, params)
    for layer in reversed(group[:-1]):
        graph.erase(layer.name)
    result.rewrites.append(f"{' + '.join(layer.name for layer in group)} -> {last.name} "
                           f"(Linear {attrs['in_features']}→{attrs['out_features']})")


# --- Conv∘Conv -------------------------------------------------------------------------------------------------
def dense(weight: np.ndarray, groups: int, in_channels: int) -> np.ndarray:
    """A grouped kernel (out, in/groups, kh, kw) as the equivalent dense one (out, in, kh, kw)."""
    if groups == 1:
        return weight
    out, per_group = weight.shape[:2]
    full = np.zeros((out, in_channels, *weight.shape[2:]), weight.dtype)
    for o in range(out):
        start = (o // (out // groups)) * per_group
        full[o, start:start + per_group] = weight[o]
    return full


def _conv_pair_check(first, second) -> str | None:
    a, b = first.attrs, second.attrs
    if any(b["pads"]):
        return f"{second.name} pads its input with zeros: the folded conv would not be exact at the border"
    if b["kernel_size"] != (1, 1) and (a["dilation"] != (1, 1) or b["dilation"] != (1, 1)):
        return "a dilated kernel"
    return None


def composed_attrs(first, second) -> dict:
    """Attributes of the one conv equal to ``second`` after ``first``."""
    a, b = first.attrs, second.attrs
    (s1h, s1w), (k1h, k1w), (k2h, k2w) = a["stride"], a["kernel_size"], b["kernel_size"]
    attrs = dict(in_channels=a["in_channels"], out_channels=b["out_channels"],
                 kernel_size=(k1h + (k2h - 1) * s1h, k1w + (k2w - 1) * s1w),
                 stride=(s1h * b["stride"][0], s1w * b["stride"][1]), pads=a["pads"],
                 dilation=a["dilation"] if (k2h, k2w) == (1, 1) else (1, 1), groups=1,
                 bias="bias" in first.params or "bias" in second.params)
    if b.get("activation"):
        attrs["activation"] = b["activation"]
    return attrs


def composed_params(first, second, attrs) -> dict:
    """Its parameters: kernels composed as a full 2-D convolution over the middle channels."""
    a, b = first.attrs, second.attrs
    w1 = dense(first.params["weight"].astype(np.float64), a["groups"], a["in_channels"])
    w2 = dense(second.params["weight"].astype(np.float64), b["groups"], b["in_channels"])
    (s1h, s1w), (k1h, k1w) = a["stride"], w1.shape[2:]
    middle = w1.reshape(w1.shape[0], -1)
    weight = np.zeros((w2.shape[0], w1.shape[1], *attrs["kernel_size"]))
    for i in range(w2.shape[2]):
        for j in range(w2.shape[3]):
            tap = (w2[:, :, i, j] @ middle).reshape(w2.shape[0], *w1.shape[1:])
            weight[:, :, i * s1h:i * s1h + k1h, j * s1w:j * s1w + k1w] += tap
    params = {"weight": weight.astype(np.float32)}
    if attrs["bias"]:
        b1, b2 = first.params.get("bias"), second.params.get("bias")
        bias = np.zeros(w2.shape[0]) if b2 is None else b2.astype(np.float64)
        if b1 is not None:
            bias = bias + w2.sum(axis=(2, 3)) @ b1.astype(np.float64)
        params["bias"] = bias.astype(np.float32)
    return params


def as_conv(graph, node):
    """A Conv2d, or an AvgPool2d seen as the depthwise convolution it is (weights 1/(kh·kw)), or None with
    why not: a pool that divides by fewer taps at the border (count_include_pad off with padding) or drops
    windows (ceil_mode) is not a convolution."""
    if node.op == "Conv2d":
        return node, None
    a = node.attrs
    if a["ceil_mode"] or (any(a["pads"]) and not a["count_include_pad"]) or tuple(a.get("dilation", (1, 1))) != (1, 1):
        return None, f"{node.name} (AvgPool2d) is not a convolution (ceil_mode, or padding not counted)"
    channels, (kh, kw) = graph.type_of(node.name).shape[1], a["kernel_size"]
    attrs = dict(in_channels=channels, out_channels=channels, kernel_size=(kh, kw), stride=a["stride"],
                 pads=a["pads"], dilation=(1, 1), groups=channels, bias=False)
    return Node(node.name, "Conv2d", node.inputs, attrs,
                {"weight": np.full((channels, 1, kh, kw), 1.0 / (kh * kw), np.float32)}, node.type), None


def _fold_conv_pairs(graph, level, result):
    """Conv∘Conv; at level 3 also through average pooling (a depthwise convolution) where that is cheaper."""
    kinds = ("Conv2d", "AvgPool2d") if level >= 3 else ("Conv2d",)
    for node in graph.layers():
        if node.op not in kinds or node.name not in graph:
            continue
        second, first = graph.node(node.name), graph.node(graph.node(node.name).inputs[0])
        if first.op not in kinds or "Conv2d" not in (first.op, second.op) or first.attrs.get("activation"):
            continue                                 # an activation between: not a linear chain at all
        label = f"{describe(first)} -> {describe(second)}"
        reader, why = sole_reader(graph, first.name)
        (first, why_first), (second, why_second) = as_conv(graph, first), as_conv(graph, second)
        why = why or why_first or why_second or _conv_pair_check(first, second)
        if why is None:
            attrs = composed_attrs(first, second)
            kh, kw = attrs["kernel_size"]
            new_params = attrs["out_channels"] * (attrs["in_channels"] * kh * kw + attrs["bias"])
            old_macs = (_macs(graph, first.name, first.inputs, first.attrs)
                        + _macs(graph, second.name, second.inputs, second.attrs))
            new_macs = _macs(graph, second.name, first.inputs, attrs)
            old_params = sum(_param_count(n.params) for n in (first, second) if graph.node(n.name).op == "Conv2d")
            why = allowed(level, old_macs, new_macs, old_params, new_params)
        if why is not None:
            result.refusals.append(f"{label}: not folded: {why}")
            continue
        graph.replace(second.name, "Conv2d", first.inputs, attrs, composed_params(first, second, attrs))
        graph.erase(first.name)
        result.rewrites.append(f"{label} -> {second.name} (Conv2d {attrs['kernel_size'][0]}×{attrs['kernel_size'][1]}, "
                               f"stride {attrs['stride'][0]})")


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    _fold_linear_chains(graph, level, result)
    _fold_conv_pairs(graph, level, result)
    return result


PASS = Pass("fold_linear", 2, run, "consecutive Linear/Conv2d layers with nothing non-linear between folded")
