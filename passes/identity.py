"""Remove what computes nothing: Identity and Dropout (the identity at inference), a variadic op with one input
(Concat, Max, Min, Sum of one value) and a reduction over axes of extent 1.

identity(x) -> x, readers read x directly; a node that is a graph output stays, so the output keeps its name.
The other two become an Identity (or a reshape) first, and the sweep after removes it.
"""
from __future__ import annotations

from .reshape_merge import _reshape_to
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


@rule(anchor=lambda node: node.layer.arity[1] is None and len(node.inputs) == 1)
def single_input_variadic(m):
    """concat(x) = max(x) = min(x) = sum(x) = x: a variadic op over one value is that value"""
    node = m.node
    if m.input().type != node.type:
        return None
    m.graph.replace(node.name, "Identity", [node.inputs[0]])
    return m.rewrote([node], [node.name], "it has one input")


@rule(anchor=lambda node: node.layer.singleton_reduction)
def singleton_reduction(m):
    """reduce(x, axes) = x when every reduced axis has extent 1 (sum, mean, max and min of one element are it):
    an Identity with keepdims, else a reshape dropping those axes"""
    node, x = m.node, m.input().type
    axes = node.layer.axes(node.attrs, x.rank)
    if not all(x.shape[axis] == 1 for axis in axes):
        return None
    _reshape_to(m.graph, node.name, node.inputs[0])
    return m.rewrote([node], [node.name], f"its axes {list(axes)} have extent 1")


PASS = rule_pass("remove_identity", 1, [remove_identity, single_input_variadic, singleton_reduction],
                 "Identity, Dropout, one-input Concat and reductions over extent-1 axes removed")
