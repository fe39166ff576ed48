"""fold_conv on Conv1d and Conv3d: two convolutions of the same rank in a row fold into one (strides, groups,
asymmetric pads of the first, dilation on one-tap axes); a padded or dilated second kernel, a second reader
and a non-linearity between stop it."""
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


FOLD = [
    (cg.Conv1d(3, 6, 3, stride=2, padding=(1, 2)), cg.Conv1d(6, 2, 2, stride=2), (None, 3, 13)),
    (cg.Conv1d(4, 6, 2, groups=2, bias=False), cg.Conv1d(6, 2, 1), (None, 4, 7)),
    (cg.Conv3d(2, 4, (2, 1, 3), stride=(1, 2, 1), padding=(1, 0, 0, 0, 1, 2)), cg.Conv3d(4, 2, (1, 2, 2)),
     (None, 2, 4, 7, 5)),
    (cg.Conv3d(2, 4, 2, dilation=(2, 1, 1)), cg.Conv3d(4, 2, (1, 2, 2), groups=2), (None, 2, 5, 4, 4)),
]


@pytest.mark.parametrize("index", range(len(FOLD)))
def test_same_rank_pairs_fold_exactly(index):
    first, second, shape = FOLD[index]
    graph = chain(randomized(first, index), randomized(second, index + 10), shape=shape)
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == [first.op]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("second, why", [(cg.Conv1d(4, 2, 3, padding=(0, 1)), "pads its input with zeros"),
                                         (cg.Conv1d(4, 2, 3, dilation=2), "a dilated kernel")])
def test_inexact_pairs_are_refused(second, why):
    graph = chain(randomized(cg.Conv1d(3, 4, 3), 1), randomized(second, 2), shape=(None, 3, 12), names=["c1", "c2"])
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv1d", "Conv1d"]
    assert any(why in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_nonlinearity_or_a_second_reader_stops_the_fold():
    graph = chain(cg.Conv3d(2, 3, 2), cg.Sigmoid(), cg.Conv3d(3, 2, 2), shape=(None, 2, 4, 4, 4))
    kept = cg.optimize(graph, level=3)                       # the Sigmoid is fused into the first conv
    assert ops(kept) == ["Conv3d", "Conv3d"] and kept.node(kept.layers()[0].name).attrs["activation"]
    assert_equivalent(graph, kept)
    graph = cg.Graph("g")
    first = graph.apply(cg.Conv1d(2, 3, 2), graph.input("x", (None, 2, 6)))
    graph.output(graph.apply(cg.Conv1d(3, 2, 2), first))
    graph.output(first)
    kept = cg.optimize(graph, level=3)
    assert ops(kept) == ["Conv1d", "Conv1d"]
    assert_equivalent(graph, kept)
