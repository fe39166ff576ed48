"""remove_identity: Identity and Dropout removed, a graph output keeps its node."""
from __future__ import annotations

from pass_helpers import assert_equivalent, chain, named_ops, refusals

import cnngraph as cg


def test_identity_and_dropout_are_removed_but_an_output_keeps_its_name():
    graph = chain(cg.Identity(), cg.Conv2d(3, 2, 1), cg.Dropout(0.3), cg.ReLU(), cg.Identity(),
                  names=["id1", "conv", "drop", "relu", "out"])
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("conv", "Conv2d"), ("relu", "ReLU"), ("out", "Identity")]
    assert refusals(optimized) == ["remove_identity: out (Identity) not rewritten: it is a graph output"]
    assert_equivalent(graph, optimized)


def test_an_identity_read_twice_and_by_an_output_elsewhere():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    i = graph.apply(cg.Identity(), x, name="i")
    graph.output(graph.apply(cg.Add(), i, i, name="sum"), graph.apply(cg.ReLU(), i, name="r"))
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("sum", "Add"), ("r", "ReLU")]
    assert optimized.node("sum").inputs == ("x", "x")
    assert_equivalent(graph, optimized)
