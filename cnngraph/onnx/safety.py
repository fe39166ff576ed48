"""Checks that keep a malformed or hostile ONNX model from crashing, hanging or exhausting memory at import.

onnx.checker validates a model against the spec, but not enough for a file from anywhere:
  * a cycle, a dangling input and an unsorted graph all get one message ("Nodes in a graph must be
    topologically sorted, however input 'b' of node: ...") whose first line does not name the node;
  * it does not compare a tensor's dims with the data it holds beyond "too small" (onnx >= 1.2x; older
    versions not at all), so numpy_helper.to_array can fail deep inside the importer;
  * run on a ModelProto it resolves external data against the current directory, not the model's folder,
    and it checks neither offsets nor lengths;
  * nothing bounds what folding constants at import may allocate or how long it may run.

Every check here runs before any array is built or any file is read, and raises OnnxImportError naming the
node, value or path. The importer calls them in this order (see each function's docstring):

    check_model_file(path)                      before reading the file
    load_external_data(model, base_dir, where)  right after parsing, before onnx.checker (external.py)
    check_structure(model, where, held)         before any weight is taken (reading.py) and before onnx.checker,
                                                so our clearer messages come first
    check_fold(node, inputs, opset, spent)      before folding each node on constants
    check_elements(shape, label)                before materialising any array whose shape a model chose
    check_node_sizes(graph, name)               after each node the importer adds, before any plan exists
"""
from __future__ import annotations

import math
import os
import stat

import numpy as np
from onnx import AttributeProto, TensorProto, helper, numpy_helper, shape_inference

from ..errors import OnnxImportError
from .fold import MAX_ELEMENTS, FoldError

MAX_FOLDED_ELEMENTS = 2 ** 29     # all constants one import may compute by folding (2 GiB of float32)
MAX_FOLD_WORK = 2 ** 30           # multiply-adds one folded MatMul/Gemm/Conv may cost (seconds, not hours)
MAX_MODEL_BYTES = 2 ** 31         # protobuf cannot parse a larger message; weights that big live outside


# bytes per element of the dtypes cnngraph computes with (or folds on the way to float32)
_ITEMSIZE = {TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.BOOL: 1,
             TensorProto.INT8: 1, TensorProto.INT16: 2, TensorProto.INT32: 4, TensorProto.INT64: 8,
             TensorProto.UINT8: 1, TensorProto.UINT16: 2, TensorProto.UINT32: 4, TensorProto.UINT64: 8}
# the repeated field holding each dtype when raw_data is not used (the rest use int32_data)
_FIELD = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data", TensorProto.INT64: "int64_data",
          TensorProto.UINT32: "uint64_data", TensorProto.UINT64: "uint64_data"}
_FIELD_NAMES = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
# ops that may read a float16/double constant in a float32 model: they convert it or only read its shape
_TYPE_BLIND = {"Cast", "Shape", "Size"}


def _dtype(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"unknown dtype {code}"


def _cap(limit: int) -> str:
    return f"2**{limit.bit_length() - 1}" if limit > 0 and limit & (limit - 1) == 0 else str(limit)


def _label(node) -> str:
    """How the importer names a node in its messages: its name, else its first output, else its op."""
    return f"node {node.name or (node.output[0] if node.output else node.op_type)!r} ({node.op_type})"


# --- sizes -----------------------------------------------------------------------------------------------------
def check_elements(shape, where_label: str) -> int:
    """The number of elements of ``shape``, refused above MAX_ELEMENTS before anything that big is allocated.

    ``where_label`` starts the message, e.g. "model.onnx: node 'x' (ConstantOfShape) output". Symbolic dims
    (strings, None) count as 1: the static part alone must fit.
    """
    dims = [int(d) for d in shape if isinstance(d, (int, np.integer))]
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"{where_label}: negative dimension in shape {list(shape)}")
    count = math.prod(dims)                       # Python ints: 10**12 stays 10**12, never wraps
    if count > MAX_ELEMENTS:
        raise OnnxImportError(f"{where_label}: {count} elements (shape {list(shape)}) is more than the "
                              f"{_cap(MAX_ELEMENTS)} cnngraph allows")
    return count


