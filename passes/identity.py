"""Remove Identity and Dropout (identity at inference): readers read the input directly.

A node that is a graph output stays, so the output keeps its name.
"""
from __future__ import annotations

from .base import Pass, PassResult


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if not node.layer.inference_identity:
            continue
        if node.name in graph.outputs:
            result.refusals.append(f"{node.name} ({node.op}) kept: it is a graph output")
            continue
        graph.replace_all_uses_with(node.name, node.inputs[0])
        graph.erase(node.name)
        result.rewrites.append(f"removed {node.name} ({node.op})")
    return result


PASS = Pass("remove_identity", 1, run, "Identity and Dropout removed")
