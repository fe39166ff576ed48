"""Import an ONNX model as a Graph: the models PyTorch's exporters and the ONNX zoo produce, and every graph
our exporter writes.

Each ONNX node becomes one of our nodes named after its output value (so graph outputs keep their names).
Initializers and Constant nodes are constants: a layer reading one takes it as a parameter (float32, bit for
bit); a generic op reading one reads a Constant node named after it. Nodes whose inputs are all constants are
folded (fold.py), Shape included, with a symbolic batch kept as a name: that is how the
Shape -> Gather -> Unsqueeze -> Concat -> Reshape arithmetic of exporters and the ConstantOfShape weights of
old models become plain constants. The model is checked with onnx.checker first.

Op mapping (ONNX -> ours):
  Conv (2-D; auto_pad made explicit) -> Conv2d;  BatchNormalization (inference) -> BatchNorm2d
  Gemm with constant B -> Linear (alpha folded into the weight, transA a Transpose, a non-vector C an Add);
      with computed B -> Transpose/MatMul/Mul/Add
  MatMul(x, constant 2-D W) [-> Add(constant b), its only reader] -> Linear;  other MatMul -> MatMul
  Relu, LeakyRelu, Sigmoid, Tanh -> ReLU, LeakyReLU, Sigmoid, Tanh
  Clip -> ReLU6 (0, 6), ReLU (0, none), else Hardtanh(min, max)
  Softmax -> Softmax(axis) from opset 13; before, Flatten -> Softmax(-1) -> Reshape (it normalized the tail)
  MaxPool / AveragePool (2-D) -> MaxPool2d / AvgPool2d;  GlobalAveragePool / GlobalMaxPool -> Global*Pool2d
  Flatten(1) -> Flatten; other axes and Reshape/Squeeze/Unsqueeze -> Flatten when they merge consecutive
      axes, else Reshape;  Transpose, Pad, ReduceMean, Sub, Div, LRN (odd sizes) -> the generic ops
  Add / Sum -> Add (broadcast=True when shapes differ);  Mul -> Mul;  Concat -> Concat
  Identity, Dropout (inference), Cast to float -> Identity

Pooling with ceil_mode (the exporter's corner cases, read back):
  Pad(0) -> AveragePool(pads 0, count_include_pad=0, ceil)   -> AvgPool2d(pads of the Pad, count_include_pad=1)
  Pad(-inf) -> MaxPool                                        -> MaxPool2d with the padding merged (ceil_mode
                                                                 recovered when the Pad is exactly its overhang)
  depthwise Conv of ones -> Mul(constant 1/divisor)           -> AvgPool2d, when some ceil_mode/count_include_pad
                                                                 gives exactly those pads and divisors
  Any other Pad or Conv of ones stays what it is. A ceil_mode window where PyTorch and ONNX disagree on the
  output size (pytorch #71549), or an average that counts padding and overhangs it (pytorch #183528), is
  refused rather than guessed.

Refused, every problem listed with its node names in one error: ops with no mapping, 1-D/3-D convolution and
pooling, training-mode nodes, even-sized LRN, shapes computed from values (not from shapes), external data.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import CnnGraphError, OnnxImportError
from ..graph import Graph
from ..shapes import average_pool_divisor, pool_output_size, product
from .fold import FOLDERS, FoldError, fold, is_symbolic, shape_array
from .safety import check_fold, check_model_file, check_node_sizes, check_structure, load_external_data
from .schema import check_attributes, check_input_types, check_opset, type_name
from .shared import axis_index, merged_axes, onnx_window_count, overhang, unique_name

SEARCH_TAPS = 2 ** 20             # the largest window-sum tap table (outputs × kernel per axis) matched to a pool


class _Unsupported(Exception):
    """A node this importer cannot map; the message says why."""


def _nice_float(value) -> float:
    """The shortest decimal that a float32 attribute came from (1e-5 rather than 9.99999974e-06)."""
    return float(str(np.float32(value)))


# --- loading ---------------------------------------------------------------------------------------------------
def _read_model(path_or_model) -> tuple[onnx.ModelProto, str, str | None]:
    """The parsed model, how to name it in messages, and its folder (None unless read from a file)."""
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "<ModelProto>", None
    folder = None
    if isinstance(path_or_model, (bytes, bytearray)):
        data, where = bytes(path_or_model), "<bytes>"
    else:
        where = os.fspath(path_or_model)
        check_model_file(where)
        folder = os.path.dirname(os.path.abspath(where))
        try:
            with open(where, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise OnnxImportError(f"{where}: cannot read: {error.strerror or error}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:                                   # protobuf's DecodeError and friends
        raise OnnxImportError(f"{where}: not an ONNX model (cannot parse: {_one_line(error)})") from None
    return model, where, folder


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _check_graph_found(model: onnx.ModelProto, where: str) -> None:
    if not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{where}: not an ONNX model (no graph found; truncated or another format?)")


def _check(model: onnx.ModelProto, where: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as error:                                   # ValidationError, ValueError
        raise OnnxImportError(f"{where}: not a valid ONNX model: {_one_line(error)}") from None


def load_onnx(path_or_model, *, initializers_as_inputs: bool = False) -> Graph:
    """Read an ONNX model (a path, bytes or a ModelProto), check it and map it to a Graph.

    Graph inputs that have an initializer are constants (their initializer is the value) unless
    ``initializers_as_inputs``, which keeps them as inputs of the graph.
    """
    model, where, folder = _read_model(path_or_model)
    _check_graph_found(model, where)
    opset = check_opset(model, where)
    if folder is None and isinstance(path_or_model, onnx.ModelProto):
        model = onnx.ModelProto.FromString(path_or_model.SerializeToString())   # loading data must not touch it
    load_external_data(model, folder, where)
    check_structure(model, where)
    _check(model, where)
    return _Importer(model.graph, opset, where, initializers_as_inputs).run()


# --- the importer ----------------------------------------------------------------------------------------------
class _Importer:
    def __init__(self, onnx_graph, opset: int, where: str, initializers_as_inputs: bool = False):
        self.og, self.opset, self.where = onnx_graph, opset, where
        self.graph = Graph(onnx_graph.name or "graph")
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in onnx_graph.initializer}
        if initializers_as_inputs:
            for value in onnx_graph.input:
                self.consts.pop(value.name, None)
        self.readers: dict[str, list] = {}
        self.names: set[str] = {v.name for v in onnx_graph.input} | set(self.consts)
        for node in onnx_graph.node:
            self.names.update(node.output)
            for name in node.input:
                if name:
                    self.readers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in onnx_graph.output}
        self.values: set[str] = set()             # ONNX value names that are values of our graph
        self.deferred: dict[str, tuple] = {}      # value -> (kind, data): a helper folded into its reader
        self.poisoned: set[str] = set()
        self.problems: list[tuple[str, str, str]] = []   # (op_type, node name, reason)
        self.folded = 0                           # elements computed by folding so far

    def run(self) -> Graph:
        for value in self.og.input:
            if value.name not in self.consts:
                self._input(value)
        for node in self.og.node:
            self._node(node)
        outputs = []
        for value in self.og.output:
            if value.name in self.consts and value.name not in self.poisoned:
                dtype = self.consts[value.name].dtype
                if dtype != np.float32:                  # ONNX's Shape gives int64, say: no float32 stand-in
                    raise OnnxImportError(f"{self.where}: graph output {value.name!r} is a constant of type "
                                          f"{'int64' if dtype.kind == 'O' else dtype}; cnngraph's values are float32")
                self._guard(lambda: self.operand(value.name), "output", value.name)  # noqa: B023 (called at once)
            elif value.name not in self.values and value.name not in self.poisoned:
                raise OnnxImportError(f"{self.where}: graph output {value.name!r} is not computed by the graph")
            outputs.append(value.name)
        if self.problems:
            kinds = {}
            for op_type, name, reason in self.problems:
                kinds.setdefault(op_type, []).append(f"{name!r}" + (f" ({reason})" if reason else ""))
            listing = "; ".join(f"{op} at {', '.join(names)}" for op, names in kinds.items())
            raise OnnxImportError(f"{self.where}: unsupported ONNX ops (opset {self.opset}): {listing}")
        self.graph.output(*outputs)
        return self.graph

    def _input(self, value) -> None:
        kind = value.type.WhichOneof("value")
        tensor = value.type.tensor_type
        if kind != "tensor_type" or tensor.elem_type != onnx.TensorProto.FLOAT or not tensor.HasField("shape"):
            raise OnnxImportError(f"{self.where}: input {value.name!r} must be a float32 tensor of known rank")
        dims = []
        for dim in tensor.shape.dim:
            which = dim.WhichOneof("value")
            dims.append(dim.dim_value if which == "dim_value" else dim.dim_param if which == "dim_param" else None)
        self.graph.input(value.name, dims)
        self._guard(lambda: check_node_sizes(self.graph, value.name), "input", value.name)
        self.values.add(value.name)

    def _node(self, node) -> None:
        label = node.name or (node.output[0] if node.output else node.op_type)
        standard = node.domain in ("", "ai.onnx")
        op_type = node.op_type if standard else f"{node.domain}.{node.op_type}"
        handler = HANDLERS.get(node.op_type) if standard else None
        present = [name for name in node.input if name]
        foldable = standard and present and all(name in self.consts for name in present) and node.op_type != "Constant"
        if handler is None and not foldable:             # listed even after an unsupported node
            reason = "on computed values (only folded on constants)" if standard and node.op_type in FOLDERS else ""
            self.problems.append((op_type, label, reason))
            self.poisoned.update(node.output)
            return
        if any(name in self.poisoned for name in node.input):
            self.poisoned.update(node.output)
            return
        if standard:                                     # what the spec says the node may be, before any use
            self._guard(lambda: self._check_node(node), node.op_type, label)
        if foldable:
            self._guard(lambda: self._fold(node), node.op_type, label, node)
            return
        self._guard(lambda: handler(self, node), node.op_type, label, node)

    def _guard(self, action, op_type: str, label: str, node=None) -> None:
        """Run one mapping step: an unsupported form is collected for the one error; a misfit raises now."""
        try:
            action()
        except (_Unsupported, FoldError) as reason:
            self.problems.append((op_type, label, str(reason)))
            if node is not None:
                self.poisoned.update(node.output)
        except CnnGraphError as error:
            raise OnnxImportError(f"{self.where}: node {label!r} ({op_type}): {error}") from None

    def _check_node(self, node) -> None:
        check_attributes(node)
        check_input_types(node, [self.type_name(name) if name else None for name in node.input], self.opset)

    def type_name(self, name: str) -> str | None:
        """ONNX's type of a value: a constant's own, float for our graph's values (cnngraph computes in float32)."""
        if name in self.consts:
            return type_name(self.consts[name].dtype)
        return "tensor(float)" if name in self.values else None

    def _fold(self, node) -> None:
        inputs = [self.consts[name] if name else None for name in node.input]
        self.folded = check_fold(node, inputs, self.opset, self.folded)        # bounded before it runs
        results = fold(node, inputs, self.opset)
        for name, array in zip(node.output, results):
            if name:
                self.consts[name] = array

    # --- helpers used by the handlers ------------------------------------------------------------------------
    def attrs(self, node) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise _Unsupported(f"{what} must be a constant")
        if is_symbolic(self.consts[name]):
            raise _Unsupported(f"{what} depends on a symbolic dimension")
        return self.consts[name]

    def optional_const(self, node, index: int, what: str):
        return self.const(node.input[index], what) if len(node.input) > index and node.input[index] else None

    def value(self, name: str) -> str:
        if name in self.values:
            return name
        if name in self.consts:
            raise _Unsupported(f"input {name!r} is a constant, not a computed value")
        if name not in self.values:
            raise _Unsupported(f"reads {name!r}, which is not a value of the graph")
        return name

    def operand(self, name: str) -> str:
        """A value of the graph for ``name``; a constant becomes a Constant node named after it (once)."""
        if name in self.consts and name not in self.values:
            array = self.const(name, f"constant {name!r}")
            if array.dtype != np.float32:                # a Shape's int64, say: our values are float32
                raise _Unsupported(f"constant {name!r} is {array.dtype}; cnngraph's values are float32")
            self.graph.add("Constant", [], dict(shape=array.shape), dict(value=array), name=name)
            check_node_sizes(self.graph, name)
            self.values.add(name)
        return self.value(name)

    def shape(self, name: str) -> tuple:
        return self.graph.type_of(name).shape

    def sole_reader(self, name: str):
        readers = self.readers.get(name, [])
        if len(readers) == 1 and name not in self.graph_outputs:
            return readers[0]
        return None

    def add(self, node, op: str, inputs, attrs=None, params=None) -> None:
        extra = [o for o in node.output[1:] if o and (self.readers.get(o) or o in self.graph_outputs)]
        if extra:
            raise _Unsupported(f"its extra outputs {extra} are read")
        name = node.output[0]
        params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (params or {}).items()}
        self.graph.add(op, inputs, attrs, params, name=name)
        check_node_sizes(self.graph, name)
        self.values.add(name)

    def add_step(self, node, op: str, inputs, attrs=None, params=None) -> str:
        """A node of our graph that one ONNX node expands to before its last one: "<output>/<op>"."""
        name = unique_name(f"{node.output[0]}/{op}", lambda n: n in self.names or n in self.graph)
        self.names.add(name)
        self.graph.add(op, inputs, attrs, params, name=name)
        check_node_sizes(self.graph, name)
        return name


