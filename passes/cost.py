"""The cost model: what a fold may do at each optimization level, judged on each op's own cost.

A node's cost is its MACs per sample (the op's ``Layer.macs``) and its learnable parameters (the op's
``param_shapes`` without its buffers, counted as ``Graph.param_count`` counts them). A fold replaces some
nodes by others; it is allowed
    at level 2 when neither MACs nor parameters grow;
    at level 3 also when MACs fall, whatever the parameters do (a folded kernel can be larger than the two
    it replaces, yet cheaper to run).
Levels 0 and 1 fold nothing that needs a cost.
"""
from __future__ import annotations

from dataclasses import dataclass

from cnngraph.layer import Operand, lookup
from cnngraph.shapes import TensorType


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def param_count(op: str, attrs: dict) -> int:
    layer = lookup(op)
    count = 0
    for name, shape in layer.param_shapes(attrs).items():
        if name not in layer.buffers:
            size = 1
            for dim in shape:
                size *= int(dim)
            count += size
    return count


def of_nodes(graph, nodes) -> Cost:
    """What the nodes cost now."""
    total = Cost(0, 0)
    for node in nodes:
        total += Cost(node.layer.macs(node.attrs, graph.operands(node), node.type), param_count(node.op, node.attrs))
    return total


def of_new(graph, op: str, inputs, attrs: dict, output: TensorType) -> Cost:
    """What a node that does not exist yet would cost: ``op`` with ``attrs`` over the values ``inputs``,
    producing ``output``."""
    operands = [Operand(name, graph.type_of(name)) for name in inputs]
    return Cost(lookup(op).macs(attrs, operands, output), param_count(op, attrs))


def allows(level: int, before: Cost, after: Cost) -> str | None:
    """None when a fold from ``before`` to ``after`` may happen at ``level``, else why not."""
    if level < 2:
        return "folds start at level 2"
    if after.macs <= before.macs and after.params <= before.params:
        return None
    if level >= 3:
        return None if after.macs < before.macs else f"MACs would not fall ({before.macs} -> {after.macs})"
    return (f"it would grow MACs {before.macs} -> {after.macs} or parameters {before.params} -> {after.params} "
            f"(level 3 folds when MACs fall)")
