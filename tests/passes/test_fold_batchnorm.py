"""fold_batchnorm: BatchNorm (and per-channel constant Mul/Add) folded into the Conv2d/Linear next to it, with
every attribute the fold reads drawn: groups, bias, padding (asymmetric), dilation, stride, shared weights,
a second reader or graph output, a fused activation, the rank a Linear sees."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, named_ops, ops, random_bn, refusals

import cnngraph as cg


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 4])
def test_batchnorm_after_conv_folds_and_a_missing_bias_appears(bias, groups):
    rng = np.random.default_rng(groups)
    graph = chain(cg.Conv2d(4, 8, 3, padding=1, groups=groups, bias=bias), random_bn(8, rng), shape=(None, 4, 6, 6),
                  names=["conv", "bn"])
    optimized = cg.optimize(graph, level=2)
    assert named_ops(optimized) == [("bn", "Conv2d")]
    assert "bias" in optimized.node("bn").params
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("conv", [cg.Conv2d(4, 6, 3, stride=2, padding=(0, 1, 2, 0), dilation=2),
                                  cg.Conv2d(4, 4, 3, padding="same", dilation=(1, 2), groups=4)])
def test_batchnorm_after_a_strided_dilated_asymmetrically_padded_conv_folds(conv):
    graph = chain(conv, random_bn(conv.attrs["out_channels"], np.random.default_rng(9)), shape=(None, 4, 9, 9))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"]
    assert_equivalent(graph, optimized)


def test_batchnorm_after_linear_folds_on_2d_values_only():
    rng = np.random.default_rng(1)
    graph = chain(cg.Linear(5, 4), random_bn(4, rng), shape=(None, 5))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear"]
    assert_equivalent(graph, optimized)
    rank3 = chain(cg.Linear(5, 4), random_bn(3, rng), shape=(None, 3, 5))     # BatchNorm on axis 1, not the features
    kept = cg.optimize(rank3)
    assert ops(kept) == ["Linear", "BatchNorm2d"]
    assert any("Linear on a value of rank > 2" in r for r in refusals(kept))
    assert_equivalent(rank3, kept)


def test_shared_weight_with_two_batchnorms_is_not_corrupted():
    """TNN #808: two layers sharing one weight array feed different BatchNorms."""
    rng = np.random.default_rng(2)
    conv = cg.Conv2d(3, 4, 3)
    original = conv.weight.copy()
    graph = cg.Graph("g")
    x, y = graph.input("x", (None, 3, 6, 6)), graph.input("y", (None, 3, 6, 6))
    left = graph.apply(random_bn(4, rng), graph.apply(conv, x, name="c1"), name="bn1")
    right = graph.apply(random_bn(4, rng), graph.apply(conv, y, name="c2"), name="bn2")
    graph.output(graph.apply(cg.Add(), left, right, name="sum"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "Conv2d", "Add"]
    np.testing.assert_array_equal(conv.weight, original)
    np.testing.assert_array_equal(graph.node("c1").params["weight"], original)
    assert_equivalent(graph, optimized)


def test_batchnorm_is_not_folded_across_a_second_reader_or_an_output():
    rng = np.random.default_rng(3)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = graph.apply(cg.Conv2d(3, 4, 3), x, name="conv")
    graph.output(graph.apply(random_bn(4, rng), conv, name="bn"), conv)
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "BatchNorm2d"]
    assert any("conv is a graph output" in r for r in refusals(optimized))


def test_batchnorm_after_a_fused_activation_is_not_folded():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = cg.Conv2d(3, 4, 3)
    relu = graph.add("Conv2d", [x], dict(conv.attrs, activation={"op": "ReLU", "attrs": {}}), conv.params, name="conv")
    graph.output(graph.apply(random_bn(4, np.random.default_rng(4)), relu, name="bn"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "BatchNorm2d"]
    assert any("an activation is fused into the layer" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("conv", [cg.Conv2d(4, 6, 3, groups=2), cg.Conv2d(4, 6, 3, stride=2, dilation=2)])
def test_batchnorm_before_an_unpadded_conv_folds(conv):
    graph = chain(random_bn(4, np.random.default_rng(4)), conv, shape=(None, 4, 9, 9))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("padding", [1, (0, 0, 1, 0)])
def test_batchnorm_before_a_padded_conv_is_refused(padding):
    graph = chain(random_bn(4, np.random.default_rng(4)), cg.Conv2d(4, 6, 3, padding=padding), shape=(None, 4, 7, 7))
    kept = cg.optimize(graph)
    assert ops(kept) == ["BatchNorm2d", "Conv2d"]
    assert any("pads with zeros" in r for r in refusals(kept))
    assert_equivalent(graph, kept)


def test_batchnorm_before_a_linear_folds_on_2d_values():
    graph = chain(random_bn(5, np.random.default_rng(6)), cg.Linear(5, 3), shape=(None, 5))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear"]
    assert_equivalent(graph, optimized)


def test_per_channel_constant_mul_and_add_fold_like_batchnorm():
    """How several light-zoo models spell BatchNorm: Conv -> Mul(c) -> Add(d), constants per channel."""
    rng = np.random.default_rng(5)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    h = graph.apply(cg.Conv2d(3, 4, 3, bias=False), x, name="conv")
    h = graph.apply(cg.Mul(), h, graph.apply(cg.Constant(rng.uniform(0.5, 2, (4, 1, 1))), name="scale"), name="mul")
    h = graph.apply(cg.Add(broadcast=True), graph.apply(cg.Constant(rng.normal(size=(1, 4, 1, 1))), name="shift"), h,
                    name="add")
    graph.output(graph.apply(cg.Mul(), h, graph.apply(cg.Constant(rng.normal(size=(1, 1, 4))), name="row"), name="y"))
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("add", "Conv2d"), ("row", "Constant"), ("y", "Mul")]
    assert any("not per channel" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)
