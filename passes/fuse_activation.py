"""Fuse an activation into the Conv2d or Linear it follows: act(layer(x)) -> layer+act(x), one node named
after the activation (the value its readers and the graph outputs know).

The NumPy backend applies a fused activation in place on each block of the GEMM's output while it is in
cache; the ONNX exporter writes the standard pair back, so files stay portable (onnxruntime fuses it again).
ReLU6 and Hardtanh are Clip with constant bounds in ONNX: bounds that were not constants never became these
ops (onnxruntime PR #2059).
"""
from __future__ import annotations

from .rules import rule, rule_pass


@rule(anchor=lambda node: node.layer.fusable_activation)
def fuse_activation(m):
    """act(layer(x)) -> layer+act(x)"""
    act, layer = m.node, m.input()
    if not layer.layer.accepts_epilogue:
        return None
    if why := m.read_elsewhere(layer.name):
        return m.refuse(why, layer, act)
    if layer.attrs.get("activation"):
        return m.refuse(f"{layer.name} already has an activation", layer, act)
    attrs = dict(layer.attrs, activation={"op": act.op, "attrs": dict(act.attrs)})
    m.graph.replace(act.name, layer.op, layer.inputs, attrs, layer.params)
    m.graph.erase(layer.name)
    return m.rewrote([layer, act], [act.name])


PASS = rule_pass("fuse_activation", 2, [fuse_activation], "activations fused into the Conv2d/Linear before them")
