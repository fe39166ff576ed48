"""Merge consecutive Flatten/Reshape nodes into one, and drop a reshape that changes nothing.

reshape(reshape(x)) is one reshape of x to the final shape: a Flatten when the final shape merges
consecutive axes of x, else a Reshape to that shape (symbolic dims kept by name). A reshape whose output
shape equals its input's becomes an Identity (removed by remove_identity).
"""
from __future__ import annotations

from cnngraph.shapes import product

from .base import Pass, PassResult, sole_reader


def flatten_of(before, after):
    """(start, end) if ``after`` is ``before`` with axes start..end merged, else None."""
    merged = len(before) - len(after)
    if merged < 0:
        return None
    for start in range(len(after)):
        end = start + merged
        if tuple(after) == (*before[:start], product(before[start:end + 1]), *before[end + 1:]):
            return start, end
    return None


def _reshape_to(graph, name, source):
    """Redefine node ``name`` as the simplest reshape of ``source`` to its own shape."""
    before, after = graph.type_of(source).shape, graph.type_of(name).shape
    if tuple(before) == tuple(after):
        graph.replace(name, "Identity", [source])
        return "Identity"
    axes = flatten_of(before, after)
    if axes is not None:
        graph.replace(name, "Flatten", [source], dict(start_dim=axes[0], end_dim=axes[1]))
        return "Flatten"
    graph.replace(name, "Reshape", [source], dict(shape=tuple(after)))
    return "Reshape"


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if node.name not in graph or not node.layer.reshape_like:
            continue
        first = graph.node(node.inputs[0])
        if first.layer.reshape_like:
            reader, why = sole_reader(graph, first.name)
            if reader is None:
                result.refusals.append(f"{first.name} -> {node.name} not merged: {why}")
                continue
            op = _reshape_to(graph, node.name, first.inputs[0])
            graph.erase(first.name)
            result.rewrites.append(f"{first.name} ({first.op}) + {node.name} ({node.op}) -> {node.name} ({op})")
        elif tuple(first.type.shape) == tuple(node.type.shape):
            graph.replace(node.name, "Identity", [first.name])
            result.rewrites.append(f"{node.name} ({node.op}) changes no shape -> Identity")
    return result


PASS = Pass("merge_reshapes", 1, run, "consecutive Flatten/Reshape merged")
