"""Sequential: a chain of layers, as in PyTorch, turned into a Graph or inlined into one."""
from __future__ import annotations

from .graph import Graph, Value
from .layer import Layer


class Sequential:
    def __init__(self, *layers):
        for index, layer in enumerate(layers):
            if not isinstance(layer, (Layer, Sequential)):
                raise TypeError(f"Sequential: item {index} is a {type(layer).__name__}, not a layer")
        self.layers = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def apply_to(self, graph: Graph, value) -> Value:
        for layer in self.layers:
            value = graph.apply(layer, value)
        return value

    def to_graph(self, input_shape, name: str = "sequential", input_name: str = "input") -> Graph:
        graph = Graph(name)
        graph.output(self.apply_to(graph, graph.input(input_name, input_shape)))
        return graph

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}" for layer in self.layers)
        return f"Sequential({inner}\n)"
