"""Dead-code elimination: erase every node no graph output depends on (graph inputs stay).

A whole-graph analysis rather than a rule: liveness flows backwards from the outputs, in one walk.
"""
from __future__ import annotations

from cnngraph.graph import INPUT

from .base import Pass, PassResult
from .records import NodeRef, Rewrite


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    live = set(graph.outputs)
    order = graph.topo_order()
    for name in reversed(order):
        if name in live:
            live.update(graph.node(name).inputs)
    for name in reversed(order):                       # readers before what they read
        node = graph.node(name)
        if name not in live and node.op != INPUT:
            graph.erase(name)
            result.rewrites.append(Rewrite("dead_code", (NodeRef.of(node),), (), "no output depends on it"))
    return result


PASS = Pass("dead_code", 1, run, "nodes no output depends on erased")