# --- handlers: one per ONNX op ---------------------------------------------------------------------------------
def _same_pads(size, kernel, stride, dilation, mode: str) -> tuple[int, int]:
    """auto_pad SAME_*: out = ceil(in/stride), total = max(0, (out−1)·s + (k−1)·d + 1 − in); UPPER puts the
    extra cell at the end, LOWER at the beginning."""
    if not isinstance(size, int):
        raise _Unsupported("auto_pad SAME needs a static spatial size")
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


def _spatial(imp, node, x, kernel, strides, dilations, a) -> tuple[int, int, int, int]:
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "NOTSET":
        pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4:
            raise _Unsupported(f"pads {list(pads)} is not 2-D")
        return pads
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise _Unsupported(f"auto_pad {mode!r}")
    size = imp.shape(x)[2:]
    (top, bottom), (left, right) = (_same_pads(size[i], kernel[i], strides[i], dilations[i], mode) for i in range(2))
    return (top, left, bottom, right)


def _pair(values, default, what):
    values = tuple(int(v) for v in values) if values is not None else default
    if len(values) != 2:
        raise _Unsupported(f"{what} {list(values)} is not 2-D")
    return values


def _conv(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    weight = imp.const(node.input[1], "the weight")
    if weight.ndim != 4 or len(imp.shape(x)) != 4:
        raise _Unsupported("only 2-D convolutions (4-D input and weight)")
    bias = imp.const(node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else None
    groups = int(a.get("group", 1))
    kernel = tuple(int(k) for k in weight.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise _Unsupported(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    strides, dilations = _pair(a.get("strides"), (1, 1), "strides"), _pair(a.get("dilations"), (1, 1), "dilations")
    attrs = dict(in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]), kernel_size=kernel,
                 stride=strides, pads=_spatial(imp, node, x, kernel, strides, dilations, a), dilation=dilations,
                 groups=groups, bias=bias is not None)
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    if _is_ones_depthwise(imp, node, weight, bias, groups):           # offered to the Mul that reads it
        imp.deferred[node.output[0]] = ("sum_pool", dict(x=x, kernel=kernel, stride=strides, dilation=dilations,
                                                         pads=attrs["pads"], conv=node, attrs=attrs, params=params))
        return
    imp.add(node, "Conv2d", [x], attrs, params)


def _is_ones_depthwise(imp, node, weight, bias, groups) -> bool:
    """The exporter's window sums for a ceil_mode average (a depthwise Conv of ones read only by a Mul)."""
    reader = imp.sole_reader(node.output[0])
    return (bias is None and groups > 1 and weight.shape[0] == groups and weight.shape[1] == 1
            and bool(np.all(weight == 1)) and reader is not None and reader.op_type == "Mul")


def _gemm(imp, node):
    """alpha·A'·B' + beta·C: a Linear when B (and C) are constants, else MatMul and friends."""
    a = imp.attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if not (np.isfinite(alpha) and np.isfinite(beta)):      # alpha·(A·B) is not A·(alpha·B) for infinities
        raise _Unsupported(f"alpha {alpha} and beta {beta} must be finite")
    x = imp.value(node.input[0])
    if len(imp.shape(x)) != 2:
        raise _Unsupported("the input must be 2-D")
    if a.get("transA", 0):
        x = imp.add_step(node, "Transpose", [x], dict(perm=(1, 0)))
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.input[1] in imp.consts:
        b = imp.const(node.input[1], "B")
        if b.ndim != 2:
            raise OnnxImportError(f"B ({node.input[1]!r}) has shape {list(b.shape)}; Gemm takes a matrix")
        weight = b if a.get("transB", 0) else b.T
        weight = weight if alpha == 1.0 else weight * np.float32(alpha)
        out = int(weight.shape[0])
        bias = None
        if c is not None and c in imp.consts:
            constant = imp.const(c, "C")
            if constant.size in (1, out) and (constant.ndim < 2 or constant.shape[0] == 1):
                bias, c = np.broadcast_to(constant.reshape(-1), (out,)) * np.float32(beta), None
        params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        attrs = dict(in_features=int(weight.shape[1]), out_features=out, bias=bias is not None)
        if c is None:
            imp.add(node, "Linear", [x], attrs, params)
            return
        product = imp.add_step(node, "Linear", [x], attrs, params)
    else:
        b = imp.value(node.input[1])
        if a.get("transB", 0):
            b = imp.add_step(node, "Transpose", [b], dict(perm=(1, 0)))
        product = imp.add_step(node, "MatMul", [x, b])
        if alpha != 1.0:
            product = imp.add_step(node, "Mul", [product, _scalar(imp, node, "alpha", alpha)])
        if c is None:
            imp.add(node, "Identity", [product])
            return
    c_value = imp.operand(c)
    if beta != 1.0:
        c_value = imp.add_step(node, "Mul", [c_value, _scalar(imp, node, "beta", beta)])
    imp.add(node, "Add", [product, c_value], dict(broadcast=True))


def _scalar(imp, node, key: str, value: float) -> str:
    return imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.array(value, np.float32)))


