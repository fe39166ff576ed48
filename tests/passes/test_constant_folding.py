"""constant_folding: values computed from constants only become constants, up to a size cap."""
from __future__ import annotations

import numpy as np
from pass_helpers import assert_equivalent, refusals

import cnngraph as cg


def test_constant_folding_folds_small_values_and_refuses_large_ones(monkeypatch):
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 4, 4))
    a = graph.apply(cg.Constant(np.full((3, 1, 1), 2.0)), name="a")
    b = graph.apply(cg.Constant(np.arange(3.0).reshape(3, 1, 1)), name="b")
    scale = graph.apply(cg.Mul(), a, b, name="scale")
    graph.output(graph.apply(cg.Mul(), x, scale, name="y"))
    optimized = cg.optimize(graph, level=1)
    assert optimized.node("scale").op == "Constant"
    np.testing.assert_array_equal(optimized.node("scale").params["value"].reshape(-1), [0, 2, 4])
    assert_equivalent(graph, optimized)
    from cnngraph.passes import constant_folding
    monkeypatch.setattr(constant_folding, "MAX_ELEMENTS", 2)
    refused = cg.optimize(graph, level=1)
    assert refused.node("scale").op == "Mul"
    assert "fold_constant: scale (Mul) not rewritten: its value has 3 elements" in refusals(refused)


def test_a_constant_read_twice_folds_once():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    c = graph.apply(cg.Constant(np.arange(3.0)), name="c")
    graph.output(graph.apply(cg.Mul(), x, graph.apply(cg.Add(), c, c, name="twice"), name="y"))
    optimized = cg.optimize(graph, level=1)
    np.testing.assert_array_equal(optimized.node("twice").params["value"], [0, 2, 4])
    assert_equivalent(graph, optimized)
