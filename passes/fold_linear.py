"""Fold consecutive Linear layers with no non-linearity between them: two linear maps in a row are one.

Linear∘Linear:  W2·(W1·x + b1) + b2 = (W2·W1)·x + (W2·b1 + b2), on the last axis of a value of any rank.
A chain of any length is split into the groups that cost least (a matrix-chain choice by dynamic
programming over where to cut): folding a 4096→64→4096 bottleneck into one 4096×4096 matrix would cost 32×
more, so that group is not formed; each group formed must be allowed by the cost model (passes/cost.py).
An activation fused into a layer ends its chain there; one on the last layer stays on the result.
A whole-graph analysis rather than a rule: the split needs the whole chain at once.
Arithmetic in float64, rounded once to float32.
"""
from __future__ import annotations

import numpy as np

from . import cost
from .base import Pass, PassResult, sole_reader
from .records import NodeRef, Refusal, Rewrite


def _chain(graph, start):
    """The maximal chain of Linear nodes from ``start`` on, each read only by the next."""
    chain = [start]
    while not chain[-1].attrs.get("activation"):
        reader, _ = sole_reader(graph, chain[-1].name)
        if reader is None or reader.op != "Linear":
            break
        chain.append(reader)
    return chain


def _is_start(graph, node) -> bool:
    producer = graph.node(node.inputs[0])
    return not (producer.op == "Linear" and not producer.attrs.get("activation")
                and sole_reader(graph, producer.name)[0] is not None)


def _group_attrs(group) -> dict:
    attrs = dict(in_features=group[0].attrs["in_features"], out_features=group[-1].attrs["out_features"],
                 bias=any(layer.attrs["bias"] for layer in group))
    if group[-1].attrs.get("activation"):
        attrs["activation"] = group[-1].attrs["activation"]
    return attrs


def _group_costs(graph, group) -> tuple[cost.Cost, cost.Cost]:
    """(cost now, cost folded) of a group of consecutive Linears."""
    return (cost.of_nodes(graph, group),
            cost.of_new(graph, "Linear", group[0].inputs, _group_attrs(group), group[-1].type))


def best_groups(graph, chain, level):
    """Split the chain into consecutive groups [i, j] of least total MACs, each allowed by the cost model."""
    n = len(chain)
    best = [(0, 0)] + [None] * n                    # best[j] = (MACs, groups) for chain[:j]
    choice = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            now, folded = _group_costs(graph, chain[i:j])
            if j - i > 1 and cost.allows(level, now, folded):
                continue
            candidate = (best[i][0] + (folded.macs if j - i > 1 else now.macs), best[i][1] + 1)
            if best[j] is None or candidate < best[j]:
                best[j], choice[j] = candidate, i
    groups, j = [], n
    while j > 0:
        groups.append((choice[j], j - 1))
        j = choice[j]
    return groups[::-1]


def _compose(group) -> dict:
    weight = group[0].params["weight"].astype(np.float64)
    bias = group[0].params.get("bias")
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    for layer in group[1:]:
        w = layer.params["weight"].astype(np.float64)
        b = layer.params.get("bias")
        bias = w @ bias + (0.0 if b is None else b.astype(np.float64))
        weight = w @ weight
    params = {"weight": weight.astype(np.float32)}
    if any(layer.attrs["bias"] for layer in group):
        params["bias"] = bias.astype(np.float32)
    return params


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    starts = [node for node in graph.layers() if node.op == "Linear" and _is_start(graph, node)]
    for start in starts:
        chain = _chain(graph, graph.node(start.name))
        if len(chain) < 2:
            continue
        groups = best_groups(graph, chain, level)
        if len(groups) == len(chain):
            why = cost.allows(level, *_group_costs(graph, chain))
            result.refusals.append(Refusal("fold_linear", tuple(NodeRef.of(n) for n in chain), why))
        for i, j in groups:
            if i < j:
                group = chain[i:j + 1]
                graph.replace(group[-1].name, "Linear", group[0].inputs, _group_attrs(group), _compose(group))
                for layer in reversed(group[:-1]):
                    graph.erase(layer.name)
                result.rewrites.append(Rewrite("fold_linear", tuple(NodeRef.of(n) for n in group),
                                               (NodeRef.of(graph.node(group[-1].name), summary=True),)))
    return result


PASS = Pass("fold_linear", 2, run, "consecutive Linear layers with nothing non-linear between folded")