def _matmul(imp, node):
    a_name, b_name = node.input[0], node.input[1]
    w = imp.consts.get(b_name)
    if a_name in imp.values and w is not None and not is_symbolic(w) and w.ndim == 2:
        x = imp.value(a_name)
        reader = imp.sole_reader(node.output[0])
        if reader is not None and reader.op_type == "Add" and len(reader.input) == 2:
            other = reader.input[1] if reader.input[0] == node.output[0] else reader.input[0]
            bias = imp.consts.get(other)
            if bias is not None and not is_symbolic(bias) and bias.shape == (w.shape[1],):
                imp.deferred[node.output[0]] = ("matmul", (x, w, bias))
                return
        attrs = dict(in_features=int(w.shape[0]), out_features=int(w.shape[1]), bias=False)
        imp.add(node, "Linear", [x], attrs, {"weight": w.T})
        return
    imp.add(node, "MatMul", [imp.operand(a_name), imp.operand(b_name)])


def _add(imp, node):
    for name in node.input:
        if imp.deferred.get(name, ("",))[0] == "matmul":       # MatMul -> Add(bias): one Linear
            x, w, bias = imp.deferred.pop(name)[1]
            attrs = dict(in_features=int(w.shape[0]), out_features=int(w.shape[1]), bias=True)
            imp.add(node, "Linear", [x], attrs, {"weight": w.T, "bias": bias})
            return
    _sum(imp, node)


