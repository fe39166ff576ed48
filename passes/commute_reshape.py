"""Move a Flatten/Reshape that leaves the last axis alone from between two Linear layers to after them, so that
fold_linear sees the two Linears next to each other.

A Linear acts on the last axis only, so for a reshape R that keeps the last axis (same size, not merged with
others): Linear(R(h)) = R'(Linear(h)), where R' is R with the last axis of the Linear's output.
    fc1 -> R -> fc2   becomes   fc1 -> fc2 (named "<fc2>/linear") -> R' (named fc2)
The rewrite only fires when it lets two Linears meet (the value between them read once, not a graph output).
"""
from __future__ import annotations

from .rules import rule, rule_pass


def keeps_last_axis(graph, reshape) -> bool:
    before, after = graph.type_of(reshape.inputs[0]).shape, reshape.type.shape
    if not before or not after or before[-1] != after[-1]:
        return False
    if reshape.op == "Flatten":
        return reshape.attrs["end_dim"] % len(before) < len(before) - 1
    return True


@rule(anchor=lambda node: node.layer.reshape_like)
def commute_reshape(m):
    """Linear2(R(Linear1(x))) -> R'(Linear2(Linear1(x)))"""
    graph, reshape, producer = m.graph, m.node, m.input()
    if producer.op != "Linear" or producer.attrs.get("activation") or m.read_elsewhere(reshape.name):
        return None
    reader = graph.node(graph.users(reshape.name)[0])
    if reader.op != "Linear" or m.read_elsewhere(producer.name) or not keeps_last_axis(graph, reshape):
        return None
    moved = graph.add("Linear", [producer.name], reader.attrs, reader.params, name=_free(graph, f"{reader.name}/linear"))
    graph.replace(reader.name, "Reshape", [moved.name], dict(shape=tuple(reader.type.shape)))
    graph.erase(reshape.name)
    return m.rewrote([reshape, reader], [moved.name, reader.name], f"{producer.name} and {moved.name} now meet")


def _free(graph, name: str) -> str:
    candidate, index = name, 0
    while candidate in graph:
        index += 1
        candidate = f"{name}_{index}"
    return candidate


PASS = rule_pass("commute_reshape", 2, [commute_reshape], "a reshape between two Linears moved after them")
