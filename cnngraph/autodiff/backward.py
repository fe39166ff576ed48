"""Reverse-mode differentiation as a graph transformation: inference graph + loss -> one training graph.

The training graph is the forward graph (in training mode: BatchNorm on batch statistics, Dropout as a product
with a mask fed as an input), a loss node, and the backward computation, all in the IR: it can be linted,
drawn and run by the NumPy backend with its fast kernels. Built in three steps:
  1. forward: a copy of the graph; ``train`` swaps BatchNorm1d/2d/3d for BatchNorm2dTrain reading a BatchStats
     node (computed once a step; its gradient and the trainer's running-statistics update read it too) and
     Dropout for Mul by a mask input;
  2. the loss (CrossEntropyLoss or MSELoss against a "target" input) and its gradient, or, with
     ``loss=None``, one seed input ``<output>.grad`` per graph output (∂L/∂output given from outside);
  3. walking the forward nodes in reverse topological order, each op's rule (cnngraph/autodiff/registry.py,
     declared in the op's family module) adds the nodes computing the gradients of its inputs and parameters
     from ∂L/∂output; contributions to a value read several times are summed by an Add.
Nodes whose result no output needs are erased, so a rule may offer every gradient it can. What the backward
pass reads of the forward pass is exactly what the rules name, and the NumPy plan frees every other
activation after its last forward reader: only the activations the backward pass needs stay alive.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..errors import GraphError
from ..graph import Graph
from ..node import INPUT, Node
from .registry import rule_for

LOSSES = ("cross_entropy", "mse")


@dataclass
class TrainingGraph:
    """A forward + loss + backward graph and where its results are."""
    graph: Graph
    loss: str | None                                  # output holding the mean loss (None: seeds fed instead)
    forward_outputs: list[str]                        # the forward graph's outputs (the logits)
    params: dict[tuple, str]                          # (node, param) -> output holding its gradient
    inputs: list[str | None]                          # per forward input: output holding its gradient, or None
    stats: dict[str, str] = field(default_factory=dict)     # BatchNorm node -> output of BatchStats (train)
    masks: dict[str, str] = field(default_factory=dict)     # Dropout node -> its mask input (train)
    dropout_p: dict[str, float] = field(default_factory=dict)  # Dropout node -> its drop probability (train)
    holders: dict[tuple, list] = field(default_factory=dict)  # (node, param) -> [(training node, param)]


class Builder:
    """What a gradient rule uses to add nodes to the training graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self._names: Counter = Counter()

    def add(self, node: Node, tag: str, op: str, inputs, params=None, **attrs) -> str:
        """Add ``op`` over ``inputs`` as part of ``node``'s gradient, named "<node>.d<tag>"; returns its value."""
        base = f"{node.name}.d{tag}"
        self._names[base] += 1
        name = base if self._names[base] == 1 else f"{base}.{self._names[base]}"
        while name in self.graph:
            self._names[base] += 1
            name = f"{base}.{self._names[base]}"
        return self.graph.add(op, inputs, attrs, params, name=name).name

    def shape(self, value: str) -> tuple:
        return self.graph.type_of(value).shape

    @staticmethod
    def activation_of(node: Node) -> dict:
        return {"op": node.op, "attrs": dict(node.attrs)}


def missing_rules(graph: Graph) -> list[str]:
    """Nodes whose op has no gradient rule, as "name (op)"."""
    return [n.label() for n in graph.layers() if rule_for(n.layer) is None and not n.layer.constant]


