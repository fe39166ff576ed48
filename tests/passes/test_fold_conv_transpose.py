"""fold_conv_transpose: a pointwise convolution folded into the transposed convolution next to it, with groups
on either side, stride, padding, output_padding and dilation on the transposed one; refused when the
convolution is not pointwise, when a pointwise one before has a bias (not constant at the border), across a
second reader, a graph output or an activation between; outputs unchanged."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, ops, refusals

import cnngraph as cg


def randomized(layer, seed):
    rng = np.random.default_rng(seed)
    layer.weight = rng.normal(size=layer.weight.shape)
    if layer.attrs["bias"]:
        layer.bias = rng.normal(size=layer.bias.shape)
    return layer


FOLD = [   # (first, second, input shape)
    (cg.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), cg.Conv2d(6, 2, 1),
     (None, 4, 3, 3)),
    (cg.ConvTranspose1d(2, 4, 2, stride=3, dilation=2, bias=False), cg.Conv1d(4, 4, 1, groups=2), (None, 2, 4)),
    (cg.ConvTranspose3d(2, 2, 2, stride=2), cg.Conv3d(2, 1, 1, bias=False), (None, 2, 2, 2, 2)),
    (cg.Conv2d(2, 6, 1, bias=False), cg.ConvTranspose2d(6, 2, 3, stride=2, groups=2), (None, 2, 3, 3)),
    (cg.Conv1d(2, 4, 1, groups=2, bias=False), cg.ConvTranspose1d(4, 3, 3, stride=2, padding=(1, 0)), (None, 2, 5)),
]


@pytest.mark.parametrize("index", range(len(FOLD)))
def test_pointwise_folds_into_the_transposed_convolution(index):
    first, second, shape = FOLD[index]
    graph = chain(randomized(first, index), randomized(second, 10 + index), shape=shape)
    optimized = cg.optimize(graph, level=3)
    transposed = first if first.op.startswith("ConvTranspose") else second
    assert ops(optimized) == [transposed.op]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("first, second, why", [
    (cg.ConvTranspose1d(2, 3, 2, stride=2), cg.Conv1d(3, 2, 3), "not a pointwise convolution"),
    (cg.ConvTranspose1d(2, 3, 2, stride=2), cg.Conv1d(3, 2, 1, stride=2), "not a pointwise convolution"),
    (cg.Conv1d(3, 2, 1), cg.ConvTranspose1d(2, 3, 2, stride=2), "has a bias"),
    (cg.Conv1d(3, 2, 1, padding=1, bias=False), cg.ConvTranspose1d(2, 3, 2), "not a pointwise convolution"),
])
def test_inexact_pairs_are_refused(first, second, why):
    graph = chain(randomized(first, 1), randomized(second, 2), shape=(None, first.attrs["in_channels"], 5))
    kept = cg.optimize(graph, level=3)
    assert len(ops(kept)) == 2 and any(why in r for r in refusals(kept))
    assert_equivalent(graph, kept)


def test_a_fold_that_grows_the_model_is_refused_by_the_cost_model():
    graph = chain(randomized(cg.Conv1d(6, 2, 1, bias=False), 7), randomized(cg.ConvTranspose1d(2, 4, 3), 8),
                  shape=(None, 6, 5))
    kept = cg.optimize(graph, level=3)
    assert ops(kept) == ["Conv1d", "ConvTranspose1d"] and any("MACs would not fall" in r for r in refusals(kept))


@pytest.mark.parametrize("stop", ["second reader", "graph output", "activation"])
def test_fold_stops(stop):
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 4))
    first = graph.apply(randomized(cg.ConvTranspose1d(2, 3, 2, stride=2), 3), x, name="deconv")
    if stop == "activation":
        first = graph.apply(cg.ReLU(), first, name="relu")
    graph.output(graph.apply(randomized(cg.Conv1d(3, 2, 1), 4), first, name="conv"))
    if stop == "second reader":
        graph.output(graph.apply(cg.Sigmoid(), first, name="other"))
    elif stop == "graph output":
        graph.output(first)
    kept = cg.optimize(graph, level=3)
    assert {"ConvTranspose1d", "Conv1d"} <= set(ops(kept))
    assert_equivalent(graph, kept)


def test_an_activation_on_the_second_layer_stays_on_the_result():
    graph = chain(randomized(cg.ConvTranspose2d(2, 4, 2, stride=2), 5), randomized(cg.Conv2d(4, 3, 1), 6), cg.ReLU(),
                  shape=(None, 2, 3, 3))
    optimized = cg.optimize(graph, level=2)
    node, = optimized.layers()
    assert node.op == "ConvTranspose2d" and node.attrs["activation"]["op"] == "ReLU"
    assert_equivalent(graph, optimized)
