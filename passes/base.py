"""What a pass is: a function from a Graph to a changed Graph, with a record of what it did and did not do.

A pass edits the graph it is given (the pass manager hands it a copy) and returns a PassResult. Its rewrite
rules follow match -> check -> rewrite; a check that says no returns the reason, which the result records as
a refusal so that a report can say why a fusion did not happen.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnngraph.graph import Graph, Node


@dataclass
class PassResult:
    graph: Graph
    rewrites: list[str] = field(default_factory=list)      # "conv1 + relu1 -> relu1 (Conv2d+ReLU)"
    refusals: list[str] = field(default_factory=list)      # "fc1 -> fc2: fc1 has 2 readers"

    @property
    def changed(self) -> bool:
        return bool(self.rewrites)


@dataclass(frozen=True)
class Pass:
    """A named pass: ``run(graph) -> PassResult``; ``level`` is the lowest optimization level that runs it."""
    name: str
    level: int
    run: Callable[[Graph], PassResult]
    doc: str = ""


def sole_reader(graph: Graph, value: str) -> tuple[Node | None, str | None]:
    """The one node reading ``value``, or None and why not: a fold must not cross a value that another node
    or the graph's outputs also read (onnxruntime #4110)."""
    if value in graph.outputs:
        return None, f"{value} is a graph output"
    count = graph.use_count(value)
    if count != 1:
        return None, f"{value} has {count} readers"
    return graph.node(graph.users(value)[0]), None


def constant_value(graph: Graph, value: str) -> np.ndarray | None:
    """The array of a Constant node, else None."""
    node = graph.node(value)
    return node.params["value"] if node.op == "Constant" else None


def describe(node: Node) -> str:
    return f"{node.name} ({node.op})"
