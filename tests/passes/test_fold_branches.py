"""fold_branches: parallel branches of one input summed into one conv (RepVGG), with every attribute the fold
reads drawn: dilation, stride, groups, padding (asymmetric), bias, identity and BatchNorm branches, shared
weights, a branch read elsewhere or a graph output, fused activations."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, named_ops, ops, random_bn, refusals

import cnngraph as cg


def summed(*branches, channels=3, size=7, names=None):
    """x -> Add(branch(x) for each branch; None is x itself)."""
    graph = cg.Graph("g")
    x = graph.input("x", (None, channels, size, size))
    values = [x if b is None else graph.apply(b, x, name=names[i] if names else None) for i, b in enumerate(branches)]
    graph.output(graph.apply(cg.Add(), *values, name="sum"))
    return graph


def repvgg_block(rng, channels=4, identity=True):
    graph = cg.Graph("repvgg")
    x = graph.input("x", (None, channels, 7, 7))
    three = graph.apply(random_bn(channels, rng), graph.apply(cg.Conv2d(channels, channels, 3, padding=1, bias=False), x))
    one = graph.apply(random_bn(channels, rng), graph.apply(cg.Conv2d(channels, channels, 1, bias=False), x))
    branches = [three, one] + ([graph.apply(random_bn(channels, rng), x)] if identity else [])
    graph.output(graph.apply(cg.ReLU(), graph.apply(cg.Add(), *branches, name="sum"), name="relu"))
    return graph


@pytest.mark.parametrize("identity", [True, False])
def test_repvgg_branches_fold_into_one_conv(identity):
    graph = repvgg_block(np.random.default_rng(7), identity=identity)
    optimized = cg.optimize(graph, verify=True)
    assert named_ops(optimized) == [("relu", "Conv2d")]
    node = optimized.node("relu")
    assert node.attrs["kernel_size"] == (3, 3) and node.attrs["activation"]["op"] == "ReLU"
    assert optimized.macs() < graph.macs() and optimized.param_count() < graph.param_count()
    assert_equivalent(graph, optimized)


def test_dilated_branches_are_embedded_at_tap_offsets_not_pixel_offsets():
    """The issue's reproducer: 1×1 and 3×3 'same' convolutions, both dilation 2, folded into a wrong kernel
    (the 1×1 placed 2 taps in instead of 2 pixels = 1 tap): relative error 0.57."""
    graph = cg.Graph("t")
    x = graph.input("x", (None, 1, 6, 6))
    a = graph.apply(cg.Conv2d(1, 2, 1, dilation=2, bias=False), x)
    b = graph.apply(cg.Conv2d(1, 2, 3, padding="same", dilation=2, bias=False), x)
    graph.output(graph.apply(cg.Add(), a, b))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"] and optimized.layers()[0].attrs["dilation"] == (2, 2)
    assert_equivalent(graph, optimized)


def test_a_branch_between_the_taps_of_a_dilated_kernel_is_refused():
    """Asymmetric pads put the 1×1 one pixel from the 3×3's first tap: half a tap at dilation 2."""
    graph = summed(cg.Conv2d(3, 3, 3, padding=(1, 1, 3, 3), dilation=2), cg.Conv2d(3, 3, 1))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "Conv2d", "Add"]
    assert any("not a whole number of its taps (dilation 2)" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_the_input_itself_folds_into_a_dilated_conv():
    """x is a 1×1 kernel: dilation means nothing for it."""
    graph = summed(cg.Conv2d(3, 3, 3, padding="same", dilation=(2, 3)), None)
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("sum", "Conv2d")]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("branches,why", [
    ((cg.Conv2d(3, 3, 3, padding=1), cg.Conv2d(3, 3, 2, padding=(0, 0, 1, 1))), None),    # asymmetric pads that fit
    ((cg.Conv2d(4, 4, 3, padding=1), cg.Conv2d(4, 4, 1, groups=4, bias=False)), None),    # depthwise, one bias
    ((cg.Conv2d(3, 3, 3, stride=2, padding=1), cg.Conv2d(3, 3, 1, stride=2)), None),      # a common stride
    ((cg.Conv2d(4, 4, 3, padding=1, groups=2), cg.Conv2d(4, 4, 1, groups=4)), "MACs would not fall"),  # dense costs more
    ((cg.Conv2d(3, 3, (1, 3), padding=(0, 1)), cg.Conv2d(3, 3, (3, 1), padding=(1, 0))), "does not sit inside"),
])
def test_branches_with_other_attributes(branches, why):
    channels = branches[0].attrs["in_channels"]
    graph = summed(*branches, channels=channels, size=8)
    optimized = cg.optimize(graph, level=3)
    assert len(optimized.layers()) == (1 if why is None else 3)
    if why:
        assert any(why in r for r in refusals(optimized)), refusals(optimized)
    assert_equivalent(graph, optimized)


