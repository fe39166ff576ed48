"""Constant folding: a node whose inputs are all Constant nodes becomes a Constant (its value computed by
the NumPy backend), unless the result is large: folding must not make a model bigger (onnxsim #178), so a
result is materialised only up to MAX_ELEMENTS and only when not much larger than the constants it reads.
"""
from __future__ import annotations

import numpy as np

from cnngraph.graph import Graph

from .base import Pass, PassResult

MAX_ELEMENTS = 1 << 20
GROWTH = 4                     # a result may be this many times larger than its inputs (or 4096 elements)


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if node.op == "Constant" or not node.inputs:
            continue
        sources = [graph.node(i) for i in node.inputs]
        if any(s.op != "Constant" for s in sources):
            continue
        size = int(np.prod(node.type.shape))
        inputs = sum(int(np.prod(s.type.shape)) for s in sources)
        if size > MAX_ELEMENTS or size > max(GROWTH * inputs, 4096):
            result.refusals.append(f"{node.name} ({node.op}) not folded: its value has {size} elements")
            continue
        value = _evaluate(graph, node)
        graph.replace(node.name, "Constant", [], dict(shape=tuple(value.shape)), dict(value=value))
        result.rewrites.append(f"folded {node.name} ({node.op}) into a constant")
    return result


def _evaluate(graph, node) -> np.ndarray:
    from cnngraph.backends.numpy_backend import run as run_numpy
    tiny = Graph("fold")
    for name in node.inputs:
        source = graph.node(name)
        if name not in tiny:
            tiny.add("Constant", [], source.attrs, source.params, name=name)
    tiny.output(tiny.add(node.op, node.inputs, node.attrs, node.params, name=node.name))
    return np.asarray(run_numpy(tiny), dtype=np.float32)


PASS = Pass("constant_folding", 1, run, "nodes computed from constants only folded (capped)")
