"""Constant folding: f(c1, c2, ...) -> c, a node whose inputs are all constants becomes a constant (its
value computed by the NumPy backend), unless the result is large: folding must not make a model bigger
(onnxsim #178), so a result is materialised only up to MAX_ELEMENTS and only when not much larger than the
constants it reads.
"""
from __future__ import annotations

import numpy as np

from cnngraph.graph import Graph

from .rules import rule, rule_pass

MAX_ELEMENTS = 1 << 20
GROWTH = 4                     # a result may be this many times larger than its inputs (or 4096 elements)


@rule(anchor=lambda node: bool(node.inputs) and not node.layer.constant)
def fold_constant(m):
    """f(c1, ..., cn) -> Constant(f(c1, ..., cn))"""
    node, graph = m.node, m.graph
    sources = [graph.node(i) for i in node.inputs]
    if not all(s.layer.constant for s in sources):
        return None
    size = int(np.prod(node.type.shape))
    inputs = sum(int(np.prod(s.type.shape)) for s in sources)
    if size > MAX_ELEMENTS or size > max(GROWTH * inputs, 4096):
        return m.refuse(f"its value has {size} elements")
    value = _evaluate(graph, node)
    graph.replace(node.name, "Constant", [], dict(shape=tuple(value.shape)), dict(value=value))
    return m.rewrote([node], [node.name])


def _evaluate(graph, node) -> np.ndarray:
    from cnngraph.backends.numpy_backend import run as run_numpy
    tiny = Graph("fold")
    for name in node.inputs:
        source = graph.node(name)
        if name not in tiny:
            tiny.add(source.op, [], source.attrs, source.params, name=name)
    tiny.output(tiny.add(node.op, node.inputs, node.attrs, node.params, name=node.name))
    return np.asarray(run_numpy(tiny), dtype=np.float32)


PASS = rule_pass("constant_folding", 1, [fold_constant], "nodes computed from constants only folded (capped)")
