"""fold_conv_linear: a linear chain (Conv ...) -> Flatten -> Linear collapses into Flatten -> Linear when the
cost model allows; never across a non-linearity, a second reader or a graph output; the batch stays symbolic."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, ops, refusals, rewrites

import cnngraph as cg
from cnngraph.passes import fold_conv_linear


def conv_flatten_linear(*middle, shape=(None, 1, 6, 6), channels=8, out=4):
    width = channels * shape[2] * shape[3]
    return chain(cg.Conv2d(shape[1], channels, 3, padding=1), *middle, cg.Flatten(), cg.Linear(width, out),
                 shape=shape, names=None)


def test_conv_flatten_linear_collapses_into_one_linear():
    graph = chain(cg.Conv2d(1, 8, 3, padding=1), cg.BatchNorm2d(8), cg.Conv2d(8, 8, 3, padding=1, bias=False),
                  cg.Flatten(), cg.Linear(288, 4), shape=(None, 1, 6, 6), names=["c1", "bn", "c2", "flat", "fc"])
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["Flatten", "Linear"]
    flatten, linear = optimized.layers()
    assert (flatten.inputs, flatten.attrs["start_dim"], linear.name) == (("x",), 1, "fc")
    assert (linear.attrs["in_features"], linear.attrs["out_features"]) == (36, 4)
    assert optimized.type_of("fc").shape == ("N", 4)
    assert any("collapse_conv_linear" in r for r in rewrites(optimized))
    assert_equivalent(graph, optimized)


def test_toeplitz_matrix_is_the_convolution():
    """T·x + t from the identity basis equals the chain on any x."""
    graph = chain(cg.Conv2d(2, 3, 3, stride=2, padding=1), cg.AvgPool2d(2), shape=(None, 2, 6, 6))
    nodes = graph.layers()
    matrix, offset = fold_conv_linear.toeplitz(nodes, graph.type_of("x"))
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6)).astype(np.float32)
    expected = cg.run(graph, x).reshape(3, -1)
    np.testing.assert_allclose(x.reshape(3, -1) @ matrix.T + offset, expected, rtol=1e-5, atol=1e-5)


def test_the_seed_network_without_activations_is_one_linear():
    """The issue's PyTorch model: Conv -> Conv -> Flatten -> Linear -> Linear, nothing non-linear: at level 2 it
    ends as one Linear (it ended as one Conv and one Gemm)."""
    graph = chain(cg.Conv2d(2, 8, 3, padding=1), cg.Conv2d(8, 8, 3, padding=1), cg.Flatten(), cg.Linear(200, 32),
                  cg.Linear(32, 10), shape=(None, 2, 5, 5))
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["Flatten", "Linear"]
    assert optimized.layers()[1].attrs["in_features"] == 50
    assert_equivalent(graph, optimized)
    back = cg.load_onnx(cg.export_onnx(optimized))
    assert [n.op_type for n in cg.export_onnx(optimized).graph.node] == ["Flatten", "Gemm"]
    x = np.random.default_rng(1).normal(size=(3, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(cg.run(back, x), cg.run(graph, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("middle", [cg.ReLU(), cg.MaxPool2d(2), cg.Sigmoid()], ids=["relu", "maxpool", "sigmoid"])
def test_not_across_a_non_linearity(middle):
    graph = chain(cg.Conv2d(1, 8, 3, padding=1), middle, cg.Flatten(),
                  cg.Linear(8 * (3 if isinstance(middle, cg.MaxPool2d) else 6) ** 2, 4), shape=(None, 1, 6, 6))
    optimized = cg.optimize(graph, level=3)
    assert "Conv2d" in ops(optimized)
    assert not any("collapse_conv_linear" in r for r in rewrites(optimized))
    assert_equivalent(graph, optimized)


def test_not_across_a_second_reader_or_a_graph_output():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 1, 6, 6))
    conv = graph.apply(cg.Conv2d(1, 8, 3, padding=1), x, name="conv")
    flat = graph.apply(cg.Flatten(), conv, name="flat")
    graph.output(graph.apply(cg.Linear(288, 4), flat, name="fc"), conv)       # the conv's output is read twice
    optimized = cg.optimize(graph, level=3)
    assert sorted(ops(optimized)) == ["Conv2d", "Flatten", "Linear"]
    assert_equivalent(graph, optimized)

    graph = cg.Graph("g")
    x = graph.input("x", (None, 1, 6, 6))
    flat = graph.apply(cg.Flatten(), graph.apply(cg.Conv2d(1, 8, 3, padding=1), x), name="flat")
    graph.output(graph.apply(cg.Linear(288, 4), flat, name="fc"), flat)       # the Flatten is a graph output
    optimized = cg.optimize(graph, level=3)
    assert sorted(ops(optimized)) == ["Conv2d", "Flatten", "Linear"]
    assert any("flat is a graph output" in r for r in refusals(optimized))


def test_cost_decides_by_level():
    """3→1 conv on 3×8×8 then Linear(64, 10): one Linear(192, 10) has fewer MACs (1920 < 1728 + 640) but more
    parameters (1930 > 28 + 650): level 3 collapses, level 2 refuses and says why."""
    graph = chain(cg.Conv2d(3, 1, 3, padding=1), cg.Flatten(), cg.Linear(64, 10), shape=(None, 3, 8, 8))
    level2 = cg.optimize(graph, level=2)
    assert ops(level2) == ["Conv2d", "Flatten", "Linear"]
    assert any("collapse_conv_linear" in r and "parameters" in r for r in refusals(level2))
    level3 = cg.optimize(graph, level=3)
    assert ops(level3) == ["Flatten", "Linear"]
    assert_equivalent(graph, level3)


def test_a_chain_too_costly_to_expand_is_refused(monkeypatch):
    monkeypatch.setattr(fold_conv_linear, "MAX_BASIS_MACS", 10)
    graph = conv_flatten_linear()
    optimized = cg.optimize(graph, level=2)
    assert "Conv2d" in ops(optimized)
    assert any("Toeplitz" in r for r in refusals(optimized))


def test_a_bias_free_chain_stays_bias_free():
    graph = chain(cg.Conv2d(1, 4, 3, padding=1, bias=False), cg.Flatten(), cg.Linear(144, 2, bias=False),
                  shape=(None, 1, 6, 6))
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["Flatten", "Linear"] and "bias" not in optimized.layers()[1].params
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("batch", ["batch", 1, 2])
def test_a_chain_that_names_its_batch_collapses_at_any_batch(batch):
    """A Reshape in the chain writes the batch dim itself (a named symbol, or a static size): the basis runs
    through the chain at that batch (in chunks of a static one)."""
    graph = chain(cg.Conv2d(1, 8, 3, padding=1), cg.Reshape((batch, 2, 4, 36)), cg.Transpose((0, 2, 1, 3)),
                  cg.Flatten(), cg.Linear(288, 4), shape=(batch, 1, 6, 6))
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["Flatten", "Linear"]
    assert optimized.type_of(optimized.outputs[0]).shape == (batch, 4)
    assert_equivalent(graph, optimized, batches=(3,) if batch == "batch" else (batch,))
