"""What a pass is: a function from a Graph to a changed Graph, with records of what it did and did not do.

A pass edits the graph it is given (the pass manager hands it a copy) and returns a PassResult holding its
records: a Rewrite for each rewrite, a Refusal (with the reason) for each match whose check said no. Whether
the graph changed is not the pass's to say: the manager reads it from the graph (passes/contract.py) and
holds the records to it. Most passes are sets of rules run by one driver (passes/rules.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnngraph.errors import CnnGraphError
from cnngraph.graph import Graph, Node

from .records import Refusal, Rewrite


class OptimizeError(CnnGraphError):
    """A pass broke the graph, changed its outputs, broke its contract, or the pipeline never settled."""


@dataclass
class PassResult:
    graph: Graph
    rewrites: list[Rewrite] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class Pass:
    """A named pass: ``run(graph, level) -> PassResult``; ``level`` is the lowest optimization level that runs
    it; ``rules`` lists the rules it is made of (empty for a whole-graph analysis or a pass of your own)."""
    name: str
    level: int
    run: Callable[[Graph, int], PassResult]
    doc: str = ""
    rules: tuple = ()


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
    """The array of a constant (an op whose output is its parameter "value"), else None."""
    node = graph.node(value)
    return node.params["value"] if node.layer.constant else None
