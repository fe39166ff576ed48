"""merge_reshapes: consecutive reshapes become one; a reshape that changes nothing becomes an Identity."""
from __future__ import annotations

from pass_helpers import assert_equivalent, chain, named_ops, ops

import cnngraph as cg


def test_consecutive_reshapes_merge():
    graph = chain(cg.Flatten(2, 3), cg.Reshape((0, -1)), cg.Linear(48, 2), shape=(None, 3, 4, 4),
                  names=["f", "r", "fc"])
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("r", "Flatten"), ("fc", "Linear")]
    assert optimized.node("r").attrs == {"start_dim": 1, "end_dim": 3}
    assert_equivalent(graph, optimized)


def test_a_reshape_that_changes_nothing_is_dropped():
    graph = chain(cg.Flatten(), cg.Reshape((0, 12)), cg.ReLU(), shape=(None, 12), names=["f", "r", "relu"])
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["ReLU"]
    assert_equivalent(graph, optimized)


def test_a_reshape_read_twice_is_not_merged_into_one_reader():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 3, 4))
    first = graph.apply(cg.Flatten(2, 3), x, name="first")
    graph.output(graph.apply(cg.Flatten(), first, name="a"), graph.apply(cg.Reshape((0, 2, 3, 4)), first, name="b"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Flatten", "Flatten", "Reshape"]
    assert any("first has 2 readers" in str(r) for r in optimized.report.refusals)
    assert_equivalent(graph, optimized)
