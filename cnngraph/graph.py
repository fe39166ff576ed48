"""The IR: a graph of layer nodes, each producing one value named after the node.

A networkx DiGraph stores the dependency edges (and gives us topological order and cycle checks), but an
edge cannot carry input order and collapses ``x + x``, so each node keeps its ordered tuple of inputs and
the edges are derived from it. Callers use Graph methods only; the DiGraph stays private.
"""
from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .errors import CnnGraphError, GraphError, ShapeError
from .layer import Layer, Operand, check_param, lookup
from .shapes import TensorType, format_shape, normalize_shape

INPUT = "Input"


class _GraphInput(Layer):
    """What a graph input is as an op: no computation, every trait false (not registered: not a layer)."""


@dataclass
class Node:
    """One layer application. Parameter arrays are shared, never modified in place: passes make new ones."""
    name: str
    op: str
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    type: TensorType | None = None

    @property
    def shape(self):
        return self.type.shape

    @property
    def layer(self) -> type[Layer]:
        return _GraphInput if self.op == INPUT else lookup(self.op)

    def label(self) -> str:
        return f"{self.name} ({self.op})"


@dataclass(frozen=True)
class Value:
    """A handle on a value of a graph, returned by ``input`` and ``apply``."""
    graph: Graph = field(repr=False)
    name: str

    @property
    def type(self) -> TensorType:
        return self.graph.node(self.name).type

    @property
    def shape(self):
        return self.type.shape

    def __repr__(self) -> str:
        return f"Value({self.name!r}, shape={format_shape(self.shape)})"


