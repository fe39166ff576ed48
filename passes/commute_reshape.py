"""Move a Flatten/Reshape that leaves the last axis alone from between two Linear layers to after them, so that
fold_linear sees the two Linears next to each other.

A Linear acts on the last axis only, so for a reshape R that keeps the last axis (same size, not merged with
others): Linear(R(h)) = R'(Linear(h)), where R' is R with the last axis of the Linear's output.
    fc1 -> R -> fc2   becomes   fc1 -> fc2 (named "<fc2>/linear") -> R' (named fc2)
The rewrite only fires when it lets two Linears meet (the value between them read once, not a graph output).
"""
from __future__ import annotations

from .base import Pass, PassResult, sole_reader


def keeps_last_axis(graph, reshape) -> bool:
    before, after = graph.type_of(reshape.inputs[0]).shape, reshape.type.shape
    if not before or not after or before[-1] != after[-1]:
        return False
    if reshape.op == "Flatten":
        return reshape.attrs["end_dim"] % len(before) < len(before) - 1
    return True


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if not node.layer.reshape_like or node.name not in graph:
            continue
        reshape = graph.node(node.name)
        producer = graph.node(reshape.inputs[0])
        reader, _ = sole_reader(graph, reshape.name)
        if (producer.op != "Linear" or producer.attrs.get("activation") or reader is None or reader.op != "Linear"
                or sole_reader(graph, producer.name)[0] is None or not keeps_last_axis(graph, reshape)):
            continue
        moved = graph.add("Linear", [producer.name], reader.attrs, reader.params, name=_free(graph, f"{reader.name}/linear"))
        graph.replace(reader.name, "Reshape", [moved.name], dict(shape=tuple(reader.type.shape)))
        graph.erase(reshape.name)
        result.rewrites.append(f"{reshape.name} ({reshape.op}) moved after {reader.name} (Linear): {producer.name} and "
                               f"{moved.name} now meet")
    return result


def _free(graph, name: str) -> str:
    candidate, index = name, 0
    while candidate in graph:
        index += 1
        candidate = f"{name}_{index}"
    return candidate


PASS = Pass("commute_reshape", 2, run, "a reshape between two Linears moved after them")
