"""Remove Identity and Dropout (the identity at inference): identity(x) -> x, readers read x directly.

A node that is a graph output stays, so the output keeps its name.
"""
from __future__ import annotations

from .rules import rule, rule_pass


@rule(anchor=lambda node: node.layer.inference_identity)
def remove_identity(m):
    """identity(x) -> x"""
    node = m.node
    if node.name in m.graph.outputs:
        return m.refuse("it is a graph output")
    m.graph.replace_all_uses_with(node.name, node.inputs[0])
    m.graph.erase(node.name)
    return m.rewrote([node], [])


PASS = rule_pass("remove_identity", 1, [remove_identity], "Identity and Dropout removed")