class Graph:
    def __init__(self, name: str = "graph"):
        self.name = name
        self._dag = nx.DiGraph()
        self._nodes: dict[str, Node] = {}
        self._rank: dict[str, int] = {}          # a topological numbering: every edge goes to a higher rank
        self._serial = itertools.count()
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._name_counts: Counter = Counter()
        self._order_cache: list[str] | None = None
        self.version = 0                          # bumped by every change; backends cache compiled plans on it

    # --- building ----------------------------------------------------------------------------------------
    def input(self, name: str, shape, dtype: str = "float32") -> Value:
        if dtype != "float32":
            raise GraphError(f"input {name!r}: only float32 inputs are supported, got {dtype}")
        node = Node(self._claim(name), INPUT, type=TensorType(normalize_shape(shape, what=f"input {name!r}")))
        self._insert(node)
        self._inputs.append(node.name)
        return Value(self, node.name)

    def apply(self, layer, *values, name: str | None = None) -> Value:
        """Apply a layer (or a Sequential, inlined layer by layer) to values of this graph."""
        if hasattr(layer, "apply_to"):
            return layer.apply_to(self, *values)
        if not isinstance(layer, Layer):
            raise GraphError(f"apply() takes a layer, got {type(layer).__name__}")
        return self.add(layer.op, values, layer.attrs, layer.params, name=name)

    def add(self, op: str, inputs, attrs: dict | None = None, params: dict | None = None,
            name: str | None = None) -> Value:
        """Add a node by op name; its type is inferred now, and a misfit raises naming the node and shapes."""
        layer = lookup(op)
        attrs = dict(attrs or {})
        names = tuple(self._value_name(v) for v in inputs)
        node_name = self._claim(name, layer.prefix)
        node = Node(node_name, op, names, attrs, dict(params or {}))
        try:
            node.params = self._checked_params(node)
            node.type = self._infer(node)
        except CnnGraphError:
            self._release(node_name, name)
            raise
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as error:   # unreadable attributes
            self._release(node_name, name)
            raise GraphError(f"{node.label()}: invalid or missing attribute: {error!r}") from None
        self._insert(node)
        return Value(self, node.name)

    def output(self, *values) -> None:
        names = [self._value_name(value) for value in values]
        for index, name in enumerate(names):
            if name in self._outputs or name in names[:index]:
                raise GraphError(f"{name!r} is already an output of graph {self.name!r}")
        self._outputs.extend(names)
        self._touch()

    # --- reading -----------------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._outputs)

    def node(self, name) -> Node:
        name = name.name if isinstance(name, Value) else name
        try:
            return self._nodes[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no value named {name!r}") from None

    def __contains__(self, name) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> list[Node]:
        """All nodes, inputs included, in a stable topological order."""
        return [self._nodes[n] for n in self.topo_order()]

    def layers(self) -> list[Node]:
        return [n for n in self.nodes if n.op != INPUT]

    def topo_order(self) -> list[str]:
        if self._order_cache is None:                # ranks follow the edges: sorting by rank is topological
            self._order_cache = sorted(self._nodes, key=self._rank.__getitem__)
        return list(self._order_cache)

    def users(self, name) -> list[str]:
        """Nodes that read the value, each once, in topological order."""
        name = self._value_name(name)
        return sorted(self._dag.successors(name), key=self._rank.__getitem__)

    def use_count(self, name) -> int:
        """How many times the value is read: by nodes (``x + x`` counts twice) and as a graph output."""
        name = self._value_name(name)
        reads = sum(self._nodes[u].inputs.count(name) for u in self._dag.successors(name))
        return reads + self._outputs.count(name)

    def type_of(self, name) -> TensorType:
        return self.node(name).type

    def operands(self, node: Node) -> list[Operand]:
        return [Operand(i, self._nodes[i].type) for i in node.inputs]

    # --- editing (passes) --------------------------------------------------------------------------------
    def set_inputs(self, name, inputs) -> None:
        """Rewire a node's inputs and re-infer the types downstream; a cycle or a misfit changes nothing."""
        name = self._value_name(name)
        self._rewire({name: tuple(self._value_name(v) for v in inputs)})

    def replace_all_uses_with(self, old, new) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new`` instead: all of them or none."""
        old, new = self._value_name(old), self._value_name(new)
        if old == new:
            return
        self._rewire({user: tuple(new if i == old else i for i in self._nodes[user].inputs)
                      for user in self.users(old)})
        self._outputs = [new if o == old else o for o in self._outputs]
        self._touch()

    def replace(self, name, op: str, inputs, attrs: dict | None = None, params: dict | None = None) -> None:
        """Redefine node ``name`` (same name, same readers) as ``op`` over ``inputs``: how a pass swaps a chain
        for one node. The new definition must produce the same type; otherwise nothing changes."""
        name = self._value_name(name)
        inputs = tuple(self._value_name(v) for v in inputs)
        self._check_acyclic({name: inputs})
        old = self._nodes[name]
        new = Node(name, op, inputs, dict(attrs or {}), dict(params or {}))
        new.params = self._checked_params(new)
        new.type = self._infer(new)
        if new.type != old.type:
            raise GraphError(f"{new.label()}: the replacement produces {new.type}, the node produced {old.type}")
        for source in set(old.inputs):
            self._dag.remove_edge(source, name)
        for source in inputs:
            self._dag.add_edge(source, name)
        self._nodes[name] = new
        self._keep_ranks_topological(name, inputs)
        self._touch()

    def _rewire(self, new_inputs: dict[str, tuple]) -> None:
        self._check_acyclic(new_inputs)
        old_inputs = {name: self._nodes[name].inputs for name in new_inputs}
        old_types = {}
        try:
            self._set_edges(new_inputs)
            position = self._rank
            pending = [(position[n], n) for n in new_inputs]
            heapq.heapify(pending)
            while pending:                       # re-infer in topological order, only where types change
                _, name = heapq.heappop(pending)
                node = self._nodes[name]
                if name in old_types:
                    continue
                old_types[name] = node.type
                node.type = self._infer(node)
                if node.type != old_types[name]:
                    for user in self._dag.successors(name):
                        heapq.heappush(pending, (position[user], user))
        except CnnGraphError:
            self._set_edges(old_inputs)
            for name, old_type in old_types.items():
                self._nodes[name].type = old_type
            raise

    def _check_acyclic(self, new_inputs: dict[str, tuple]) -> None:
        """Reading a value of lower rank can never close a cycle; only the others need a path search."""
        for name, inputs in new_inputs.items():
            for source in set(inputs):
                if source == name or (self._rank[source] > self._rank[name] and nx.has_path(self._dag, name, source)):
                    raise GraphError(f"{self._nodes[name].label()}: reading {source!r} would create a cycle")

    def _keep_ranks_topological(self, name: str, inputs) -> None:
        """After ``name`` started reading ``inputs``: renumber (stably) only if one of them ranks above it."""
        if any(self._rank[source] > self._rank[name] for source in inputs):
            order = nx.lexicographical_topological_sort(self._dag, key=self._rank.__getitem__)
            self._rank = {node: index for index, node in enumerate(order)}
            self._serial = itertools.count(len(self._rank))
            self._order_cache = None

    def _set_edges(self, new_inputs: dict[str, tuple]) -> None:
        for name, inputs in new_inputs.items():
            node = self._nodes[name]
            for source in set(node.inputs):
                self._dag.remove_edge(source, name)
            node.inputs = inputs
            for source in inputs:
                self._dag.add_edge(source, name)
        for name, inputs in new_inputs.items():
            self._keep_ranks_topological(name, inputs)
        self._touch()

    def erase(self, name) -> None:
        name = self._value_name(name)
        if self.users(name) or name in self._outputs:
            raise GraphError(f"cannot erase {self.node(name).label()}: it is still read by "
                             f"{self.users(name) + (['the graph outputs'] if name in self._outputs else [])}")
        self._dag.remove_node(name)
        del self._nodes[name]
        del self._rank[name]
        self._order_cache = None
        if name in self._inputs:
            self._inputs.remove(name)
        self._touch()

    def copy(self) -> Graph:
        """An independent graph: nodes, attributes and parameter dicts are copied; arrays are shared (read-only)."""
        other = Graph(self.name)
        other._dag = self._dag.copy()
        other._nodes = {n: Node(v.name, v.op, v.inputs, dict(v.attrs), dict(v.params), v.type)
                        for n, v in self._nodes.items()}
        other._rank = dict(self._rank)
        other._serial = itertools.count(max(self._rank.values(), default=-1) + 1)
        other._inputs, other._outputs = list(self._inputs), list(self._outputs)
        other._name_counts = Counter(self._name_counts)
        return other

    # --- invariants --------------------------------------------------------------------------------------
    def lint(self) -> None:
        """Check the invariants every pass must keep; raise GraphError listing every violation."""
        problems = []
        if not nx.is_directed_acyclic_graph(self._dag):
            problems.append(f"cycle: {self._describe_cycle()}")
        if not self._outputs:
            problems.append("the graph has no outputs")
        for name in self._outputs:
            if name not in self._nodes:
                problems.append(f"output {name!r} is not a value of the graph")
        for name, node in self._nodes.items():
            if node.name != name:
                problems.append(f"node stored as {name!r} is named {node.name!r}")
            missing = [i for i in node.inputs if i not in self._nodes]
            if missing:
                problems.append(f"{node.label()} reads undefined values {missing}")
                continue
            if set(self._dag.predecessors(name)) != set(node.inputs):
                problems.append(f"{node.label()}: edges do not match its inputs")
            if node.op == INPUT:
                continue
            try:
                self._checked_params(node)
                inferred = self._infer(node)
            except CnnGraphError as error:
                problems.append(str(error))
                continue
            if inferred != node.type:
                problems.append(f"{node.label()}: stored type {node.type} differs from inferred {inferred}")
        if problems:
            raise GraphError(f"graph {self.name!r} is invalid:\n  " + "\n  ".join(problems))

    # --- helpers -----------------------------------------------------------------------------------------
    def _value_name(self, value) -> str:
        if isinstance(value, Value):
            if value.graph is not self:
                raise GraphError(f"value {value.name!r} belongs to graph {value.graph.name!r}, not {self.name!r}")
            return value.name
        if isinstance(value, str):
            if value not in self._nodes:
                raise GraphError(f"graph {self.name!r} has no value named {value!r}")
            return value
        raise GraphError(f"expected a value of graph {self.name!r}, got {type(value).__name__}")

    def _claim(self, name: str | None, prefix: str = "input") -> str:
        if name is None:
            while True:
                self._name_counts[prefix] += 1
                name = f"{prefix}{self._name_counts[prefix]}"
                if name not in self._nodes:
                    return name
        if not isinstance(name, str) or not name:
            raise GraphError(f"a node name must be a non-empty string, got {name!r}")
        if name in self._nodes:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}")
        return name

    def _release(self, node_name: str, requested: str | None) -> None:
        """Undo the automatic name a failed add() took, so the next layer gets it."""
        if requested is None:
            prefix = node_name.rstrip("0123456789")
            self._name_counts[prefix] -= 1

    def _insert(self, node: Node) -> None:
        self._nodes[node.name] = node
        self._rank[node.name] = next(self._serial)
        self._dag.add_node(node.name)
        self._order_cache = None
        for source in node.inputs:
            self._dag.add_edge(source, node.name)
        self._touch()

    def _checked_params(self, node: Node) -> dict:
        expected = node.layer.param_shapes(node.attrs)
        extra = set(node.params) - set(expected)
        if extra:
            raise ShapeError(f"{node.label()}: unexpected parameters {sorted(extra)}")
        missing = set(expected) - set(node.params)
        if missing:
            raise ShapeError(f"{node.label()}: missing parameters {sorted(missing)}")
        return {k: check_param(node.label(), k, node.params[k], shape) for k, shape in expected.items()}

    def _infer(self, node: Node) -> TensorType:
        layer = node.layer
        layer.check_arity(len(node.inputs), node.name)
        try:
            return layer.infer(node.attrs, self.operands(node))
        except ShapeError as error:
            raise ShapeError(f"{node.label()}: {error}") from None

    def _describe_cycle(self) -> str:
        try:
            return " -> ".join(edge[0] for edge in nx.find_cycle(self._dag))
        except nx.NetworkXNoCycle:
            return "none"

    def _touch(self) -> None:
        self.version += 1

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self._nodes) - len(self._inputs)} layers, "
                f"inputs={self._inputs}, outputs={self._outputs})")

    def param_count(self) -> int:
        """Learnable parameters, counted as PyTorch does (BatchNorm's running statistics are buffers)."""
        return sum(int(np.prod(array.shape)) for node in self.layers() for name, array in node.params.items()
                   if name not in node.layer.buffers)

    def macs(self) -> int:
        """Multiply-accumulates per sample over all layers."""
        return sum(n.layer.macs(n.attrs, self.operands(n), n.type) for n in self.layers())
