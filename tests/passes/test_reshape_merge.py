"""merge_reshapes: consecutive reshapes become one; a reshape that changes nothing becomes an Identity."""
from __future__ import annotations

import pytest
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


def test_a_reshape_that_merges_consecutive_axes_is_a_flatten():
    """How ONNX writes Flatten(start, end), and what the importer maps one to one."""
    graph = chain(cg.Reshape((0, 12, 5)), cg.ReLU(), shape=(None, 3, 4, 5), names=["r", "relu"])
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("r", "Flatten"), ("relu", "ReLU")]
    assert optimized.node("r").attrs == {"start_dim": 1, "end_dim": 2}
    assert any(r.rule == "reshape_to_flatten" for r in optimized.report.rewrites)
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("shape,target", [((None, 12), (0, 3, 4)), ((None, 3, 4), (0, 4, 3)), ((None, 2, 3, 4), (0, 3, 8))])
def test_a_reshape_that_splits_or_regroups_axes_stays_a_reshape(shape, target):
    graph = chain(cg.Reshape(target), cg.ReLU(), shape=shape, names=["r", "relu"])
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Reshape", "ReLU"]
    assert_equivalent(graph, optimized)