def _sum(imp, node):
    inputs = [imp.operand(name) for name in node.input]
    if len(inputs) == 1:
        imp.add(node, "Identity", inputs)
        return
    same = all(imp.shape(i) == imp.shape(inputs[0]) for i in inputs)
    imp.add(node, "Add", inputs, {} if same else dict(broadcast=True))


def _binary(op: str):
    def handler(imp, node):
        imp.add(node, op, [imp.operand(node.input[0]), imp.operand(node.input[1])])
    return handler


def _simple(op: str, **attr_map):
    def handler(imp, node):
        a = imp.attrs(node)
        attrs = {ours: _nice_float(a.get(theirs, default)) for ours, (theirs, default) in attr_map.items()}
        imp.add(node, op, [imp.value(node.input[0])], attrs)
    return handler


def _clip(imp, node):
    """Clip(0, 6) is ReLU6, Clip(0, ∞) ReLU, any other Hardtanh(min, max)."""
    if imp.opset < 11:
        a = imp.attrs(node)
        low, high = a.get("min"), a.get("max")
    else:
        low, high = (None if bound is None else bound.item()
                     for bound in (imp.optional_const(node, 1, "min"), imp.optional_const(node, 2, "max")))
    low = -np.inf if low is None else _nice_float(low)
    high = np.inf if high is None else _nice_float(high)
    x = imp.value(node.input[0])
    if (low, high) == (0.0, 6.0):
        imp.add(node, "ReLU6", [x])
    elif (low, high) == (0.0, np.inf):
        imp.add(node, "ReLU", [x])
    elif low > high:                                   # min(max(x, low), high) is high everywhere
        imp.add(node, "Hardtanh", [x], dict(min_val=high, max_val=high))
    else:
        imp.add(node, "Hardtanh", [x], dict(min_val=low, max_val=high))


