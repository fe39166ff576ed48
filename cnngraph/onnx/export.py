"""Export a Graph to an ONNX model: standard ai.onnx ops at a chosen opset, batch kept symbolic, names kept.

Each of our nodes becomes one ONNX node with the same name whose output value is named after the node
(a few ops need helper nodes first; those get names derived from the node's, made unique). Parameters become
initializers named "<node>.<param>". Each op's rule is declared next to the op, in its family module
(cnngraph/layers/*.py, ``@exports`` from mapping.py); tests/test_registry.py checks that every op has one.

Opset differences that matter for these ops (supported opsets: 13 to the newest the onnx package knows):
  Softmax       from 13 normalizes along ``axis`` only (before 13 it flattened to 2-D): ours is the 13 form.
  Clip          min/max are inputs since 11 (attributes before): ReLU6 -> Clip(x, 0, 6) with constant inputs.
  Reshape       the shape is an input since 5; 0 copies the input dimension, -1 is inferred: the batch stays
                symbolic (a hard-coded batch is pytorch #41893).
  ReduceProd    axes became an input at 18; the dynamic Flatten fallback reduces a 1-D tensor over all axes,
                so it needs axes in neither form.
  AveragePool   ``dilations`` exists from 19 only: written when not (1, 1), refused below 19.
  Pad           pads (and constant_value) are inputs since 11, axes an optional input since 18 (not written).
  Squeeze/Unsqueeze (13) are not needed: GlobalAvgPool2d maps to GlobalAveragePool.
  ReduceSum     axes an input from 13; ReduceMean/Max/Min/L2 from 18 (attributes before; layers/reductions.py).

Pooling with ceil_mode: ONNX's ceil formula keeps a last window that starts in the right padding, PyTorch drops
it (pytorch #71549), and runtimes disagree on the divisor of a last average window that overhangs the padded
input (pytorch #183528). So ceil_mode=1 is written only where it gives PyTorch's sizes on both axes, the
overhang is made explicit for averages that count padding, and the rare case where one axis needs ceil and
the other floor is written as Pad(-inf) + MaxPool, or as a depthwise Conv of ones times PyTorch's divisors
(cnngraph/layers/pooling.py, with pool_windows.py).
Every value's type is written (value_info), so check_model(full_check=True) compares ONNX's shape inference
with ours node by node.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import atomic
from ..errors import ExportError
from ..graph import Node
from .mapping import EXPORTERS
from .reading import check_without_weights
from .shared import unique_name
from .writing import Layout, contiguous, write

MIN_OPSET = 13
DEFAULT_OPSET = 18


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


class Emitter:
    """Collects the ONNX nodes and initializers of one export, keeping every name unique."""

    def __init__(self, graph, opset: int):
        self.graph = graph
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[tuple[str, np.ndarray]] = []    # (initializer name, array): references, not copies
        self.used: set[str] = set(graph.topo_order())      # value names = node names, taken first

    def unique(self, name: str) -> str:
        name = unique_name(name, self.used.__contains__)
        self.used.add(name)
        return name

    def initializer(self, name: str, array) -> str:
        name = self.unique(name)
        self.weights.append((name, np.asarray(array)))
        return name

    def param(self, node, key: str, array=None) -> str:
        """Initializer "<node>.<key>" holding the node's parameter (or ``array`` derived from it)."""
        return self.initializer(f"{node.name}.{key}", node.params[key] if array is None else array)

    def int64(self, node, key: str, values) -> str:
        return self.initializer(f"{node.name}.{key}", np.asarray(values, dtype=np.int64))

    def named_initializer(self, name: str, array) -> None:
        """An initializer under exactly ``name``: a node's own value name (a Constant), reserved already."""
        self.weights.append((name, np.asarray(array)))

    def emit(self, node, op_type: str, inputs, **attrs) -> str:
        """The node's final ONNX node: named after it, writing the value named after it."""
        self.nodes.append(helper.make_node(op_type, list(inputs), [node.name], name=node.name, **attrs))
        return node.name

    def helper_node(self, node, op_type: str, inputs, **attrs) -> str:
        """An intermediate ONNX node of the node's expansion; returns its (unique) output name."""
        name = self.unique(f"{node.name}/{op_type}")
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name


# --- the rules: declared with each op (cnngraph/layers/*.py, @exports), found here -------------------------------
def _with_activation(rule: Callable) -> Callable:
    """A Conv2d or Linear with a fused activation is written as the standard pair (the layer, then the
    activation under the node's name), so the file stays portable; onnxruntime fuses the pair again."""
    def export(e: Emitter, n):
        fused = n.attrs.get("activation")
        if not fused:
            rule(e, n)
            return
        inner = Node(e.unique(f"{n.name}/{n.op}"), n.op, n.inputs,
                     {k: v for k, v in n.attrs.items() if k != "activation"}, n.params, n.type)
        rule(e, inner)
        EXPORTERS[fused["op"]](e, Node(n.name, fused["op"], (inner.name,), fused["attrs"], {}, n.type))
    return export


def export_rule(op: str):
    """How op ``op`` is written (None when it has no rule): its rule from the op's family module, with a fused
    activation (Conv2d, Linear) written as the standard pair."""
    rule = EXPORTERS.get(op)
    return None if rule is None else _with_activation(rule)


# --- the model -------------------------------------------------------------------------------------------------
def _value_info(name: str, tensor_type) -> onnx.ValueInfoProto:
    dims = [d if isinstance(d, int) else str(d) for d in tensor_type.shape]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def check_opset(opset) -> int:
    newest = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"cannot export at opset {opset!r}: supported opsets are {MIN_OPSET} to {newest} "
                          f"(onnx {onnx.__version__})")
    return int(opset)


