"""The importer's handlers for ONNX-only machinery: constants, shapes, casts, and the ops that are an
Identity at inference (Identity, Dropout). A layer's own handler is declared in its family module
(cnngraph/layers/*.py, section "ONNX import", registered with cnngraph.onnx.mapping.imports); what the
handlers share is in handler_tools.py.

A handler reads its node through the importer ``imp`` (attributes, constant inputs, the values of our graph it
reads) and adds our node with imp.add (named after the ONNX output) or helper nodes first with imp.add_step
("<output>/<op>"); it raises Unsupported for a form it does not map, which lists the node in the importer's
one error. It sees its own node only: one ONNX node becomes one node of ours wherever the IR has the op
(a Gemm with a constant B one Linear, with alpha folded into the weight). Nicer forms (MatMul + Add -> Linear,
a Pad merged into its pool, the exporter's ceil_mode average written as window sums -> AvgPool2d, a Reshape
that merges axes -> Flatten) are canonicalization rules of the pass manager at level 1 (passes/canon_*.py,
passes/reshape_merge.py), run by cg.optimize(graph, level=1).

Refused, every problem listed with its node names in one error: ops with no mapping, 1-D/3-D convolution and
pooling, training-mode nodes, even-sized LRN, shapes computed from values (not from shapes).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .fold import shape_array
from .handler_tools import Unsupported


def _dropout(imp, node):
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode").item()):
        raise Unsupported("training_mode = true")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _constant(imp, node):
    a = imp.attrs(node)
    if "value" in a:
        if a["value"].data_location == onnx.TensorProto.EXTERNAL:
            raise Unsupported("external data")
        imp.consts[node.output[0]] = numpy_helper.to_array(a["value"])
    elif a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}:
        key = next(iter(a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}))
        imp.consts[node.output[0]] = np.array(a[key], dtype=np.float32 if "float" in key else np.int64)
    else:
        raise Unsupported(f"the {', '.join(a)} form" if a else "no value attribute")


def _shape(imp, node):
    """A value's shape as a constant (a symbolic batch stays a name), for the reshape arithmetic to fold."""
    a = imp.attrs(node)
    shape = imp.shape(imp.value(node.input[0]))
    imp.consts[node.output[0]] = shape_array(shape)[a.get("start", 0):a.get("end", len(shape))]


def _cast(imp, node):
    if imp.attrs(node)["to"] != onnx.TensorProto.FLOAT:
        raise Unsupported("a cast of a computed value to a type other than float32")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _identity(imp, node):
    imp.add(node, "Identity", [imp.value(node.input[0])])


HANDLERS = {                              # ONNX-only machinery; the layers' own handlers are in their families
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _constant,
    "Shape": _shape,
    "Cast": _cast,
}