def _softmax(imp, node):
    """From opset 13 Softmax normalizes along ``axis``; before, over the axes from ``axis`` on, flattened."""
    x = imp.value(node.input[0])
    rank = len(imp.shape(x))
    axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise _Unsupported(f"axis {axis} out of range for rank {rank}")
    if imp.opset >= 13 or axis % rank == rank - 1:
        imp.add(node, "Softmax", [x], dict(axis=axis if imp.opset >= 13 else -1))
        return
    flat = imp.add_step(node, "Flatten", [x], dict(start_dim=axis % rank, end_dim=-1))
    soft = imp.add_step(node, "Softmax", [flat], dict(axis=-1))
    imp.add(node, "Reshape", [soft], dict(shape=imp.shape(x)))


def _batchnorm(imp, node):
    a = imp.attrs(node)
    if a.get("training_mode", 0):
        raise _Unsupported("training_mode = 1")
    if imp.opset < 9 and not a.get("spatial", 1):
        raise _Unsupported("spatial = 0 (per-position statistics)")
    x = imp.value(node.input[0])
    weight, bias, mean, var = (imp.const(n, what) for n, what in zip(node.input[1:5], ("scale", "B", "mean", "var")))
    if weight.ndim != 1:
        raise OnnxImportError(f"scale ({node.input[1]!r}) has shape {list(weight.shape)}; one value per channel expected")
    params = dict(weight=weight, bias=bias, running_mean=mean, running_var=var)
    imp.add(node, "BatchNorm2d", [x], dict(num_features=int(weight.shape[0]), eps=_nice_float(a.get("epsilon", 1e-5))),
            params)


def _dropout(imp, node):
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode").item()):
        raise _Unsupported("training_mode = true")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _flatten(imp, node):
    """ONNX Flatten gives 2-D (prod(dims[:axis]), prod(dims[axis:])): our Flatten when axis is 1."""
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    rank, axis = len(shape), int(imp.attrs(node).get("axis", 1))
    if not -rank <= axis <= rank:
        raise _Unsupported(f"axis {axis} out of range for rank {rank}")
    axis += rank if axis < 0 else 0
    if axis == 1 and rank >= 2:
        imp.add(node, "Flatten", [x], dict(start_dim=1, end_dim=-1))
    else:
        imp.add(node, "Reshape", [x], dict(shape=(product(shape[:axis]), product(shape[axis:]))))


