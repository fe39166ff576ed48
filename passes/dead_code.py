"""Dead-code elimination: erase every node no graph output depends on (graph inputs stay)."""
from __future__ import annotations

from cnngraph.graph import INPUT

from .base import Pass, PassResult


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
            result.rewrites.append(f"erased {node.name} ({node.op}): no output depends on it")
    return result


PASS = Pass("dead_code", 1, run, "nodes no output depends on erased")
