"""Sequential: a chain of layers, as in PyTorch, turned into a Graph or inlined into one."""
from __future__ import annotations

from collections.abc import Iterable

from .graph import Graph, Value
from .layer import Layer


class Sequential:
    """Layers (or nested Sequentials) applied one after the other, as ``torch.nn.Sequential``.

    Args:
        *layers: the layers, in order.

    ``to_graph(input_shape)`` builds a graph of one input and one output; ``graph.apply(seq, value)`` inlines
    the chain into an existing graph, layer by layer (each becomes a node of its own).
    """

    def __init__(self, *layers: Layer | Sequential):
        for index, layer in enumerate(layers):
            if not isinstance(layer, (Layer, Sequential)):
                raise TypeError(f"Sequential: item {index} is a {type(layer).__name__}, not a layer")
        self.layers: list[Layer | Sequential] = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer | Sequential:
        return self.layers[index]

    def apply_to(self, graph: Graph, value: Value | str) -> Value:
        """Apply the layers in order to ``value`` of ``graph``; the last one's value."""
        for layer in self.layers:
            value = graph.apply(layer, value)
        return value

    def to_graph(self, input_shape: Iterable[int | str | None], name: str = "sequential",
                 input_name: str = "input") -> Graph:
        """A new graph: one input of ``input_shape`` (``None`` for any batch size), the chain, one output."""
        graph = Graph(name)
        graph.output(self.apply_to(graph, graph.input(input_name, input_shape)))
        return graph

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}" for layer in self.layers)
        return f"Sequential({inner}\n)"