def _reshape(imp, node):
    x = imp.value(node.input[0])
    if node.input[1] not in imp.consts:
        raise _Unsupported("the target shape is computed from values, not from shapes")
    target = [t if isinstance(t, str) else int(t) for t in imp.consts[node.input[1]].reshape(-1)]
    if imp.attrs(node).get("allowzero", 0) and 0 in target:          # without a 0, allowzero changes nothing
        raise _Unsupported("allowzero = 1 with a 0 in the shape (an empty tensor)")
    shape = imp.shape(x)
    merged = merged_axes(shape, target)
    if merged is not None:
        imp.add(node, "Flatten", [x], dict(start_dim=merged[0], end_dim=merged[1]))
    else:
        imp.add(node, "Reshape", [x], dict(shape=tuple(target)))


def _squeeze_unsqueeze(imp, node):
    """A Reshape to the shape ONNX's Squeeze/Unsqueeze gives (axes: attribute before 13, input from 13)."""
    x = imp.value(node.input[0])
    shape = list(imp.shape(x))
    if imp.opset < 13:
        axes = imp.attrs(node).get("axes")
    else:
        axes = imp.optional_const(node, 1, "axes")
    axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if node.op_type == "Unsqueeze":
        rank = len(shape) + len(axes)
        for axis in sorted(axis_index(a, rank, "Unsqueeze's axis") for a in axes):
            shape.insert(axis, 1)
    else:
        drop = ({axis_index(a, len(shape), "Squeeze's axis") for a in axes} if axes
                else {i for i, d in enumerate(shape) if d == 1})
        if any(shape[i] != 1 for i in drop):
            raise _Unsupported(f"squeezes axes {sorted(drop)} of {shape}, which are not all 1")
        shape = [d for i, d in enumerate(shape) if i not in drop]
    imp.add(node, "Reshape", [x], dict(shape=tuple(shape)))


def _transpose(imp, node):
    x = imp.value(node.input[0])
    perm = imp.attrs(node).get("perm") or list(reversed(range(len(imp.shape(x)))))
    imp.add(node, "Transpose", [x], dict(perm=tuple(int(p) for p in perm)))


def _reduce_mean(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    axes = a.get("axes") if imp.opset < 18 else imp.optional_const(node, 1, "axes")
    axes = () if axes is None else tuple(int(v) for v in np.asarray(axes).reshape(-1))
    if not axes and a.get("noop_with_empty_axes", 0):
        imp.add(node, "Identity", [x])
        return
    imp.add(node, "ReduceMean", [x], dict(axes=axes, keepdims=bool(a.get("keepdims", 1))))


def _global_maxpool(imp, node):
    imp.add(node, "GlobalMaxPool2d", [imp.value(node.input[0])])


def _lrn(imp, node):
    a = imp.attrs(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise _Unsupported(f"even size {size}: ONNX centres the window one channel off PyTorch's LocalResponseNorm")
    attrs = dict(size=size, alpha=_nice_float(a.get("alpha", 1e-4)), beta=_nice_float(a.get("beta", 0.75)),
                 k=_nice_float(a.get("bias", 1.0)))
    imp.add(node, "LocalResponseNorm", [imp.value(node.input[0])], attrs)


def _concat(imp, node):
    imp.add(node, "Concat", [imp.operand(n) for n in node.input if n], dict(axis=int(imp.attrs(node)["axis"])))


def _global_avgpool(imp, node):
    imp.add(node, "GlobalAvgPool2d", [imp.value(node.input[0])])


def _constant(imp, node):
    a = imp.attrs(node)
    if "value" in a:
        if a["value"].data_location == onnx.TensorProto.EXTERNAL:
            raise _Unsupported("external data")
        imp.consts[node.output[0]] = numpy_helper.to_array(a["value"])
    elif a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}:
        key = next(iter(a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}))
        imp.consts[node.output[0]] = np.array(a[key], dtype=np.float32 if "float" in key else np.int64)
    else:
        raise _Unsupported(f"the {', '.join(a)} form" if a else "no value attribute")


def _shape(imp, node):
    """A value's shape as a constant (a symbolic batch stays a name), for the reshape arithmetic to fold."""
    a = imp.attrs(node)
    shape = imp.shape(imp.value(node.input[0]))
    imp.consts[node.output[0]] = shape_array(shape)[a.get("start", 0):a.get("end", len(shape))]


