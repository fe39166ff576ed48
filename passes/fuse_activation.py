"""Fuse an activation into the Conv2d or Linear it follows: conv1 -> relu1 becomes one node relu1
(Conv2d with activation ReLU), named after the value its readers and the graph outputs know.

The NumPy backend applies a fused activation in place on each block of the GEMM's output while it is in
cache; the ONNX exporter writes the standard pair back, so files stay portable (onnxruntime fuses it again).
ReLU6 and Hardtanh are Clip with constant bounds in ONNX: bounds that were not constants never became these
ops (onnxruntime PR #2059).
"""
from __future__ import annotations

from .base import Pass, PassResult, describe, sole_reader


def run(graph, level: int = 2) -> PassResult:
    result = PassResult(graph)
    for node in graph.layers():
        if not node.layer.fusable_activation or node.name not in graph:
            continue
        layer = graph.node(node.inputs[0])
        if not layer.layer.accepts_epilogue:
            continue
        label = f"{describe(layer)} -> {describe(node)}"
        reader, why = sole_reader(graph, layer.name)
        if reader is None or layer.attrs.get("activation"):
            result.refusals.append(f"{label}: not fused: {why or 'the layer already has an activation'}")
            continue
        attrs = dict(layer.attrs, activation={"op": node.op, "attrs": dict(node.attrs)})
        graph.replace(node.name, layer.op, layer.inputs, attrs, layer.params)
        graph.erase(layer.name)
        result.rewrites.append(f"{label} -> {node.name} ({layer.op}+{node.op})")
    return result


PASS = Pass("fuse_activation", 2, run, "activations fused into the Conv2d/Linear before them")
