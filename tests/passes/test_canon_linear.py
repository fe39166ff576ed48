"""canon_linear: MatMul by a constant matrix -> Linear; Linear + constant bias (out,) -> Linear with bias."""
from __future__ import annotations

import numpy as np
from pass_helpers import assert_equivalent, named_ops, ops, refusals

import cnngraph as cg


def const(graph, name, array):
    array = np.asarray(array, np.float32)
    return graph.add("Constant", [], dict(shape=array.shape), dict(value=array), name=name)


def matmul_graph(shape=(None, 6), bias=(4,), second_reader=False, product_out=False, rng=None):
    rng = rng or np.random.default_rng(0)
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    w = const(graph, "w", rng.normal(size=(shape[-1], 4)))
    product = graph.add("MatMul", [x, w], name="mm")
    y = graph.add("Add", [product, const(graph, "b", rng.normal(size=bias))], dict(broadcast=True), name="y")
    graph.output(y, *([graph.add("ReLU", [product], name="other")] if second_reader else []),
                 *([product] if product_out else []))
    return graph


def test_matmul_and_bias_become_one_linear():
    graph = matmul_graph()
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("y", "Linear")]
    linear = optimized.node("y")
    assert linear.attrs == dict(in_features=6, out_features=4, bias=True)
    np.testing.assert_array_equal(linear.params["weight"], graph.node("w").params["value"].T)
    np.testing.assert_array_equal(linear.params["bias"], graph.node("b").params["value"])
    assert [r.rule for r in optimized.report.rewrites][:2] == ["matmul_to_linear", "bias_into_linear"]
    assert_equivalent(graph, optimized)


def test_matmul_on_the_last_axis_of_a_rank_3_value():
    graph = matmul_graph(shape=(None, 5, 6))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Linear"]
    assert_equivalent(graph, optimized)


def test_a_product_read_elsewhere_keeps_its_add():
    graph = matmul_graph(second_reader=True)
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("mm", "Linear"), ("b", "Constant"), ("y", "Add"), ("other", "ReLU")]
    assert "bias_into_linear: mm (Linear) + y (Add) not rewritten: mm has 2 readers" in refusals(optimized)
    assert_equivalent(graph, optimized)


def test_a_product_that_is_a_graph_output_keeps_its_add():
    graph = matmul_graph(product_out=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Linear", "Constant", "Add"]
    assert any("mm is a graph output" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_bias_that_is_not_one_value_per_output_stays_an_add():
    graph = matmul_graph(bias=(1, 4))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Linear", "Constant", "Add"]
    assert any("the constant has shape [1, 4], not (4,)" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_product_of_two_computed_values_stays_a_matmul():
    graph = cg.Graph("g")
    x, w = graph.input("x", (None, 3, 6)), graph.input("w", (6, 4))
    graph.output(graph.add("MatMul", [x, w], name="mm"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["MatMul"]
    assert "matmul_to_linear: mm (MatMul) not rewritten: its second operand w is not a constant" in refusals(optimized)
    assert_equivalent(graph, optimized)


def test_a_computed_addend_is_no_bias():
    graph = cg.Graph("g")
    x, b = graph.input("x", (None, 6)), graph.input("b", (None, 4))
    product = graph.add("MatMul", [x, const(graph, "w", np.ones((6, 4)))], name="mm")
    graph.output(graph.add("Add", [product, b], name="y"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Linear", "Add"]
    assert any("b is not a constant" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_constant_tensor_of_rank_3_is_no_weight():
    graph = cg.Graph("g")
    x = graph.input("x", (2, 3, 6))
    graph.output(graph.add("MatMul", [x, const(graph, "w", np.ones((2, 6, 4)))], name="mm"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Constant", "MatMul"]
    assert any("not a matrix" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_linear_with_a_fused_activation_takes_no_bias_after_it():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 6))
    fc = cg.Linear(6, 4, bias=False)
    h = graph.add("Linear", [x], dict(fc.attrs, activation={"op": "ReLU", "attrs": {}}), fc.params, name="fc")
    graph.output(graph.add("Add", [h, const(graph, "b", np.ones(4))], dict(broadcast=True), name="y"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Linear", "Constant", "Add"]
    assert any("fc has a fused activation" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)
