"""cse: equal computations merged, unless the later one is a graph output."""
from __future__ import annotations

import numpy as np
from pass_helpers import assert_equivalent, ops

import cnngraph as cg


def test_common_subexpressions_merge_unless_an_output():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = cg.Conv2d(3, 4, 3)
    a, b = graph.apply(conv, x, name="a"), graph.apply(conv, x, name="b")
    graph.output(graph.apply(cg.Add(), graph.apply(cg.ReLU(), a, name="ra"), graph.apply(cg.ReLU(), b, name="rb"),
                             name="sum"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "ReLU", "Add"]
    assert optimized.node("sum").inputs == ("ra", "ra")
    assert_equivalent(graph, optimized)


def test_equal_shapes_with_other_numbers_or_attributes_stay_apart():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    first = cg.Conv2d(3, 4, 3)
    other = cg.Conv2d(3, 4, 3)
    weight = np.array(first.weight)
    weight.reshape(-1)[-1] += 1.0                        # differs past the bytes the key looks at
    other.weight = weight
    graph.output(graph.apply(first, x, name="a"), graph.apply(other, x, name="b"),
                 graph.apply(cg.Conv2d(3, 4, 3, padding=1), x, name="c"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d"] * 3
    assert optimized.report.refusals == []               # not twins at all


def test_a_twin_that_is_a_graph_output_is_kept():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    graph.output(graph.apply(cg.ReLU(), x, name="a"), graph.apply(cg.ReLU(), x, name="b"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["ReLU", "ReLU"]
    assert [str(r) for r in optimized.report.refusals] == ["cse: b (ReLU) + a (ReLU) not rewritten: b is a graph output"]
    np.testing.assert_array_equal(*cg.run(optimized, np.ones((1, 3), np.float32)))
