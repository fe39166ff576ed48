"""Common-subexpression elimination: two nodes with the same op, inputs, attributes and parameters compute
the same value; readers of the later one read the earlier one. A graph output keeps its own node (its name).

A whole-graph analysis rather than a rule: one walk in topological order with a table of what was seen, so
that twins are found in linear time (constants, which have no inputs, included).
"""
from __future__ import annotations

import numpy as np

from cnngraph.graph import INPUT

from .base import Pass, PassResult
from .records import NodeRef, Refusal, Rewrite


def _key(node):
    params = tuple((k, v.shape, v.reshape(-1)[:16].tobytes()) for k, v in sorted(node.params.items()))
    return node.op, node.inputs, repr(sorted(node.attrs.items())), params


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    seen: dict[tuple, list] = {}
    for name in graph.topo_order():
        node = graph.node(name)                       # read afresh: merges above rewired its inputs
        if node.op == INPUT:
            continue
        candidates = seen.setdefault(_key(node), [])
        twin = next((c for c in candidates if all(np.array_equal(c.params[k], v) for k, v in node.params.items())),
                    None)
        if twin is None:
            candidates.append(node)
            continue
        if node.name in graph.outputs:
            result.refusals.append(Refusal("cse", (NodeRef.of(node), NodeRef.of(twin)),
                                           f"{node.name} is a graph output"))
            continue
        graph.replace_all_uses_with(node.name, twin.name)
        graph.erase(node.name)
        result.rewrites.append(Rewrite("cse", (NodeRef.of(twin), NodeRef.of(node)), (NodeRef.of(twin, summary=True),),
                                       f"{node.name} computed the same value"))
    return result


PASS = Pass("cse", 1, run, "duplicate computations merged")
