"""Where an op's ONNX mapping is declared: next to the op, in its family module (cnngraph/layers/*.py).

An op family registers, for each of its ops, how the exporter writes it and how the importer reads the ONNX
ops that become it:

    @exports("ReLU")                      # our op -> ONNX: fn(emitter, node), see export.Emitter
    def _relu_to_onnx(e, n):
        e.emit(n, "Relu", n.inputs)

    @imports("Relu")                      # ONNX op_type -> ours: fn(importer, onnx_node), see importer.Importer
    def _relu_from_onnx(imp, node):
        imp.add(node, "ReLU", [imp.value(node.input[0])])

The importer maps one ONNX node to one node of ours wherever it can; rewriting the result into a nicer form
(MatMul + Add into a Linear, a Pad into the pool that reads it) is a pass's job, not the importer's.
This module imports nothing from onnx, so declaring a mapping costs ``import cnngraph`` nothing.
"""
from __future__ import annotations

from collections.abc import Callable

EXPORTERS: dict[str, Callable] = {}      # our op name -> fn(emitter, node)
IMPORTERS: dict[str, Callable] = {}      # ONNX op_type (default domain) -> fn(importer, onnx_node)


def _register(table: dict, keys, what: str):
    def decorate(function):
        for key in keys:
            if key in table:
                raise ValueError(f"{what} {key!r} is declared twice ({table[key].__module__} and {function.__module__})")
            table[key] = function
        return function
    return decorate


def exports(*ops: str):
    """Declare how the exporter writes our ops ``ops``."""
    return _register(EXPORTERS, ops, "the ONNX export of")


def emit_as(op_type: str):
    """The export rule of an op that is one ONNX ``op_type`` node over the same inputs, with no attributes."""
    def rule(e, n):
        e.emit(n, op_type, n.inputs)
    return rule


def imports(*op_types: str):
    """Declare how the importer reads the ONNX ops ``op_types``."""
    return _register(IMPORTERS, op_types, "the import of ONNX")
