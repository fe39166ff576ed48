"""Import an ONNX model as a Graph: the models PyTorch's exporters and the ONNX zoo produce, and every graph
our exporter writes.

Each ONNX node becomes one of our nodes named after its output value (so graph outputs keep their names).
Initializers and Constant nodes are constants: a layer reading one takes it as a parameter (float32, bit for
bit, weights read once: reading.py); a generic op reading one reads a Constant node named after it. Nodes
whose inputs are all constants are folded (fold.py), Shape included, with a symbolic batch kept as a name: that is how the
Shape -> Gather -> Unsqueeze -> Concat -> Reshape arithmetic of exporters and the ConstantOfShape weights of
old models become plain constants. The model is checked with onnx.checker first.

The mapping itself is one handler per ONNX op, declared in the family module of the layer it produces
(cnngraph/layers/*.py, registered in mapping.IMPORTERS); handlers.py holds those of ONNX-only machinery
(Constant, Shape, Cast, Identity, Dropout). A handler sees its own node only: one ONNX node becomes one node
of ours wherever the IR has the op, and the nicer forms (Linear from MatMul + Add, a Pad merged into its
pool, ...) are level-1 rules of the pass manager (passes/canon_*.py), so ``cg.optimize(graph, level=1)``
gives back what the exporter wrote. Before a node is mapped it is checked against the spec
(schema.py) and, after, every size it creates is bounded (safety.check_node_sizes).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import CnnGraphError, OnnxImportError
from ..graph import Graph
from ..readonly import freeze_in_place, readonly_array
from . import handlers
from .external import load_external_data
from .fold import FOLDERS, FoldError, fold, is_symbolic
from .handler_tools import Unsupported
from .mapping import IMPORTERS
from .reading import check_without_weights, open_model, take_arrays
from .safety import check_fold, check_node_sizes, check_structure
from .schema import check_attributes, check_input_types, check_opset, type_name
from .shared import unique_name

HANDLERS = {**IMPORTERS, **handlers.HANDLERS}   # every ONNX op the importer maps, by op_type


# --- loading ---------------------------------------------------------------------------------------------------
def _check_graph_found(model: onnx.ModelProto, where: str) -> None:
    if not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{where}: not an ONNX model (no graph found; truncated or another format?)")


def _check(model, where: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as error:                                   # ValidationError, ValueError
        raise OnnxImportError(f"{where}: not a valid ONNX model: {_one_line(error)}") from None


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_onnx(path_or_model, *, initializers_as_inputs: bool = False) -> Graph:
    """Read an ONNX model (a path, bytes or a ModelProto), check it and map it to a Graph.

    Graph inputs that have an initializer are constants (their initializer is the value) unless
    ``initializers_as_inputs``, which keeps them as inputs of the graph. The weights are read once, as
    read-only arrays (reading.py): views of the bytes given, read straight from the file, or memory-mapped
    from external data files (inside the model's folder only).
    """
    with open_model(path_or_model) as source:
        model, where = source.parse(), source.where
        _check_graph_found(model, where)
        opset = check_opset(model, where)
        mapped: dict = {}
        load_external_data(model, source.folder, where, mapped)
        held = source.raw_lengths()
        both = sorted(set(held) & set(mapped))
        if both:
            raise OnnxImportError(f"{where}: initializer {model.graph.initializer[both[0]].name!r} holds both "
                                  f"raw_data and external data")
        held.update({index: array.nbytes for index, array in mapped.items()})
        check_structure(model, where, held)
        arrays = take_arrays(model, source, mapped)
    del mapped
    check_without_weights(model, lambda checked: _check(checked, where))
    return _Importer(model.graph, opset, where, initializers_as_inputs, arrays).run()


# --- the importer ----------------------------------------------------------------------------------------------
class _Importer:
    def __init__(self, onnx_graph, opset: int, where: str, initializers_as_inputs: bool = False, arrays=None):
        self.og, self.opset, self.where = onnx_graph, opset, where
        self.graph = Graph(onnx_graph.name or "graph")
        if arrays is None:
            arrays = [numpy_helper.to_array(t) for t in onnx_graph.initializer]
        self.consts: dict[str, np.ndarray] = {t.name: a for t, a in zip(onnx_graph.initializer, arrays)}
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
        except (Unsupported, FoldError) as reason:
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
            raise Unsupported(f"{what} must be a constant")
        if is_symbolic(self.consts[name]):
            raise Unsupported(f"{what} depends on a symbolic dimension")
        return self.consts[name]

    def optional_const(self, node, index: int, what: str):
        return self.const(node.input[index], what) if len(node.input) > index and node.input[index] else None

    def value(self, name: str) -> str:
        if name in self.values:
            return name
        if name in self.consts:
            raise Unsupported(f"input {name!r} is a constant, not a computed value")
        if name not in self.values:
            raise Unsupported(f"reads {name!r}, which is not a value of the graph")
        return name

    def operand(self, name: str) -> str:
        """A value of the graph for ``name``; a constant becomes a Constant node named after it (once)."""
        if name in self.consts and name not in self.values:
            array = self.const(name, f"constant {name!r}")
            if array.dtype != np.float32:                # a Shape's int64, say: our values are float32
                raise Unsupported(f"constant {name!r} is {array.dtype}; cnngraph's values are float32")
            self.graph.add("Constant", [], dict(shape=array.shape), dict(value=readonly_array(freeze_in_place(array))),
                           name=name)
            check_node_sizes(self.graph, name)
            self.values.add(name)
        return self.value(name)

    def shape(self, name: str) -> tuple:
        return self.graph.type_of(name).shape

    def add(self, node, op: str, inputs, attrs=None, params=None) -> None:
        extra = [o for o in node.output[1:] if o and (self.readers.get(o) or o in self.graph_outputs)]
        if extra:
            raise Unsupported(f"its extra outputs {extra} are read")
        name = node.output[0]
        params = {k: readonly_array(freeze_in_place(v)) for k, v in (params or {}).items()}   # kept without a copy
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
