"""fold_batchnorm on Conv1d, Conv3d and ConvTranspose1d/2d/3d: BatchNorm1d/3d (and BatchNorm2d) after them
folds, for a transposed convolution along weight axis 1 group by group (PITFALLS: ConvTranspose weights are
(in, out/groups, ...)); before a convolution only where it does not pad, never before a transposed one; a
second reader, a graph output and a fused activation stop the fold; the numbers never change."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, named_ops, ops, refusals

import cnngraph as cg

BN = {3: cg.BatchNorm1d, 4: cg.BatchNorm2d, 5: cg.BatchNorm3d}


def random_norm(channels, rank, rng):
    bn = BN[rank](channels)
    bn.weight, bn.bias = rng.uniform(0.5, 1.5, channels), rng.normal(size=channels)
    bn.running_mean, bn.running_var = rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)
    return bn


def randomized(layer, rng):
    layer.weight = rng.normal(size=layer.weight.shape)
    return layer


AFTER = [
    (lambda: cg.Conv1d(4, 6, 3, stride=2, padding=(1, 0), groups=2, bias=False), (None, 4, 9)),
    (lambda: cg.Conv3d(2, 4, 2, padding="same", dilation=(1, 2, 1)), (None, 2, 3, 4, 3)),
    (lambda: cg.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (None, 4, 5)),
    (lambda: cg.ConvTranspose2d(6, 4, (2, 3), stride=(2, 1), groups=2, bias=False), (None, 6, 3, 4)),
    (lambda: cg.ConvTranspose2d(4, 4, 3, stride=2, groups=4, dilation=2, output_padding=1), (None, 4, 3, 3)),
    (lambda: cg.ConvTranspose3d(2, 6, 2, stride=2, padding=(0, 1, 0, 0, 0, 1)), (None, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("index", range(len(AFTER)))
def test_batchnorm_after_folds(index):
    make, shape = AFTER[index]
    rng = np.random.default_rng(index)
    layer = randomized(make(), rng)
    graph = chain(layer, random_norm(layer.attrs["out_channels"], len(shape), rng), shape=shape,
                  names=["layer", "bn"])
    optimized = cg.optimize(graph, level=2)
    assert named_ops(optimized) == [("bn", layer.op)]
    assert "bias" in optimized.node("bn").params
    assert_equivalent(graph, optimized)


def test_transposed_fold_scales_the_output_axis_per_group():
    """By hand: groups 2, in 2, out 4 (2 per group); scale output channel o by o + 1."""
    layer = cg.ConvTranspose1d(2, 4, 1, groups=2, bias=False)
    layer.weight = np.ones((2, 2, 1))
    bn = cg.BatchNorm1d(4)
    bn.weight = np.arange(1.0, 5.0)
    bn.running_var = np.full(4, 1.0 - 1e-5)
    optimized = cg.optimize(chain(layer, bn, shape=(None, 2, 3)), level=2)
    node, = optimized.layers()
    np.testing.assert_allclose(node.params["weight"][:, :, 0], [[1, 2], [3, 4]], rtol=1e-6)


@pytest.mark.parametrize("dims", [1, 3])
def test_batchnorm_before_an_unpadded_conv_folds_and_not_before_a_padded_one(dims):
    rng = np.random.default_rng(dims)
    shape = (None, 4) + (5, 4, 3)[:dims]
    conv = cg.Conv1d if dims == 1 else cg.Conv3d
    graph = chain(random_norm(4, 2 + dims, rng), randomized(conv(4, 6, 2, groups=2), rng), shape=shape)
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == [conv.__name__]
    assert_equivalent(graph, optimized)
    padded = chain(random_norm(4, 2 + dims, rng), randomized(conv(4, 6, 2, padding=1), rng), shape=shape)
    kept = cg.optimize(padded, level=2)
    assert len(ops(kept)) == 2 and any("pads with zeros" in r for r in refusals(kept))
    assert_equivalent(padded, kept)


def test_batchnorm_before_a_transposed_conv_does_not_fold():
    rng = np.random.default_rng(5)
    graph = chain(random_norm(2, 4, rng), randomized(cg.ConvTranspose2d(2, 3, 2, stride=2), rng),
                  shape=(None, 2, 3, 3))
    kept = cg.optimize(graph, level=2)
    assert ops(kept) == ["BatchNorm2d", "ConvTranspose2d"]
    assert any("fewer taps" in r for r in refusals(kept))
    assert_equivalent(graph, kept)


@pytest.mark.parametrize("stop", ["second reader", "graph output", "activation"])
def test_fold_stops(stop):
    rng = np.random.default_rng(7)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 4))
    deconv = graph.apply(randomized(cg.ConvTranspose1d(2, 4, 3, stride=2), rng), x, name="deconv")
    if stop == "activation":           # fuse_activation puts the ReLU into the layer; the BN cannot pass it
        deconv = graph.apply(cg.ReLU(), deconv, name="relu")
    bn = graph.apply(random_norm(4, 3, rng), deconv, name="bn")
    graph.output(bn)
    if stop == "second reader":
        graph.output(graph.apply(cg.Add(), deconv, bn, name="sum"))
    elif stop == "graph output":
        graph.output(deconv)
    kept = cg.optimize(graph, level=2)
    assert "BatchNorm1d" in ops(kept)
    assert_equivalent(graph, kept)


@pytest.mark.parametrize("make, shape", [(lambda: cg.Conv1d(2, 3, 3, padding=1), (None, 2, 5)),
                                         (lambda: cg.Conv3d(2, 3, 2), (None, 2, 3, 3, 3)),
                                         (lambda: cg.ConvTranspose2d(2, 3, 3, stride=2, groups=1), (None, 2, 3, 3))])
def test_activation_fuses_into_nd_convolutions(make, shape):
    rng = np.random.default_rng(3)
    graph = chain(randomized(make(), rng), cg.ReLU(), shape=shape, names=["layer", "act"])
    optimized = cg.optimize(graph, level=2)
    (name, op), = named_ops(optimized)
    assert name == "act" and optimized.node("act").attrs["activation"]["op"] == "ReLU"
    assert_equivalent(graph, optimized)
    back = cg.load_onnx(cg.export_onnx(optimized))               # written as the standard pair
    assert ops(back) == [op, "ReLU"]
