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


# --- fold_branches: parallel Conv1d / Conv3d branches of one input ---------------------------------------------
def branches_graph(dims, branches, channels=3, identity=False):
    graph = cg.Graph("g")
    x = graph.input("x", (None, channels) + (7, 5, 4)[:dims])
    values = [graph.apply(b if b.op.startswith("BatchNorm") else randomized(b, i), x)
              for i, b in enumerate(branches)] + ([x] if identity else [])
    graph.output(graph.apply(cg.Add(), *values, name="sum"))
    return graph


@pytest.mark.parametrize("dims", [1, 3])
def test_repvgg_branches_of_any_rank_fold(dims):
    conv = cg.Conv1d if dims == 1 else cg.Conv3d
    bn = (cg.BatchNorm1d if dims == 1 else cg.BatchNorm3d)(3)
    bn.weight, bn.running_var = np.full(3, 0.5), np.full(3, 2.0)
    graph = branches_graph(dims, [conv(3, 3, 3, padding=1), conv(3, 3, 1, groups=3), bn], identity=True)
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == [conv.__name__] and optimized.node("sum").attrs["kernel_size"] == (3,) * dims
    assert_equivalent(graph, optimized)


def test_dilated_nd_branches_sit_at_tap_offsets_or_are_refused():
    graph = branches_graph(1, [cg.Conv1d(3, 2, 1, dilation=2), cg.Conv1d(3, 2, 3, padding="same", dilation=2)])
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["Conv1d"] and optimized.node("sum").attrs["dilation"] == (2,)
    assert_equivalent(graph, optimized)
    between = branches_graph(1, [cg.Conv1d(3, 2, 1, padding=(1, 0)), cg.Conv1d(3, 2, 3, padding=(2, 3), dilation=2)])
    kept = cg.optimize(between, level=2)
    assert ops(kept) == ["Conv1d", "Conv1d", "Add"] and any("whole number of its taps" in r for r in refusals(kept))
    assert_equivalent(between, kept)
