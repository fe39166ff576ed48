"""What every pass test uses: build small graphs, run them before and after, compare with the tolerance and
with the naive reference implementation."""
from __future__ import annotations

from conftest import as_tuple, assert_equivalent, inputs_for  # noqa: F401  (shared with every test module)

import cnngraph as cg


def ops(graph):
    return [n.op for n in graph.layers()]


def named_ops(graph):
    return [(n.name, n.op) for n in graph.layers()]


def chain(*layers, shape=(None, 3, 8, 8), names=None):
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    for index, layer in enumerate(layers):
        x = graph.apply(layer, x, name=names[index] if names else None)
    graph.output(x)
    return graph


def random_bn(channels, rng):
    bn = cg.BatchNorm2d(channels)
    bn.weight, bn.bias = rng.uniform(0.5, 1.5, channels), rng.normal(size=channels)
    bn.running_mean, bn.running_var = rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)
    return bn


def refusals(graph) -> list[str]:
    """The optimized graph's refusals as text."""
    return [str(r) for r in graph.report.refusals]


def rewrites(graph) -> list[str]:
    return [str(r) for r in graph.report.rewrites]