def _cast(imp, node):
    if imp.attrs(node)["to"] != onnx.TensorProto.FLOAT:
        raise _Unsupported("a cast of a computed value to a type other than float32")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _identity(imp, node):
    imp.add(node, "Identity", [imp.value(node.input[0])])


# --- pooling ---------------------------------------------------------------------------------------------------
def _pad(imp, node):
    """A Pad; a zero or -inf spatial Pad read by one pooling node is first offered to it (the exporter's
    ceil_mode forms), which merges it when that is exact and writes it as a Pad otherwise."""
    a = imp.attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x = imp.value(node.input[0])
    rank = len(imp.shape(x))
    if imp.opset < 11:
        pads, fill = [int(p) for p in a.get("pads", [])], float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(node.input[1], "pads")]
        value = imp.optional_const(node, 2, "constant_value")
        fill = 0.0 if value is None else float(value.item())
        axes = imp.optional_const(node, 3, "axes")
        if axes is not None:                                  # pads for the listed axes only (opset 18)
            axes = [axis_index(int(v), rank, "Pad's axis") for v in axes.reshape(-1)]
            if len(pads) != 2 * len(axes):
                raise OnnxImportError(f"{len(pads)} pads for {len(axes)} axes; Pad takes two per axis")
            full = [0] * (2 * rank)
            for i, axis in enumerate(axes):
                full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
            pads = full
    if mode not in ("constant", "reflect", "edge"):
        raise _Unsupported(f"mode {mode!r}")
    reader = imp.sole_reader(node.output[0])
    if (mode == "constant" and rank == 4 and len(pads) == 8 and not any(pads[i] for i in (0, 1, 4, 5))
            and min(pads) >= 0 and reader is not None and reader.op_type in ("MaxPool", "AveragePool")):
        imp.deferred[node.output[0]] = ("pad", (x, (pads[2], pads[3], pads[6], pads[7]), fill, node))
        return
    imp.add(node, "Pad", [x], dict(pads=tuple(pads), mode=mode, value=fill))


def _merges_into_pool(maximum, fill, pads, include, ceil) -> bool:
    if maximum:
        return fill == -np.inf
    return fill == 0.0 and not any(pads) and not include and ceil