def build(graph: Graph, loss: str | None = "cross_entropy", train: bool = False,
          wrt_inputs: bool = True) -> TrainingGraph:
    """The training graph of ``graph`` (untouched) for ``loss``; see the module docstring."""
    missing = missing_rules(graph)
    if missing:
        raise GraphError(f"graph {graph.name!r}: no gradient rule for {', '.join(missing)}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; available: {', '.join(LOSSES)}")
    tg = graph.copy()
    tg.name = f"{graph.name}.training"
    result = TrainingGraph(tg, None, graph.outputs, {}, [])
    if train:
        _training_mode(graph, tg, result)
    grads: dict[str, list[str]] = defaultdict(list)
    if loss is None:
        for out in graph.outputs:
            grads[out].append(tg.input(f"{out}.grad", tg.type_of(out).shape).name)
    else:
        if len(graph.outputs) != 1:
            raise GraphError(f"graph {graph.name!r}: a loss needs one output, the graph has {graph.outputs}")
        result.loss = _add_loss(tg, graph.outputs[0], loss, grads)
    builder = Builder(tg)
    for node in reversed(graph.layers()):
        contributions = grads.pop(node.name, None)
        if not contributions:
            continue
        current = tg.node(node.name)
        dy = contributions[0] if len(contributions) == 1 else builder.add(current, "sum", "Add", contributions)
        for key, value in rule_for(current.layer)(builder, current, dy).items():
            if isinstance(key, int):
                grads[current.inputs[key]].append(value)
            elif key not in current.layer.buffers:
                result.params[(node.name, key)] = value
    for name in graph.inputs:
        contributions = grads.get(name) if wrt_inputs else None
        if not contributions:
            result.inputs.append(None)
            continue
        dx = contributions[0] if len(contributions) == 1 else builder.add(tg.node(name), "sum", "Add", contributions)
        result.inputs.append(dx)
    _set_outputs(tg, result)
    _prune(tg)
    _find_holders(graph, tg, result)
    return result


def _training_mode(graph: Graph, tg: Graph, result: TrainingGraph) -> None:
    for node in graph.layers():
        if getattr(node.layer, "trains_on_batch_statistics", False):
            stats = tg.add("BatchStats", [node.inputs[0]], name=f"{node.name}.batch_stats").name
            tg.replace(node.name, "BatchNorm2dTrain", [node.inputs[0], stats], node.attrs, node.params)
            result.stats[node.name] = stats
        elif node.op == "Dropout" and node.attrs["p"] > 0:
            mask = tg.input(f"{node.name}.mask", tg.type_of(node.inputs[0]).shape).name
            tg.replace(node.name, "Mul", [node.inputs[0], mask])
            result.masks[node.name] = mask
            result.dropout_p[node.name] = float(node.attrs["p"])


def _add_loss(tg: Graph, out: str, loss: str, grads) -> str:
    shape = tg.type_of(out).shape
    if loss == "cross_entropy":
        if len(shape) != 2:
            raise GraphError(f"cross-entropy reads logits (N, classes); output {out!r} has shape {shape}")
        target = tg.input("target", shape[:1]).name
        value = tg.add("CrossEntropyLoss", [out, target], name="loss").name
        grads[out].append(tg.add("CrossEntropyLossGrad", [out, target], name="loss.dlogits").name)
    else:
        target = tg.input("target", shape).name
        value = tg.add("MSELoss", [out, target], name="loss").name
        grads[out].append(tg.add("MSELossGrad", [out, target], name="loss.dprediction").name)
    return value


def _set_outputs(tg: Graph, result: TrainingGraph) -> None:
    """Loss, parameter gradients, input gradients and batch statistics become outputs (a value that already is
    one is output again through an Identity)."""
    def output(value: str) -> str:
        if value in tg.outputs:
            value = tg.add("Identity", [value], name=f"{value}.out").name
        tg.output(value)
        return value
    if result.loss is not None:
        output(result.loss)
    result.params = {key: output(value) for key, value in result.params.items()}
    result.inputs = [None if value is None else output(value) for value in result.inputs]
    result.stats = {key: output(value) for key, value in result.stats.items()}


def _prune(tg: Graph) -> None:
    """Erase the nodes no output needs (gradients a rule offered that nobody reads)."""
    for name in reversed(tg.topo_order()):
        node = tg.node(name)
        if node.op != INPUT and not tg.users(name) and name not in tg.outputs:
            tg.erase(name)


def _find_holders(graph: Graph, tg: Graph, result: TrainingGraph) -> None:
    """Every training node holding a forward parameter's array (shared by identity): what an update sets."""
    owner = {id(array): (node.name, key) for node in graph.layers() for key, array in node.params.items()}
    for node in tg.layers():
        for key, array in node.params.items():
            if id(array) in owner:
                result.holders.setdefault(owner[id(array)], []).append((node.name, key))
