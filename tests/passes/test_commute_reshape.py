"""commute_reshape: a reshape that keeps the feature axis moves from between two Linears to after them."""
from __future__ import annotations

import pytest
from pass_helpers import assert_equivalent, chain

import cnngraph as cg


@pytest.mark.parametrize("between", [cg.Flatten(1, 2), cg.Reshape((0, 6, 5))])
def test_linear_layers_fold_through_a_reshape_that_keeps_the_feature_axis(between):
    graph = chain(cg.Linear(4, 5), between, cg.Linear(5, 3), shape=(None, 2, 3, 4), names=["fc1", "r", "fc2"])
    optimized = cg.optimize(graph, verify=True)
    assert [n.op for n in optimized.layers()] == ["Linear", "Flatten"]      # the moved Reshape merges axes
    assert optimized.node("fc2").op == "Flatten"
    record = next(r for r in optimized.report.rewrites if r.rule == "commute_reshape")
    assert [n.name for n in record.before] == ["r", "fc2"] and [n.name for n in record.after] == ["fc2/linear", "fc2"]
    assert_equivalent(graph, optimized)


def test_a_reshape_that_touches_the_feature_axis_stops_the_linear_fold():
    graph = chain(cg.Linear(4, 6), cg.Reshape((0, 9, 2)), cg.Linear(2, 3), shape=(None, 3, 4))
    optimized = cg.optimize(graph)
    assert [n.op for n in optimized.layers()].count("Linear") == 2
    assert_equivalent(graph, optimized)


def test_a_reshape_read_twice_stays_where_it_is():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 3, 4))
    h = graph.apply(cg.Flatten(1, 2), graph.apply(cg.Linear(4, 5), x, name="fc1"), name="r")
    graph.output(graph.apply(cg.Linear(5, 3), h, name="fc2"), h)
    optimized = cg.optimize(graph)
    assert [n.op for n in optimized.layers()] == ["Linear", "Flatten", "Linear"]
    assert_equivalent(graph, optimized)


def test_an_activation_fused_into_the_second_linear_moves_with_it():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 3, 4))
    first, second = cg.Linear(4, 5), cg.Linear(5, 3)
    h = graph.apply(cg.Flatten(1, 2), graph.apply(first, x, name="fc1"), name="r")
    graph.output(graph.add("Linear", [h], dict(second.attrs, activation={"op": "Tanh", "attrs": {}}), second.params,
                           name="fc2"))
    optimized = cg.optimize(graph)
    assert [n.op for n in optimized.layers()] == ["Linear", "Flatten"]
    assert optimized.layers()[0].attrs["activation"]["op"] == "Tanh"
    assert_equivalent(graph, optimized)