def test_branches_that_do_not_line_up_are_not_folded():
    graph = summed(cg.Conv2d(3, 3, 3, padding=1), cg.Conv2d(3, 3, 3, padding=(2, 0, 0, 2)), names=["a", "b"])
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "Conv2d", "Add"]
    assert any("does not sit inside" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_branches_with_different_strides_or_dilations_are_not_folded():
    graph = summed(cg.Conv2d(3, 3, 3, padding=2, dilation=2), cg.Conv2d(3, 3, 3, padding=1))
    optimized = cg.optimize(graph)
    assert len(optimized.layers()) == 3
    assert any("differ in dilation" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_only_the_branches_of_one_input_fold_and_other_summands_stay():
    graph = cg.Graph("g")
    x, y = graph.input("x", (None, 3, 6, 6)), graph.input("y", (None, 3, 6, 6))
    a = graph.apply(cg.Conv2d(3, 3, 3, padding=1), x, name="a")
    b = graph.apply(cg.Conv2d(3, 3, 1), x, name="b")
    graph.output(graph.apply(cg.Add(), a, y, b, name="sum"))
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("a", "Conv2d"), ("sum", "Add")]
    assert optimized.node("sum").inputs == ("a", "y")
    assert_equivalent(graph, optimized)


def test_a_branch_read_elsewhere_an_output_or_with_a_fused_activation_stays():
    relu = {"op": "ReLU", "attrs": {}}
    for case in ("output", "reader", "activation"):
        graph = cg.Graph("g")
        x = graph.input("x", (None, 3, 6, 6))
        three, one = cg.Conv2d(3, 3, 3, padding=1), cg.Conv2d(3, 3, 1)
        a = graph.apply(three, x, name="a")
        b = graph.add("Conv2d", [x], dict(one.attrs, **({"activation": relu} if case == "activation" else {})),
                      one.params, name="b")
        total = graph.apply(cg.Add(), a, b, name="sum")
        extra = {"output": [b], "reader": [graph.apply(cg.Sigmoid(), b, name="s")], "activation": []}[case]
        graph.output(total, *extra)
        optimized = cg.optimize(graph)
        assert ops(optimized).count("Conv2d") == 2, case
        assert_equivalent(graph, optimized)


def test_shared_weights_in_two_branches_are_left_alone():
    conv, twin = cg.Conv2d(3, 3, 3, padding=1), cg.Conv2d(3, 3, 3, padding=1)
    twin.weight = conv.weight                                   # one array, two biases: not a common subexpression
    original = conv.weight.copy()
    graph = summed(conv, twin, names=["a", "b"])
    assert graph.node("a").params["weight"] is graph.node("b").params["weight"]
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"]
    np.testing.assert_array_equal(graph.node("a").params["weight"], original)
    np.testing.assert_allclose(optimized.node("sum").params["weight"], 2 * original, rtol=1e-6)
    assert_equivalent(graph, optimized)
