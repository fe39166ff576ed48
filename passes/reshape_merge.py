"""Merge consecutive Flatten/Reshape nodes into one, and drop a reshape that changes nothing.

reshape(reshape(x)) -> reshape(x): one reshape of x to the final shape, a Flatten when the final shape merges
consecutive axes of x, else a Reshape to that shape (symbolic dims kept by name). A reshape whose output shape
equals its input's becomes an Identity (removed by remove_identity). A lone Reshape whose output merges
consecutive axes of its input is that Flatten (how ONNX writes Flatten(start, end), and what the importer maps
one to one): Flatten(start, end) is reshape(x, (*x[:start], ∏ x[start..end], *x[end+1:])).
"""
from __future__ import annotations

from cnngraph.shapes import product

from .rules import rule, rule_pass


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


def _reshape_to(graph, name, source) -> None:
    """Redefine node ``name`` as the simplest reshape of ``source`` to its own shape."""
    before, after = graph.type_of(source).shape, graph.type_of(name).shape
    if tuple(before) == tuple(after):
        graph.replace(name, "Identity", [source])
        return
    axes = flatten_of(before, after)
    if axes is not None:
        graph.replace(name, "Flatten", [source], dict(start_dim=axes[0], end_dim=axes[1]))
    else:
        graph.replace(name, "Reshape", [source], dict(shape=tuple(after)))


@rule(anchor=lambda node: node.layer.reshape_like)
def merge_reshapes(m):
    """reshape2(reshape1(x)) -> reshape2'(x), to the shape of reshape2"""
    second, first = m.node, m.input()
    if not first.layer.reshape_like:
        return None
    if why := m.read_elsewhere(first.name):
        return m.refuse(why, first, second)
    _reshape_to(m.graph, second.name, first.inputs[0])
    m.graph.erase(first.name)
    return m.rewrote([first, second], [second.name])


@rule(anchor=lambda node: node.layer.reshape_like)
def drop_noop_reshape(m):
    """reshape(x) -> Identity(x) when the shapes are equal"""
    node = m.node
    if tuple(m.input().type.shape) != tuple(node.type.shape):
        return None
    m.graph.replace(node.name, "Identity", [node.inputs[0]])
    return m.rewrote([node], [node.name], "it changes no shape")


@rule(anchor=lambda node: node.op == "Reshape")
def reshape_to_flatten(m):
    """Reshape(x) -> Flatten(x, start, end) when the new shape merges axes start..end of x"""
    node = m.node
    before, after = m.input().type.shape, node.type.shape
    axes = flatten_of(before, after) if len(after) < len(before) else None
    if axes is None:
        return None
    m.graph.replace(node.name, "Flatten", node.inputs, dict(start_dim=axes[0], end_dim=axes[1]))
    return m.rewrote([node], [node.name], "it merges consecutive axes")


PASS = rule_pass("merge_reshapes", 1, [merge_reshapes, drop_noop_reshape, reshape_to_flatten],
                 "consecutive Flatten/Reshape merged; a Reshape that merges axes made a Flatten")
