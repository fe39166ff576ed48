"""What a Graph holds: frozen nodes, and the handles on their values that building a graph returns.

A Node cannot change: its attributes and parameters are read-only mappings and its arrays read-only float32
(cnngraph.readonly), so nodes are shared between a graph and its copies, and a graph changes a node only by
storing a new one through its editing methods, which bump Graph.version.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .layer import Layer, lookup
from .readonly import ReadOnlyDict, readonly_array
from .shapes import TensorType, format_shape

if TYPE_CHECKING:
    from .graph import Graph

INPUT = "Input"


class _GraphInput(Layer):
    """What a graph input is as an op: no computation, every trait false (not registered: not a layer)."""


@dataclass(frozen=True, eq=False)
class Node:
    """One layer application, immutable: ``attrs`` and ``params`` are read-only mappings and the parameter
    arrays read-only float32, so nodes and arrays are shared between graphs (copies, optimized graphs) safely.
    A graph changes a node by storing a new one (``Graph.replace``, ``Graph.set_params`` ...). Equality is
    identity."""
    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Mapping = field(default_factory=ReadOnlyDict)
    params: Mapping[str, np.ndarray] = field(default_factory=ReadOnlyDict)
    type: TensorType | None = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.attrs, ReadOnlyDict):        # a ReadOnlyDict is frozen all the way down already
            object.__setattr__(self, "attrs", ReadOnlyDict(self.attrs))
        object.__setattr__(self, "params", ReadOnlyDict({k: readonly_array(v) for k, v in self.params.items()}))

    def __deepcopy__(self, memo) -> Node:
        return self                        # immutable: a deep copy may share it (and keeps its arrays read-only)

    @property
    def shape(self) -> tuple:
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
