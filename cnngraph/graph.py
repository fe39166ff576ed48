"""The IR: a graph of layer nodes, each producing one value named after the node.

A networkx DiGraph stores the dependency edges (and gives us topological order and cycle checks), but an
edge cannot carry input order and collapses ``x + x``, so each node keeps its ordered tuple of inputs and
the edges are derived from it. Callers use Graph methods only; the DiGraph stays private.

The IR cannot go stale: a Node is frozen (its attributes and parameters are read-only mappings, its arrays
read-only), so every change goes through the few editing methods below (add, replace, set_inputs,
replace_all_uses_with, erase, set_params), each of which swaps in new Node objects and bumps
``Graph.version``, the key on which backends cache what they compiled. Copies share nodes and arrays safely.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

import networkx as nx
import numpy as np

from .errors import CnnGraphError, GraphError, ShapeError
from .layer import Layer, Operand, check_param, lookup
from .node import INPUT, Node, Value
from .readonly import ReadOnlyDict
from .shapes import TensorType, normalize_shape


class Graph:
    """A CNN as a DAG of layer nodes with named inputs and outputs; see the module docstring.

    Build it with ``input``, ``apply`` (a layer object) or ``add`` (an op name) and ``output``; read it with
    ``nodes``, ``node``, ``users``, ``topo_order``; edit it with ``replace``, ``set_inputs``,
    ``replace_all_uses_with``, ``erase`` and ``set_params``. ``version`` grows with every change.
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self._dag = nx.DiGraph()
        self._nodes: dict[str, Node] = {}
        self._rank: dict[str, float] = {}        # a topological numbering: every edge goes to a higher rank
        self._serial = itertools.count()
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._name_counts: Counter = Counter()
        self._order_cache: list[str] | None = None
        self._version = 0

    @property
    def version(self) -> int:
        """Grows with every change of the graph: backends key what they compiled on (graph, version)."""
        return self._version

    # --- building ----------------------------------------------------------------------------------------
    def input(self, name: str, shape: Iterable[int | str | None], dtype: str = "float32") -> Value:
        """Add a graph input; ``None`` or a name in ``shape`` is a symbolic dimension (any batch size)."""
        if dtype != "float32":
            raise GraphError(f"input {name!r}: only float32 inputs are supported, got {dtype}")
        node = Node(self._check_new_name(name), INPUT, type=TensorType(normalize_shape(shape, what=f"input {name!r}")))
        self._insert(node)
        self._inputs.append(node.name)
        return Value(self, node.name)

    def apply(self, layer: Layer, *values: Value | str, name: str | None = None) -> Value:
        """Apply a layer (or a Sequential, inlined layer by layer) to values of this graph."""
        if hasattr(layer, "apply_to"):
            return layer.apply_to(self, *values)
        if not isinstance(layer, Layer):
            raise GraphError(f"apply() takes a layer, got {type(layer).__name__}")
        return self.add(layer.op, values, layer.attrs, layer.params, name=name)

    def add(self, op: str, inputs: Iterable[Value | str], attrs: Mapping | None = None,
            params: Mapping[str, np.ndarray] | None = None, name: str | None = None) -> Value:
        """Add a node by op name; its type is inferred now, and a misfit raises naming the node and shapes.
        Parameter arrays are stored read-only (a writable array is copied, see ``set_params``)."""
        prefix = lookup(op).prefix
        names = tuple(self._value_name(v) for v in inputs)
        node_name, count = self._next_name(prefix) if name is None else (self._check_new_name(name), None)
        node = self._make_node(node_name, op, names, attrs, params)
        if count is not None:                       # taken only now: a refused layer leaves the counter as it was
            self._name_counts[prefix] = count
        self._insert(node)
        return Value(self, node.name)

    def output(self, *values: Value | str) -> None:
        """Mark values as graph outputs, in order."""
        names = [self._value_name(value) for value in values]
        for index, name in enumerate(names):
            if name in self._outputs or name in names[:index]:
                raise GraphError(f"{name!r} is already an output of graph {self.name!r}")
        self._outputs.extend(names)
        self._touch()

    # --- reading -----------------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        """Names of the graph inputs, in order (a new list)."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        """Names of the graph outputs, in order (a new list)."""
        return list(self._outputs)

    def node(self, name: Value | str) -> Node:
        """The node producing a value (a read-only snapshot: after an edit, ask again)."""
        name = name.name if isinstance(name, Value) else name
        try:
            return self._nodes[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no value named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> list[Node]:
        """All nodes, inputs included, in a stable topological order."""
        return [self._nodes[n] for n in self.topo_order()]

    def layers(self) -> list[Node]:
        """All nodes except the graph inputs, in topological order."""
        return [n for n in self.nodes if n.op != INPUT]

    def topo_order(self) -> list[str]:
        """Node names in a stable topological order (insertion order where the edges allow)."""
        if self._order_cache is None:                # ranks follow the edges: sorting by rank is topological
            self._order_cache = sorted(self._nodes, key=self._rank.__getitem__)
        return list(self._order_cache)

    def users(self, name: Value | str) -> list[str]:
        """Nodes that read the value, each once, in topological order."""
        name = self._value_name(name)
        return sorted(self._dag.successors(name), key=self._rank.__getitem__)

    def use_count(self, name: Value | str) -> int:
        """How many times the value is read: by nodes (``x + x`` counts twice) and as a graph output."""
        name = self._value_name(name)
        reads = sum(self._nodes[u].inputs.count(name) for u in self._dag.successors(name))
        return reads + self._outputs.count(name)

    def type_of(self, name: Value | str) -> TensorType:
        """The inferred type (shape) of a value."""
        return self.node(name).type

    def operands(self, node: Node) -> list[Operand]:
        """What shape inference sees of the node's inputs."""
        return [Operand(i, self._nodes[i].type) for i in node.inputs]

    # --- editing (passes): every change goes through these and bumps the version ----------------------------
    def set_params(self, name: Value | str, **arrays: np.ndarray) -> None:
        """Set some parameters of a node: ``graph.set_params("conv1", weight=w, bias=b)``. Each array must
        have the shape the op expects (Conv2d weight (out, in/groups, kh, kw), Linear weight (out, in) ...);
        it is stored as a read-only float32 copy (kept as is when it already is one). Parameters not named
        keep their arrays. A wrong name or shape raises and changes nothing."""
        node = self.node(name)
        if node.op == INPUT:
            raise GraphError(f"{node.label()} is a graph input: it has no parameters")
        params = self._checked_params(node.label(), node.layer, node.attrs, dict(node.params, **arrays))
        self._nodes[node.name] = replace(node, params=params)
        self._touch()

    def set_inputs(self, name: Value | str, inputs: Iterable[Value | str]) -> None:
        """Rewire a node's inputs and re-infer the types downstream; a cycle or a misfit changes nothing."""
        name = self._value_name(name)
        self._rewire({name: tuple(self._value_name(v) for v in inputs)})

    def replace_all_uses_with(self, old: Value | str, new: Value | str) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new`` instead: all of them or none."""
        old, new = self._value_name(old), self._value_name(new)
        if old == new:
            return
        self._rewire({user: tuple(new if i == old else i for i in self._nodes[user].inputs)
                      for user in self.users(old)})
        self._outputs = [new if o == old else o for o in self._outputs]
        self._touch()

    def replace(self, name: Value | str, op: str, inputs: Iterable[Value | str], attrs: Mapping | None = None,
                params: Mapping[str, np.ndarray] | None = None) -> None:
        """Redefine node ``name`` (same name, same readers) as ``op`` over ``inputs``: how a pass swaps a chain
        for one node. The new definition must produce the same type; otherwise nothing changes."""
        name = self._value_name(name)
        inputs = tuple(self._value_name(v) for v in inputs)
        self._check_acyclic({name: inputs})
        old = self._nodes[name]
        new = self._make_node(name, op, inputs, attrs, params)
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
        old_nodes = {}
        try:
            self._set_edges(new_inputs)
            position = self._rank
            pending = [(position[n], n) for n in new_inputs]
            heapq.heapify(pending)
            while pending:                       # re-infer in topological order, only where types change
                _, name = heapq.heappop(pending)
                node = self._nodes[name]
                if name in old_nodes:
                    continue
                old_nodes[name] = node
                inferred = self._infer(node)
                if inferred != node.type:
                    self._nodes[name] = replace(node, type=inferred)
                    for user in self._dag.successors(name):
                        heapq.heappush(pending, (position[user], user))
        except CnnGraphError:
            self._nodes.update(old_nodes)        # the types as before (the rewired nodes still read the new inputs,
            self._set_edges(old_inputs)          # as the edges do), then the inputs and edges as before
            raise

    def _check_acyclic(self, new_inputs: dict[str, tuple]) -> None:
        """Reading a value of lower rank can never close a cycle; only the others need a path search, and it
        stays within the ranks between the two (ranks grow along every edge): a node a pass has just added
        is found to have no path back at once, however large the graph."""
        for name, inputs in new_inputs.items():
            for source in set(inputs):
                if source == name or (self._rank[source] > self._rank[name] and self._reaches(name, source)):
                    raise GraphError(f"{self._nodes[name].label()}: reading {source!r} would create a cycle")

    def _reaches(self, start: str, end: str) -> bool:
        """Whether a path leads from ``start`` to ``end``, searched backwards from ``end`` through the nodes
        ranked above ``start`` only (nx.has_path searches from both ends, and forwards from ``start`` it would
        walk everything downstream)."""
        floor, seen, pending = self._rank[start], {end}, [end]
        while pending:
            for source in self._dag.predecessors(pending.pop()):
                if source == start:
                    return True
                if source not in seen and self._rank[source] > floor:
                    seen.add(source)
                    pending.append(source)
        return False

    def _keep_ranks_topological(self, name: str, inputs) -> None:
        """After ``name`` started reading ``inputs``: if some of them rank above it but read only what ranks
        below it (a node a pass has just added to feed ``name``), move them just below ``name`` and leave every
        other rank alone; otherwise renumber the whole graph (stably). Ranks are floats, so one fits between
        any two until the halvings run out; the graph is then numbered anew, in the same order."""
        rank = self._rank
        late = sorted({s for s in inputs if rank[s] >= rank[name]}, key=rank.__getitem__)
        if not late:
            return
        self._order_cache = None
        floors = [max((rank[p] for p in self._dag.predecessors(s)), default=-1) for s in late]
        if max(floors) >= rank[name]:
            order = nx.lexicographical_topological_sort(self._dag, key=rank.__getitem__)
            self._number(list(order))
            return
        moved, above = {}, rank[name]
        for source, below in zip(reversed(late), reversed(floors)):
            middle = (max(below, math.ceil(above) - 1) + above) / 2
            if not below < middle < above:
                order = [node for node in sorted(self._nodes, key=rank.__getitem__) if node not in late]
                position = order.index(name)
                self._number(order[:position] + late + order[position:])
                return
            moved[source] = above = middle
        rank.update(moved)

    def _number(self, order: list[str]) -> None:
        self._rank = {node: index for index, node in enumerate(order)}
        self._serial = itertools.count(len(order))

    def _set_edges(self, new_inputs: dict[str, tuple]) -> None:
        for name, inputs in new_inputs.items():
            node = self._nodes[name]
            for source in set(node.inputs):
                self._dag.remove_edge(source, name)
            self._nodes[name] = replace(node, inputs=inputs)
            for source in inputs:
                self._dag.add_edge(source, name)
        for name, inputs in new_inputs.items():
            self._keep_ranks_topological(name, inputs)
        self._touch()

    def erase(self, name: Value | str) -> None:
        """Remove a node no one reads (neither a node nor the graph outputs)."""
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
        """An independent graph: edits of either do not reach the other. The immutable nodes and their
        read-only arrays are shared, so a copy costs no parameter memory."""
        other = Graph(self.name)
        other._dag = self._dag.copy()
        other._nodes = dict(self._nodes)
        other._rank = dict(self._rank)
        other._serial = itertools.count(math.floor(max(self._rank.values(), default=-1)) + 1)
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
                self._checked_params(node.label(), node.layer, node.attrs, node.params)
                writable = [k for k, v in node.params.items() if v.flags.writeable]
                if writable:
                    problems.append(f"{node.label()}: parameters {writable} are writable")
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

    def _next_name(self, prefix: str) -> tuple[str, int]:
        """The next free automatic name ("conv3") and the counter that gives it; the caller commits the counter
        only once the node is added, so a refused layer does not use up a name."""
        count = self._name_counts[prefix]
        while True:
            count += 1
            if f"{prefix}{count}" not in self._nodes:
                return f"{prefix}{count}", count

    def _check_new_name(self, name) -> str:
        if not isinstance(name, str) or not name:
            raise GraphError(f"a node name must be a non-empty string, got {name!r}")
        if name in self._nodes:
            raise GraphError(f"graph {self.name!r} already has a node named {name!r}")
        return name

    def _make_node(self, name: str, op: str, inputs: tuple, attrs: Mapping | None,
                   params: Mapping | None) -> Node:
        """A complete node: parameters checked (read-only copies), type inferred; a misfit raises naming it."""
        layer = lookup(op)
        label = f"{name} ({op})"
        try:
            attrs = ReadOnlyDict(attrs or {})
            checked = self._checked_params(label, layer, attrs, dict(params or {}))
            node = Node(name, op, inputs, attrs, checked)
            return replace(node, type=self._infer(node))
        except CnnGraphError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as error:   # unreadable attributes
            raise GraphError(f"{label}: invalid or missing attribute: {error!r}") from None

    def _insert(self, node: Node) -> None:
        self._nodes[node.name] = node
        self._rank[node.name] = next(self._serial)
        self._dag.add_node(node.name)
        self._order_cache = None
        for source in node.inputs:
            self._dag.add_edge(source, node.name)
        self._touch()

    @staticmethod
    def _checked_params(label: str, layer: type[Layer], attrs: Mapping, params: Mapping) -> dict:
        """Exactly the parameters the op expects, each of its shape, as read-only float32 arrays."""
        expected = layer.param_shapes(attrs)
        extra = set(params) - set(expected)
        if extra:
            raise ShapeError(f"{label}: unexpected parameters {sorted(extra)}")
        missing = set(expected) - set(params)
        if missing:
            raise ShapeError(f"{label}: missing parameters {sorted(missing)}")
        return {k: check_param(label, k, params[k], shape) for k, shape in expected.items()}

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
        self._version += 1

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self._nodes) - len(self._inputs)} layers, "
                f"inputs={self._inputs}, outputs={self._outputs})")

    def param_count(self) -> int:
        """Learnable parameters, counted as PyTorch does (BatchNorm's running statistics are buffers)."""
        return sum(array.size for node in self.layers() for name, array in node.params.items()
                   if name not in node.layer.buffers)

    def macs(self) -> int:
        """Multiply-accumulates per sample over all layers."""
        return sum(n.layer.macs(n.attrs, self.operands(n), n.type) for n in self.layers())