def structure(graph, opset: int = DEFAULT_OPSET) -> tuple[onnx.ModelProto, list[tuple[str, np.ndarray]]]:
    """The graph as an ONNX model without its initializers, and the initializers as (name, array) in order: the
    arrays are the graph's own (read-only), so nothing is copied until they are written."""
    import cnngraph

    opset = check_opset(opset)
    if not graph.outputs:
        raise ExportError(f"graph {graph.name!r} has no outputs to export")
    emitter = Emitter(graph, opset)
    missing = sorted({n.op for n in graph.layers() if export_rule(n.op) is None})
    if missing:
        raise ExportError(f"no ONNX export rule for {', '.join(missing)}")
    for node in graph.layers():
        export_rule(node.op)(emitter, node)
    outputs = set(graph.outputs)
    inputs = [_value_info(name, graph.type_of(name)) for name in graph.inputs]
    value_info = [_value_info(n.name, n.type) for n in graph.layers() if n.name not in outputs and n.op != "Constant"]
    onnx_graph = helper.make_graph(emitter.nodes, graph.name, inputs,
                                   [_value_info(name, graph.type_of(name)) for name in graph.outputs],
                                   value_info=value_info)
    opset_imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opset_imports, producer_name="cnngraph",
                              producer_version=cnngraph.__version__)
    model.ir_version = helper.find_min_ir_version_for(opset_imports, ignore_unknown=True)
    return model, emitter.weights


def to_model(graph, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The graph as an ONNX model (not checked), its weights inside."""
    model, weights = structure(graph, opset)
    add_initializers(model, weights)
    return model


def add_initializers(model: onnx.ModelProto, weights) -> None:
    """The weights into the model, one tensor at a time: each costs one transient bytes object (protobuf takes
    nothing else), where extending the list with numpy_helper.from_array's tensors held them all twice."""
    for name, array in weights:
        array = contiguous(array)
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.dims.extend(array.shape)
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.raw_data = array.tobytes()


MAX_INLINE_BYTES = 2 ** 31 - 1    # protobuf's limit on one message: a larger model keeps its weights beside it


def export_onnx(graph, path=None, opset: int = DEFAULT_OPSET, external_data="auto") -> onnx.ModelProto:
    """Export ``graph`` at ``opset``, check it (full_check) and, when ``path`` is given, write it atomically.

    ``external_data`` says where the weights go when ``path`` is given: "auto" (the default) in the model file
    unless that file would exceed protobuf's 2 GiB, then in "<file name>.data" beside it; True always beside it
    (tensors under 1 KiB stay inline); False always inside (a model over 2 GiB is then an error naming its
    size). The weights are written tensor by tensor from the graph's arrays (writing.py), no second copy of
    them is made, and the checker runs on the model without its weights (with external data, on the written
    file itself). Returns the model: with its weights inside, or, when they went beside it, as written (its
    initializers point into the data file: give onnxruntime the path, not this ModelProto). Without ``path``
    the returned model holds the weights; external_data=True then is an error, as is a model over 2 GiB."""
    if external_data not in ("auto", True, False):
        raise ExportError(f"external_data must be 'auto', True or False, not {external_data!r}")
    model, weights = structure(graph, opset)
    base = os.path.basename(os.fspath(path)) if path is not None else "model.onnx"
    data_name = f"{base}.data"
    layout = Layout(model, weights, external_data is True, data_name)
    if layout.model_size > MAX_INLINE_BYTES and external_data is not True:
        if path is None or external_data is False:
            how = "give a path to write them beside the model" if path is None else "use external_data='auto'"
            raise ExportError(f"graph {graph.name!r}: the model would be {layout.model_size} bytes, more than the "
                              f"2 GiB one ONNX protobuf can hold ({MAX_INLINE_BYTES} bytes); {how}")
        layout = Layout(model, weights, True, data_name)
    if path is None and external_data is True:
        raise ExportError("external_data=True writes the weights to a file beside the model: give a path")

    def check(checked) -> None:
        try:
            onnx.checker.check_model(checked, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as error:
            raise ExportError(f"graph {graph.name!r} exported at opset {opset} fails the ONNX checker: "
                              f"{error}") from error
    if path is None or not layout.has_external():          # the checker sees the structure, not the weights
        checked = onnx.ModelProto()
        checked.CopyFrom(model)
        checked.graph.initializer.extend(layout.checked_initializers())
        check_without_weights(checked, check)
        del checked
    if path is not None:
        written = write(layout, path, data_name, check if layout.has_external() else lambda _: None)
        if written is not None:
            return onnx.ModelProto.FromString(written)
    del layout
    add_initializers(model, weights)
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """The model's bytes; a model over protobuf's 2 GB limit fails here, before any file is touched."""
    try:
        return model.SerializeToString()
    except ValueError as error:                                  # protobuf's 2 GB limit
        raise ExportError(f"cannot serialize the model: {error}") from error


def write_atomically(model: onnx.ModelProto, path) -> None:
    """Serialize first, then write atomically."""
    atomic.write_atomically(serialize(model), path)


__all__ = ["export_onnx", "to_model", "structure", "MAX_INLINE_BYTES", "write_atomically", "export_rule", "Emitter",
           "ExportError", "MIN_OPSET",
           "DEFAULT_OPSET", "max_opset", "check_opset"]