def check_model_file(path) -> None:
    """Before reading a model file: a regular file protobuf can parse.

    A FIFO would block open() for ever, /dev/zero would be read until memory runs out, and a file over
    2 GiB cannot be an ONNX protobuf, so it is refused before a byte of it is read.
    """
    where = os.fspath(path)
    try:
        info = os.stat(where)
    except OSError as error:
        raise OnnxImportError(f"{where}: cannot read: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OnnxImportError(f"{where}: not a regular file (a directory, device or pipe); give an .onnx file")
    if info.st_size > MAX_MODEL_BYTES:
        raise OnnxImportError(f"{where}: {info.st_size} bytes is more than the 2 GiB a protobuf can hold, so "
                              f"not an ONNX model (large weights belong in external data)")


def check_node_sizes(graph, name: str) -> None:
    """After the importer adds node ``name`` to ``graph`` and before any plan is compiled: its output has no
    dimension of 0 and at most MAX_ELEMENTS elements per sample; a sliding window's padded input (the copy a
    convolution makes) and its tap table along each axis (output size × kernel size) too. Sizes are Python
    ints here, so nothing of that size is ever allocated."""
    node = graph.node(name)
    _check_size(node.type.shape, "its output")
    attrs = node.attrs
    if "kernel_size" in attrs and "pads" in attrs:
        x = graph.type_of(node.inputs[0]).shape
        dims, pads = len(attrs["kernel_size"]), attrs["pads"]
        _check_size((*x[:2], *(_add(x[2 + i], pads[i] + pads[dims + i]) for i in range(dims))), "its padded input")
        if "output_padding" in attrs:               # a transposed convolution's full scatter: output + pads
            y = node.type.shape
            _check_size((*y[:2], *(_add(y[2 + i], pads[i] + pads[dims + i]) for i in range(dims))), "its scatter")
        for axis in range(dims):
            out, kernel = node.type.shape[2 + axis], attrs["kernel_size"][axis]
            if "output_padding" in attrs:           # a transposed convolution scatters each input pixel's taps
                out = x[2 + axis]
            if isinstance(out, int) and out * kernel > MAX_ELEMENTS:
                raise OnnxImportError(f"its window covers {kernel} taps at each of {out} positions along axis "
                                      f"{2 + axis}: more than the {_cap(MAX_ELEMENTS)} cnngraph allows")


def _add(dim, pads: int):
    return dim + pads if isinstance(dim, int) else dim


def _check_size(shape, what: str) -> None:
    static = [d for d in shape if isinstance(d, int)]
    if 0 in static:
        raise OnnxImportError(f"{what} would have shape {list(shape)}: a dimension of 0 (cnngraph does not compute "
                              f"with empty tensors)")
    count = math.prod(static)
    if count > MAX_ELEMENTS:
        raise OnnxImportError(f"{what} would have {count} elements per sample (shape {list(shape)}), more than the "
                              f"{_cap(MAX_ELEMENTS)} cnngraph allows")


# --- structure -------------------------------------------------------------------------------------------------
def check_structure(model, where: str, held: dict | None = None) -> None:
    """What onnx.checker misses or words vaguely, checked on the main graph before any array is built.

    * every node input is computed by an earlier node, or is a graph input or an initializer; a value no one
      computes, a value computed twice, a cycle and a graph whose nodes are merely out of order each get
      their own message naming the nodes and values. An acyclic graph out of order is refused rather than
      sorted: the ONNX spec requires sorted nodes, onnx.checker refuses it anyway, and exporters never
      write one, so sorting would be code for nothing but hostile files;
    * every initializer and tensor attribute (Constant's value, ConstantOfShape's fill) has dims whose
      element count is within MAX_ELEMENTS and holds exactly that much data: numpy_helper.to_array is
      then safe to call;
    * constants have a dtype cnngraph can compute with, graph inputs are float32 tensors of a size within
      MAX_ELEMENTS, and a float16/double constant is read only by Cast (or Shape/Size): cnngraph computes
      in float32 and will not convert silently.
    Subgraphs (If/Loop bodies) are not imported, so they are not walked here.
    ``held`` gives, by index among the initializers, the bytes of those whose data the importer keeps outside
    the message (raw_data left out of the parse, memory-mapped external data): checked as raw_data would be.
    """
    graph = model.graph
    if len(graph.sparse_initializer):
        names = [s.values.name for s in graph.sparse_initializer]
        raise OnnxImportError(f"{where}: sparse initializers are not supported: {names[:5]}")
    _check_wiring(graph, where)
    held = held or {}
    for index, (what, tensor, constant) in enumerate(_main_tensors(graph)):
        _check_tensor(tensor, f"{where}: {what}", constant, held.get(index) if index < len(graph.initializer) else None)
    _check_inputs(graph, where)
    _check_constant_dtypes(graph, where)


def _check_wiring(graph, where: str) -> None:
    producer: dict[str, int | None] = {}          # value -> index of the node computing it; None: given
    for name in [v.name for v in graph.input] + [t.name for t in graph.initializer]:
        producer[name] = None
    for index, node in enumerate(graph.node):
        for name in node.output:
            if not name:
                continue
            if name in producer:
                first = producer[name]
                before = "a graph input or initializer" if first is None else _label(graph.node[first])
                raise OnnxImportError(f"{where}: value {name!r} is computed twice, by {before} and by {_label(node)}")
            producer[name] = index
    late = None
    for index, node in enumerate(graph.node):
        for name in node.input:
            if not name:                              # an omitted optional input
                continue
            if name not in producer:
                raise OnnxImportError(f"{where}: {_label(node)} reads {name!r}, which no node, graph input or "
                                      f"initializer provides")
            if late is None and producer[name] is not None and producer[name] >= index:
                late = (node, name, graph.node[producer[name]])
    if late is not None:
        cycle = _find_cycle(graph, producer)
        if cycle is not None:
            path = " -> ".join(_label(graph.node[i]) for i in cycle + cycle[:1])
            raise OnnxImportError(f"{where}: the graph has a cycle: {path}")
        node, name, source = late
        raise OnnxImportError(f"{where}: nodes are not in topological order: {_label(node)} reads {name!r}, which "
                              f"{_label(source)} computes after it (ONNX requires sorted nodes)")
    for value in graph.output:
        if value.name not in producer:
            raise OnnxImportError(f"{where}: graph output {value.name!r} is computed by no node")


def _find_cycle(graph, producer) -> list[int] | None:
    """Indices of the nodes on one cycle, in data-flow order, or None for an acyclic graph (iterative DFS,
    so a long chain cannot hit Python's recursion limit)."""
    sources = [sorted({producer[n] for n in node.input if n and producer.get(n) is not None}) for node in graph.node]
    state = [0] * len(sources)                    # 0 unseen, 1 on the path, 2 done
    for root in range(len(sources)):
        if state[root]:
            continue
        state[root], path = 1, [(root, iter(sources[root]))]
        while path:
            index, rest = path[-1]
            source = next(rest, None)
            if source is None:
                state[index] = 2
                path.pop()
            elif state[source] == 1:              # walking against the data flow, back onto the path
                nodes = [i for i, _ in path]
                return nodes[nodes.index(source):][::-1]
            elif state[source] == 0:
                state[source] = 1
                path.append((source, iter(sources[source])))
    return None


def _main_tensors(graph):
    """(description, tensor, is_constant) for the initializers and the tensor attributes of the main graph."""
    for tensor in graph.initializer:
        yield f"initializer {tensor.name!r}", tensor, True
    for node in graph.node:
        for attr in node.attribute:
            constant = node.op_type == "Constant" and attr.name == "value"
            if attr.HasField("t"):
                yield f"{_label(node)} attribute {attr.name!r}", attr.t, constant
            for tensor in attr.tensors:
                yield f"{_label(node)} attribute {attr.name!r}", tensor, False


def _check_tensor(tensor, what: str, constant: bool, held: int | None = None) -> None:
    if tensor.HasField("segment"):
        raise OnnxImportError(f"{what}: segmented tensors are not supported")
    dims = list(tensor.dims)
    count = check_elements(dims, what)
    code = tensor.data_type
    if code not in _ITEMSIZE:
        if constant:
            raise OnnxImportError(f"{what}: dtype {_dtype(code)} is not one cnngraph computes with")
        return                                    # an attribute of a node the importer will refuse anyway
    if tensor.data_location == TensorProto.EXTERNAL:
        return                                    # load_external_data checks it against the file
    if held is not None:                          # its bytes are outside the message: no other data field
        field = next((f for f in _FIELD_NAMES if f != "raw_data" and len(getattr(tensor, f))), None)
        if field is not None:
            raise OnnxImportError(f"{what}: holds both raw_data and {field} (one data field only)")
    if held is not None or tensor.HasField("raw_data"):
        need, held = count * _ITEMSIZE[code], len(tensor.raw_data) if held is None else held
        if held != need:
            raise OnnxImportError(f"{what}: dims {dims} of {_dtype(code)} need {need} bytes but raw_data holds {held}")
        return
    field = _FIELD.get(code, "int32_data")
    held = len(getattr(tensor, field))
    if held != count:
        raise OnnxImportError(f"{what}: dims {dims} need {count} values but {field} holds {held}")


def _check_inputs(graph, where: str) -> None:
    constants = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in constants:               # a constant unless initializers_as_inputs
            continue
        if value.type.WhichOneof("value") != "tensor_type":
            raise OnnxImportError(f"{where}: graph input {value.name!r} is not a tensor")
        tensor = value.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            raise OnnxImportError(f"{where}: graph input {value.name!r} is {_dtype(tensor.elem_type)}; cnngraph "
                                  f"computes in float32 only")
        dims = [d.dim_value if d.HasField("dim_value") else "?" for d in tensor.shape.dim]
        check_elements(dims, f"{where}: graph input {value.name!r}")
        if 0 in dims:
            raise OnnxImportError(f"{where}: graph input {value.name!r} has shape {dims}: a dimension of 0 (cnngraph "
                                  f"does not compute with empty tensors)")


def _check_constant_dtypes(graph, where: str) -> None:
    wide = {TensorProto.FLOAT16, TensorProto.DOUBLE}
    dtypes = {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and node.output:
                    dtypes[node.output[0]] = attr.t.data_type
    for node in graph.node:
        if node.op_type in _TYPE_BLIND and node.domain in ("", "ai.onnx"):
            continue
        for name in node.input:
            if dtypes.get(name) in wide:
                raise OnnxImportError(f"{where}: {_label(node)} computes with {name!r}, a {_dtype(dtypes[name])} "
                                      f"constant; cnngraph computes in float32 only (a Cast to float would convert it)")


# --- folding ---------------------------------------------------------------------------------------------------
def check_fold(node, inputs, opset: int, spent: int = 0) -> int:
    """Before folding ``node`` on constant ``inputs``: refuse what could hang or exhaust memory.

    Returns ``spent`` plus the elements this node's outputs will have, for the caller to pass back on the
    next call (all folding in one import stays within MAX_FOLDED_ELEMENTS). Raises onnx_fold.FoldError,
    so the importer lists the node with its reason, as it does fold's own refusals. Refused:
      * ops with a subgraph (Loop, Scan, If): a constant Loop of 10**12 iterations would never end;
      * an output over MAX_ELEMENTS, predicted by onnx shape inference on this node alone, which reads the
        values of small inputs (shape vectors, pads, scales): Add of [1, n] and [n, 1], Pad, Resize,
        Expand, Gather... The other op folds are then bounded by the size of their inputs;
      * a MatMul, Gemm, Conv or ConvTranspose of more than MAX_FOLD_WORK multiply-adds.
    An output whose shape inference cannot tell is not counted.
    """
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
        raise FoldError("an op with a subgraph is not folded at import (a loop on constants could run for ever)")
    shapes = _predicted_shapes(node, inputs, opset)
    total = spent
    for name, shape in zip(node.output, shapes):
        if shape is None:
            continue
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise FoldError(f"its output {name!r} would have {count} elements (shape {list(shape)}), more than the "
                            f"{_cap(MAX_ELEMENTS)} cnngraph allows")
        total += count
    if total > MAX_FOLDED_ELEMENTS:
        raise FoldError(f"the constants folded at import would reach {total} elements, more than the "
                        f"{_cap(MAX_FOLDED_ELEMENTS)} cnngraph allows")
    work = _work(node, inputs, shapes[0] if shapes else None)
    if work > MAX_FOLD_WORK:
        raise FoldError(f"folding it would take {work} multiply-adds, more than the {_cap(MAX_FOLD_WORK)} "
                        f"cnngraph spends at import")
    return total


def _predicted_shapes(node, inputs, opset: int) -> list:
    """Output shapes onnx shape inference gives for ``node`` alone (None where it cannot tell). Inputs of up
    to 64 elements go in with their values; larger ones as a shape only, so nothing large is copied.
    ConstantOfShape, the weights of old models (hundreds per light-zoo model), is its shape input: read
    directly, without building a model for onnx (the same answer, a fraction of the import's time)."""
    if node.op_type == "ConstantOfShape" and len(inputs) == 1 and _is_shape_vector(inputs[0]):
        return [tuple(int(d) for d in inputs[0])]
    names, initializers, graph_inputs = [], [], []
    try:
        for i, array in enumerate(inputs):
            if array is None:
                names.append("")
                continue
            array, name = np.asarray(array), f"in{i}"
            names.append(name)
            if array.dtype != object and array.size <= 64:
                initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
            else:                                 # object arrays are shapes with a symbolic dim: int64
                code = TensorProto.INT64 if array.dtype == object else helper.np_dtype_to_tensor_dtype(array.dtype)
                graph_inputs.append(helper.make_tensor_value_info(name, code, array.shape))
        outputs = [f"out{i}" for i in range(len(node.output))]
        clone = helper.make_node(node.op_type, names, outputs, domain=node.domain)
        clone.attribute.extend(node.attribute)
        graph = helper.make_graph([clone], "fold", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs],
                                  initializer=initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain, opset)])
        inferred = shape_inference.infer_shapes(model).graph.output
    except Exception:                             # a node shape inference cannot read: fold will say why
        return [None] * len(node.output)
    shapes = []
    for value in inferred:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim if value.type.HasField("tensor_type") and tensor.HasField("shape") else None
        known = dims is not None and all(d.HasField("dim_value") for d in dims)
        shapes.append(tuple(d.dim_value for d in dims) if known else None)
    return shapes + [None] * (len(node.output) - len(shapes))


def _is_shape_vector(array) -> bool:
    array = np.asarray(array)
    return array.ndim == 1 and array.dtype == np.int64 and array.size <= 64 and bool(np.all(array >= 0))


def _work(node, inputs, out_shape) -> int:
    """Multiply-adds of the contractions folding may meet; 0 for other ops."""
    if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose") or len(inputs) < 2:
        return 0
    x, w = (np.asarray(a) if a is not None else None for a in inputs[:2])
    if x is None or w is None or x.ndim == 0 or w.ndim == 0:
        return 0
    out = math.prod(out_shape) if out_shape is not None else 0
    if node.op_type in ("MatMul", "Gemm"):
        return out * max(x.shape[-2:])           # the inner dimension, wherever transA puts it
    per_channel = w.size // max(w.shape[0], 1)
    return out * per_channel if node.op_type == "Conv" else x.size * per_channel


__all__ = ["MAX_ELEMENTS", "MAX_FOLDED_ELEMENTS", "MAX_FOLD_WORK", "MAX_MODEL_BYTES",
           "check_elements", "check_model_file", "check_structure", "check_fold", "check_node_sizes"]
