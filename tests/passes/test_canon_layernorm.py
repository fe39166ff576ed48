"""canon_layernorm: the exporters' GroupNorm form (Reshape, InstanceNorm, Reshape, Mul, Add) and LayerNorm
expression (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) become the layers; a second reader,
a graph output in the middle, a misfit constant or other axes keep the expression."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, ops, refusals

import cnngraph as cg


def const(graph, name, array):
    array = np.asarray(array, np.float32)
    return graph.add("Constant", [], dict(shape=array.shape), dict(value=array), name=name)


# --- GroupNorm -------------------------------------------------------------------------------------------------
def group_norm_graph(shape=(None, 6, 3, 4), groups=2, mul=(6, 1, 1), add=(6, 1, 1), affine_norm=False,
                     second_reader=None, output=None, seed=0):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    grouped = graph.add("Reshape", [x], dict(shape=(0, groups, -1)), name="grouped")
    norm_layer = cg.InstanceNorm1d(groups, eps=1e-3, affine=affine_norm)
    if affine_norm:
        norm_layer.weight = rng.uniform(0.5, 2, groups)
    norm = graph.apply(norm_layer, grouped, name="norm")
    y = graph.add("Reshape", [norm], dict(shape=(0, *shape[1:])), name="back")
    if mul is not None:
        y = graph.add("Mul", [y, const(graph, "gamma", rng.normal(size=mul))], name="scaled")
    if add is not None:
        y = graph.add("Add", [const(graph, "beta", rng.normal(size=add)), y], dict(broadcast=True), name="y")
    extra = [graph.add("ReLU", [second_reader], name="other")] if second_reader else []
    graph.output(y, *extra, *([output] if output else []))
    return graph


@pytest.mark.parametrize("mul,add", [((6, 1, 1), (6, 1, 1)), ((1, 6, 1, 1), None), (None, (6, 1, 1)), (None, None),
                                     ((), ())])
def test_group_norm_form_becomes_group_norm(mul, add):
    graph = group_norm_graph(mul=mul, add=add)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["GroupNorm"]
    node = optimized.node(graph.outputs[0])
    assert node.attrs == dict(num_groups=2, num_channels=6, eps=1e-3, affine=mul is not None or add is not None)
    assert_equivalent(graph, optimized)


def test_group_norm_of_a_rank_2_value():
    graph = group_norm_graph(shape=(None, 6), mul=(6,), add=(6,))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["GroupNorm"]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("case,reason", [
    (dict(second_reader="norm"), "norm has 2 readers"),
    (dict(output="grouped"), "grouped is a graph output"),
    (dict(mul=(6, 3, 1)), "is not per (6,)"),
])
def test_group_norm_form_is_kept(case, reason):
    graph = group_norm_graph(**case)
    optimized = cg.optimize(graph, level=1)
    assert "GroupNorm" not in ops(optimized) and "InstanceNorm1d" in ops(optimized)
    assert any(reason in r for r in refusals(optimized)), refusals(optimized)
    assert_equivalent(graph, optimized)


def test_an_affine_instance_norm_is_not_a_group_norm():
    graph = group_norm_graph(affine_norm=True)
    optimized = cg.optimize(graph, level=1)
    assert "GroupNorm" not in ops(optimized)
    assert_equivalent(graph, optimized)


def test_group_norm_keeps_a_mul_read_elsewhere():
    graph = group_norm_graph(second_reader="scaled")
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["GroupNorm", "Constant", "Add", "ReLU"]
    assert_equivalent(graph, optimized)


# --- LayerNorm -------------------------------------------------------------------------------------------------
needs_pow_sqrt = pytest.mark.skipif(not {"Pow", "Sqrt"} <= set(cg.REGISTRY),
                                    reason="the exporters' LayerNorm expression needs the Pow and Sqrt ops")


def layer_norm_graph(shape=(None, 3, 4, 5), axes=(-2, -1), square="pow", var_axes=None, exponent=2.0,
                     gamma=(4, 5), beta=(4, 5), second_reader=None, output=None, seed=0):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    mean = graph.add("ReduceMean", [x], dict(axes=axes, keepdims=True), name="mean")
    d = graph.add("Sub", [x, mean], name="d")
    sq = (graph.add("Pow", [d, const(graph, "two", exponent)], name="sq") if square == "pow"
          else graph.add("Mul", [d, d], name="sq"))
    var = graph.add("ReduceMean", [sq], dict(axes=var_axes or axes, keepdims=True), name="var")
    shifted = graph.add("Add", [var, const(graph, "eps", 1e-5)], dict(broadcast=True), name="shifted")
    y = graph.add("Div", [d, graph.add("Sqrt", [shifted], name="sd")], name="normed")
    if gamma is not None:
        y = graph.add("Mul", [y, const(graph, "gamma", rng.normal(size=gamma))], name="scaled")
    if beta is not None:
        y = graph.add("Add", [y, const(graph, "beta", rng.normal(size=beta))], dict(broadcast=True), name="y")
    extra = [graph.add("ReLU", [second_reader], name="other")] if second_reader else []
    graph.output(y, *extra, *([output] if output else []))
    return graph


@needs_pow_sqrt
@pytest.mark.parametrize("case", [dict(), dict(square="mul"), dict(axes=(3,), gamma=(5,), beta=(5,)),
                                  dict(gamma=None, beta=None), dict(beta=None), dict(axes=(1, 2, 3), gamma=(3, 1, 1),
                                                                                     beta=())])
def test_layer_norm_expression_becomes_layer_norm(case):
    graph = layer_norm_graph(**case)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["LayerNorm"]
    node = optimized.node(graph.outputs[0])
    assert node.attrs["eps"] == 1e-5 and node.attrs["elementwise_affine"] == (case.get("gamma", 1) is not None)
    assert_equivalent(graph, optimized)


@needs_pow_sqrt
@pytest.mark.parametrize("case,reason", [
    (dict(second_reader="d"), "d has another reader"),
    (dict(second_reader="var"), "var has another reader"),
    (dict(output="sd"), "sd is a graph output"),
    (dict(exponent=4.0), "squared deviation"),
    (dict(var_axes=(-1,)), "squared deviation"),
    (dict(axes=(1, 2)), "trailing"),
    (dict(gamma=(3, 1, 1)), "is not per (4, 5)"),
])
def test_layer_norm_expression_is_kept(case, reason):
    graph = layer_norm_graph(**case)
    optimized = cg.optimize(graph, level=1)
    assert "LayerNorm" not in ops(optimized)
    assert any(reason in r for r in refusals(optimized)), refusals(optimized)
    assert_equivalent(graph, optimized)


@needs_pow_sqrt
@pytest.mark.parametrize("opset", [13, 16])
def test_layer_norm_exported_before_opset_17_reads_back(opset):
    layer, shapes = cg.LayerNorm.example()
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", shapes[0])))
    back = cg.optimize(cg.load_onnx(cg.export_onnx(graph, opset=opset)), level=1)
    assert ops(back) == ["LayerNorm"]
    assert_equivalent(graph, back)
