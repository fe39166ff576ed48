"""fold_conv: two convolutions in a row (and, at level 3, average pooling next to a conv) folded into one, with
every attribute the fold reads drawn: stride, dilation, groups, padding (asymmetric), bias, ceil_mode,
count_include_pad, shared weights, a second reader or graph output, fused activations."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, named_ops, ops, refusals

import cnngraph as cg


def test_seed_m2_folds_to_the_size_of_m3_and_m1_stays():
    m2, m3 = cg.models.seed_m2(), cg.models.seed_m3()
    folded = cg.optimize(m2, verify=True)
    conv = [n for n in folded.layers() if n.op == "Conv2d"]
    assert len(conv) == 1 and conv[0].attrs["kernel_size"] == (5, 5)
    assert folded.param_count() == m3.param_count() and folded.macs() == m3.macs()
    assert_equivalent(m2, folded)
    m1 = cg.models.seed_m1()
    assert [n.op for n in cg.optimize(m1).layers()].count("Conv2d") == 2


@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_conv_after_any_conv_folds(stride):
    graph = chain(cg.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2), cg.Conv2d(8, 2, 1, stride=stride),
                  shape=(None, 3, 9, 9))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"]
    assert optimized.node(graph.outputs[0]).attrs["stride"] == (2 * stride, 2 * stride)
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("first,second", [
    (cg.Conv2d(3, 8, 3, stride=2, padding=(1, 0, 0, 2)), cg.Conv2d(8, 2, 3, stride=(1, 2))),   # strides, asymmetric pads
    (cg.Conv2d(4, 8, 3, groups=2, bias=False), cg.Conv2d(8, 2, 2, groups=2)),                  # groups, one bias
    (cg.Conv2d(3, 8, 2, dilation=(2, 1)), cg.Conv2d(8, 1, (1, 3), dilation=(3, 1))),         # dilation of 1-tap axes
])
def test_kxk_conv_pairs_fold_exactly(first, second):
    graph = chain(first, second, shape=(None, first.attrs["in_channels"], 11, 11))
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv2d"]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("first,second,why", [
    (cg.Conv2d(3, 4, 3), cg.Conv2d(4, 2, 3, padding=1), "c2 pads its input with zeros"),
    (cg.Conv2d(3, 4, 3), cg.Conv2d(4, 2, 3, padding=(0, 0, 0, 1)), "c2 pads its input with zeros"),
    (cg.Conv2d(3, 4, 3, dilation=2), cg.Conv2d(4, 2, 3), "a dilated kernel"),
    (cg.Conv2d(3, 4, 3), cg.Conv2d(4, 2, 3, dilation=2), "a dilated kernel"),
])
def test_conv_pairs_that_would_not_be_exact_are_refused(first, second, why):
    graph = chain(first, second, shape=(None, 3, 12, 12), names=["c1", "c2"])
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv2d", "Conv2d"]
    assert any(why in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_level_3_folds_when_macs_fall_although_parameters_grow():
    """A narrow 3×3 conv at full resolution, then a strided 1×1 conv widening it: the folded 3×3 conv runs at
    the low resolution only (fewer MACs) but holds a wide kernel (more parameters)."""
    graph = chain(cg.Conv2d(4, 2, 3, padding=1), cg.Conv2d(2, 8, 1, stride=2), shape=(None, 4, 8, 8),
                  names=["narrow", "widen"])
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "Conv2d"]
    folded = cg.optimize(graph, level=3)
    assert ops(folded) == ["Conv2d"]
    assert folded.macs() < graph.macs() and folded.param_count() > graph.param_count()
    assert_equivalent(graph, folded)


@pytest.mark.parametrize("between", [cg.ReLU(), cg.MaxPool2d(2), cg.Sigmoid()])
def test_a_nonlinearity_stops_the_fold(between):
    graph = chain(cg.Conv2d(3, 4, 3), between, cg.Conv2d(4, 2, 1))
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized).count("Conv2d") == 2
    assert_equivalent(graph, optimized)


def test_a_conv_read_twice_or_an_output_is_not_folded_into_the_next():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 8, 8))
    c1 = graph.apply(cg.Conv2d(3, 4, 3), x, name="c1")
    graph.output(graph.apply(cg.Conv2d(4, 2, 1), c1, name="c2"), c1)
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv2d", "Conv2d"]
    assert "fold_conv_pair: c1 (Conv2d) + c2 (Conv2d) not rewritten: c1 is a graph output" in refusals(optimized)


def test_a_shared_weight_is_left_alone():
    conv = cg.Conv2d(3, 3, 1)
    original = conv.weight.copy()
    graph = chain(conv, conv, cg.ReLU(), conv, names=["a", "b", "r", "c"])
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv2d", "Conv2d"]                       # a and b folded, c behind the ReLU
    for name in ("a", "b", "c"):
        np.testing.assert_array_equal(graph.node(name).params["weight"], original)
    np.testing.assert_array_equal(optimized.node("c").params["weight"], original)
    assert_equivalent(graph, optimized)


def test_fused_activations_stop_the_fold_on_the_first_and_stay_on_the_second():
    relu = {"op": "ReLU", "attrs": {}}
    for on_first in (True, False):
        graph = cg.Graph("g")
        x = graph.input("x", (None, 3, 8, 8))
        a, b = cg.Conv2d(3, 4, 3), cg.Conv2d(4, 2, 1)
        h = graph.add("Conv2d", [x], dict(a.attrs, **({"activation": relu} if on_first else {})), a.params, name="a")
        graph.output(graph.add("Conv2d", [h], dict(b.attrs, **({} if on_first else {"activation": relu})), b.params,
                               name="b"))
        optimized = cg.optimize(graph, level=3)
        assert len(optimized.layers()) == (2 if on_first else 1)
        if not on_first:
            assert optimized.node("b").attrs["activation"] == relu
        assert_equivalent(graph, optimized)


def test_average_pooling_folds_into_the_conv_before_it_at_level_3_only():
    graph = chain(cg.Conv2d(3, 8, 3, padding=1), cg.AvgPool2d(2), shape=(None, 3, 8, 8), names=["conv", "pool"])
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "AvgPool2d"]
    folded = cg.optimize(graph, level=3, verify=True)
    assert named_ops(folded) == [("pool", "Conv2d")]
    assert folded.node("pool").attrs["kernel_size"] == (4, 4) and folded.node("pool").attrs["stride"] == (2, 2)
    assert folded.macs() < graph.macs()
    assert_equivalent(graph, folded)


def test_a_padded_average_pool_that_counts_its_padding_folds_into_the_conv_after_it():
    graph = chain(cg.AvgPool2d(3, 1, 1), cg.Conv2d(8, 1, 1), shape=(None, 8, 6, 6))
    folded = cg.optimize(graph, level=3)
    assert ops(folded) == ["Conv2d"]
    assert_equivalent(graph, folded)


@pytest.mark.parametrize("pool", [cg.MaxPool2d(2), cg.AvgPool2d(3, 2, 1, count_include_pad=False),
                                  cg.AvgPool2d(2, ceil_mode=True), cg.AvgPool2d(3, 1, 1)])
def test_pools_that_are_not_convolutions_here_stop_the_fold(pool):
    """Max pooling is not linear; not counting the padding or ceil_mode make the border windows differ; a
    padded pool after the conv would pad the conv's output with zeros."""
    graph = chain(cg.Conv2d(3, 8, 3, padding=1), pool, shape=(None, 3, 7, 7))
    optimized = cg.optimize(graph, level=3)
    assert len(optimized.layers()) == 2
    assert_equivalent(graph, optimized)
