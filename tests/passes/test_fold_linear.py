"""fold_linear: chains of Linear layers folded, split where that costs least, never across a second reader,
a graph output or an activation."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, named_ops, ops, refusals

import cnngraph as cg


def test_linear_chain_folds_into_one_linear():
    graph = chain(cg.Linear(6, 5), cg.Linear(5, 4, bias=False), cg.Linear(4, 3), shape=(None, 6),
                  names=["fc1", "fc2", "fc3"])
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("fc3", "Linear")]
    fc = [graph.node(n).params for n in ("fc1", "fc2", "fc3")]
    weight = fc[2]["weight"].astype(np.float64) @ fc[1]["weight"] @ fc[0]["weight"]
    bias = fc[2]["weight"].astype(np.float64) @ (fc[1]["weight"] @ fc[0]["bias"]) + fc[2]["bias"]
    np.testing.assert_allclose(optimized.node("fc3").params["weight"], weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(optimized.node("fc3").params["bias"], bias, rtol=1e-5, atol=1e-6)
    assert [n.name for n in optimized.report.rewrites[0].before] == ["fc1", "fc2", "fc3"]
    assert_equivalent(graph, optimized)


def test_linears_fold_on_values_of_any_rank():
    graph = chain(cg.Linear(4, 6), cg.Linear(6, 2), shape=(None, 3, 5, 4))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear"]
    assert_equivalent(graph, optimized)


def test_bottleneck_is_not_folded_at_any_level():
    graph = chain(cg.Linear(256, 8), cg.Linear(8, 256), shape=(None, 256))
    for level in (2, 3):
        optimized = cg.optimize(graph, level=level)
        assert ops(optimized) == ["Linear", "Linear"]
        assert any("would" in r for r in refusals(optimized))


def test_level_3_folds_what_level_2_folds():
    """2→1→2 Linears: folding keeps the MACs (2+2 = 2·2) and cuts the parameters, so level 2 folds; level 3
    refused it ("MACs would not fall") although it promises everything level 2 does and more."""
    graph = chain(cg.Linear(2, 1), cg.Linear(1, 2), shape=(None, 2))
    for level in (2, 3):
        optimized = cg.optimize(graph, level=level)
        assert ops(optimized) == ["Linear"], level
        assert_equivalent(graph, optimized)


def test_chain_is_split_where_that_costs_least():
    """64→64→4→64: folding the first two (64·4 MACs instead of 64·64 + 64·4) pays; folding the 4→64
    expansion in would make a 64×64 matrix again."""
    graph = chain(cg.Linear(64, 64), cg.Linear(64, 4), cg.Linear(4, 64), shape=(None, 64), names=["a", "b", "c"])
    optimized = cg.optimize(graph)
    assert [(n.name, n.attrs["in_features"], n.attrs["out_features"]) for n in optimized.layers()] == \
        [("b", 64, 4), ("c", 4, 64)]
    assert_equivalent(graph, optimized)


def test_linear_layers_are_not_folded_across_an_output_or_a_second_reader():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 6))
    h = graph.apply(cg.Linear(6, 4), x, name="fc1")
    graph.output(graph.apply(cg.Linear(4, 2), h, name="fc2"), h)
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear", "Linear"]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_fused_activation_ends_the_chain_or_stays_on_the_result(where):
    graph = cg.Graph("g")
    x = graph.input("x", (None, 6))
    relu = {"op": "ReLU", "attrs": {}}
    a, b = cg.Linear(6, 4), cg.Linear(4, 3)
    h = graph.add("Linear", [x], dict(a.attrs, **({"activation": relu} if where == "first" else {})), a.params, name="a")
    graph.output(graph.add("Linear", [h], dict(b.attrs, **({"activation": relu} if where == "last" else {})), b.params,
                           name="b"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == (["Linear", "Linear"] if where == "first" else ["Linear"])
    if where == "last":
        assert optimized.node("b").attrs["activation"] == relu
    assert_equivalent(graph, optimized)