def _pool(imp, node):
    a = imp.attrs(node)
    maximum = node.op_type == "MaxPool"
    source = node.input[0]
    pre_pad = None
    if imp.deferred.get(source, ("",))[0] == "pad":
        x, pre_pad, fill, pad_node = imp.deferred.pop(source)[1]
        auto = a.get("auto_pad", b"NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET" or not _merges_into_pool(
                maximum, fill, tuple(int(p) for p in a.get("pads", (0, 0, 0, 0))), bool(a.get("count_include_pad", 0)),
                bool(a.get("ceil_mode", 0))):
            top, left, bottom, right = pre_pad
            imp.add(pad_node, "Pad", [x], dict(pads=(0, 0, top, left, 0, 0, bottom, right), mode="constant", value=fill))
            x, pre_pad = pad_node.output[0], None
    else:
        x = imp.value(source)
    if len(imp.shape(x)) != 4:
        raise _Unsupported("only 2-D pooling (a 4-D input)")
    if maximum and int(a.get("storage_order", 0)):
        raise _Unsupported("storage_order = 1")
    kernel = _pair(a["kernel_shape"], None, "kernel_shape")
    stride = _pair(a.get("strides"), (1, 1), "strides")
    dilation = _pair(a.get("dilations"), (1, 1), "dilations")
    pads = _spatial(imp, node, x, kernel, stride, dilation, a)
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    size = imp.shape(x)[2:]
    if pre_pad is not None:
        padded = [size[i] + pre_pad[i] + pre_pad[2 + i] for i in range(2)]
        expected = [onnx_window_count(padded[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil)
                    for i in range(2)]
        if maximum:
            pads = tuple(p + q for p, q in zip(pads, pre_pad))
            recovered = _recover_ceil(size, kernel, stride, dilation, pads, pre_pad, expected) if not ceil else None
            if recovered is not None:
                pads, ceil = recovered, True
        else:
            pads, include = pre_pad, True
    else:
        expected = [onnx_window_count(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil)
                    for i in range(2)]
        if not maximum and ceil and include and any(
                overhang(size[i], expected[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)):
            raise _Unsupported("a ceil_mode average counting padding whose last window overhangs it "
                               "(runtimes disagree on its divisor, pytorch #183528)")
    got = [pool_output_size(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil) for i in range(2)]
    if got != expected:
        raise _Unsupported(f"ceil_mode output size {expected} differs from PyTorch's {got} "
                           f"(a window starting in the padding, pytorch #71549)")
    attrs = dict(kernel_size=kernel, stride=stride, pads=pads, dilation=dilation, ceil_mode=ceil)
    if not maximum:
        attrs["count_include_pad"] = include
    imp.add(node, "MaxPool2d" if maximum else "AvgPool2d", [x], attrs)


def _recover_ceil(size, kernel, stride, dilation, merged, pre_pad, expected):
    """The exporter's Pad(-inf, end overhang) + floor MaxPool: the original ceil_mode pads, if they fit."""
    if pre_pad[0] or pre_pad[1]:
        return None
    pads = (merged[0], merged[1], merged[2] - pre_pad[2], merged[3] - pre_pad[3])
    got = [pool_output_size(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], True) for i in range(2)]
    beyond = [overhang(size[i], got[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)]
    return pads if got == expected and beyond == [pre_pad[2], pre_pad[3]] else None


def _mul(imp, node):
    """Conv(ones, depthwise) -> Mul(1/divisor): the exporter's ceil_mode average no single ONNX ceil_mode fits."""
    source = next((n for n in node.input if imp.deferred.get(n, ("",))[0] == "sum_pool"), None)
    if source is None:
        _binary("Mul")(imp, node)
        return
    d = imp.deferred.pop(source)[1]
    other = node.input[1] if node.input[0] == source else node.input[0]
    if other not in imp.consts or not _window_average(imp, node, d, imp.const(other, "the scale")):
        imp.add(d["conv"], "Conv2d", [d["x"]], d["attrs"], d["params"])     # a plain convolution after all
        _binary("Mul")(imp, node)


def _window_average(imp, node, d, scale) -> bool:
    """Adds the AvgPool2d whose PyTorch divisors are ``scale``; False when none matches.

    The exporter writes these window sums for PyTorch pools, whose end pads plus overhang stay under the
    kernel; larger pads, or tap tables over SEARCH_TAPS, are left a convolution (correct, not recognised),
    so the search below costs at most 2·kh·kw small candidates."""
    size, (kh, kw), stride, conv_pads = imp.shape(d["x"])[2:], d["kernel"], d["stride"], d["pads"]
    if d["dilation"] != (1, 1) or not all(isinstance(s, int) for s in size):
        raise _Unsupported("window sums with dilation or a symbolic spatial size")
    if conv_pads[2] >= kh or conv_pads[3] >= kw or scale.ndim != 4 or any(
            n * k > SEARCH_TAPS for n, k in zip(scale.shape[2:], (kh, kw))):
        return False
    top, left = conv_pads[0], conv_pads[1]
    # prefer PyTorch-style symmetric pads when several forms compute the same thing
    candidates = sorted(((include, bottom, right) for include in (True, False) for bottom in range(conv_pads[2] + 1)
                         for right in range(conv_pads[3] + 1)), key=lambda c: (c[1] != top) + (c[2] != left))
    for include, bottom, right in candidates:
        pads = (top, left, bottom, right)
        out = [pool_output_size(size[i], d["kernel"][i], stride[i], pads[i], pads[2 + i], 1, True) for i in range(2)]
        if (1, 1, *out) != scale.shape:
            continue
        beyond = [overhang(size[i], out[i], d["kernel"][i], stride[i], pads[i], pads[2 + i]) for i in range(2)]
        if (bottom + beyond[0], right + beyond[1]) != (conv_pads[2], conv_pads[3]):
            continue
        divisor = np.outer(*(average_pool_divisor(size[i], out[i], d["kernel"][i], stride[i], pads[i],
                                                  pads[2 + i], include) for i in range(2)))
        if np.any(divisor == 0):
            continue
        expected = (1.0 / divisor).astype(np.float32)[None, None]
        if np.array_equal(expected, scale):
            attrs = dict(kernel_size=(kh, kw), stride=stride, pads=pads, dilation=(1, 1), ceil_mode=True,
                         count_include_pad=include)
            imp.add(node, "AvgPool2d", [d["x"]], attrs)
            return True
    return False


HANDLERS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Sum": _sum,
    "Relu": _simple("ReLU"),
    "LeakyRelu": _simple("LeakyReLU", negative_slope=("alpha", 0.01)),
    "Sigmoid": _simple("Sigmoid"),
    "Tanh": _simple("Tanh"),
    "Clip": _clip,                        # Clip(0, 6) -> ReLU6
    "Softmax": _softmax,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Pad": _pad,                          # merged into the pooling node that reads it when exact
    "Mul": _mul,                          # window sums * 1/divisor -> AvgPool2d; else Mul
    "GlobalAveragePool": _global_avgpool,
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Concat": _concat,
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _constant,
    "Sub": _binary("Sub"),
    "Div": _binary("Div"),
    "Transpose": _transpose,
    "Squeeze": _squeeze_unsqueeze,
    "Unsqueeze": _squeeze_unsqueeze,
    "ReduceMean": _reduce_mean,
    "GlobalMaxPool": _global_maxpool,
    "LRN": _lrn,
    "Shape": _shape,
    "Cast": _cast,
}
