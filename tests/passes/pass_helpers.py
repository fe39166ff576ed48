"""What every pass test uses: build small graphs, run them before and after, compare with the tolerance and
with the naive reference implementation."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import cnngraph as cg
from cnngraph.tolerance import assert_close

try:
    from reference import reference_run
except ImportError:                                          # tests/ is not on the path (pytest puts tests/passes)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from reference import reference_run


def inputs_for(graph, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([d if isinstance(d, int) else batch for d in graph.type_of(n).shape]).astype(np.float32)
            for n in graph.inputs]


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def assert_equivalent(before, after, batches=(1, 3)):
    """Same outputs in the NumPy backend, and the optimized graph agrees with the naive reference."""
    after.lint()
    assert after.outputs == before.outputs
    for batch in batches:
        arrays = inputs_for(before, batch, seed=batch)
        expected = as_tuple(cg.run(before, *arrays))
        for name, a, b, r in zip(before.outputs, as_tuple(cg.run(after, *arrays)), expected,
                                 as_tuple(reference_run(after, *arrays))):
            assert_close(a, b, f"output {name!r} at batch {batch}")
            assert_close(r, b, f"reference of the optimized graph, output {name!r}")


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
