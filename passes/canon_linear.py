"""Canonicalize matrix products with constant weights into Linear layers (level 1: the importer maps ONNX's
MatMul and Add one to one; these rules give back the Linear that PyTorch's exporter wrote as them).

MatMul(x, W) with W a constant (in, out) matrix is Linear(x) with weight Wᵀ (out, in) and no bias: both
compute Σₖ x[..., k]·W[k, j] on the last axis of x, of any rank.
Linear(x) + b, with b a constant of shape (out,) and no bias yet, is the Linear with bias b: Add broadcasts b
along the last axis, exactly what Linear adds. The float32 sum x·Wᵀ + b is the same in both forms, so the
rewrite is bit-exact up to the backend's own summation order.
A Linear with a fused activation takes no bias after it (act(x·Wᵀ) + b is not act(x·Wᵀ + b)), and a product
read elsewhere (another reader, a graph output) stays: the bias would reach that reader too.
"""
from __future__ import annotations

import numpy as np

from .base import constant_value
from .rules import rule, rule_pass


@rule(anchor=lambda node: node.op == "MatMul")
def matmul_to_linear(m):
    """MatMul(x, W) -> Linear(x; weight Wᵀ), W a constant (in, out) matrix"""
    node = m.node
    weight = constant_value(m.graph, node.inputs[1])
    if weight is None:
        return m.refuse(f"its second operand {node.inputs[1]} is not a constant")
    if weight.ndim != 2:
        return m.refuse(f"its constant operand has shape {list(weight.shape)}, not a matrix")
    attrs = dict(in_features=int(weight.shape[0]), out_features=int(weight.shape[1]), bias=False)
    m.graph.replace(node.name, "Linear", [node.inputs[0]], attrs, {"weight": np.ascontiguousarray(weight.T)})
    return m.rewrote([node], [node.name], "constant weight")


def _bias_operand(m, add):
    """(the Linear, the bias array) of Add(Linear, constant), or a reason why not, or None."""
    if len(add.inputs) != 2:
        return None
    for index in (0, 1):
        producer = m.graph.node(add.inputs[index])
        if producer.op != "Linear":
            continue
        bias = constant_value(m.graph, add.inputs[1 - index])
        if bias is None:
            return f"{add.inputs[1 - index]} is not a constant"
        return producer, bias
    return None


@rule(anchor=lambda node: node.op == "Add")
def bias_into_linear(m):
    """Add(Linear(x), b) -> Linear(x) with bias b, b a constant of shape (out,)"""
    add = m.node
    found = _bias_operand(m, add)
    if found is None:
        return None
    if isinstance(found, str):
        return m.refuse(found)
    linear, bias = found
    out = linear.attrs["out_features"]
    if linear.attrs["bias"]:
        return m.refuse(f"{linear.name} already has a bias", linear, add)
    if linear.attrs.get("activation"):
        return m.refuse(f"{linear.name} has a fused activation before the Add", linear, add)
    if bias.shape != (out,):
        return m.refuse(f"the constant has shape {list(bias.shape)}, not ({out},)", linear, add)
    if why := m.read_elsewhere(linear.name):
        return m.refuse(why, linear, add)
    attrs = dict(linear.attrs, bias=True)
    m.graph.replace(add.name, "Linear", linear.inputs, attrs, {"weight": linear.params["weight"], "bias": bias})
    m.graph.erase(linear.name)
    return m.rewrote([linear, add], [add.name])


PASS = rule_pass("canon_linear", 1, [matmul_to_linear, bias_into_linear],
                 "MatMul by a constant matrix, and a constant bias added after it, made a Linear")
