"""Running a batch as one piece per core (backends/numpy_backend/batch_split.py).

Which graphs may be cut (every sample computed on its own), and that a cut run gives what the naive
reference and the uncut run give, whatever the batch, the number of pieces and the layers.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run
from threadpoolctl import threadpool_info

import cnngraph as cg
from cnngraph import models
from cnngraph.backends.numpy_backend import batch_split
from cnngraph.backends.numpy_backend.plan import Executor
from cnngraph.tolerance import assert_close


def graph_of(*layers, input_shape=(None, 4, 6, 6)):
    return cg.Sequential(*layers).to_graph(input_shape=input_shape)


def branchy_graph(rng):
    """Conv/BN/ReLU, a residual Add, Concat on channels, pooling, Flatten, Linear and Softmax; a
    Constant broadcast over the batch."""
    g = cg.Graph("branchy")
    x = g.input("x", (None, 4, 7, 7))
    conv = cg.Conv2d(4, 4, 3, padding=1)
    conv.weight = randn(rng, conv.weight.shape, 0.3)
    h = g.apply(cg.ReLU(), g.apply(cg.BatchNorm2d(4), g.apply(conv, x)))
    h = g.apply(cg.Add(), h, x)
    shift = g.apply(cg.Constant(randn(rng, (1, 4, 1, 1))))
    h = g.apply(cg.Concat(axis=1), h, g.apply(cg.Add(broadcast=True), x, shift))
    h = g.apply(cg.MaxPool2d(3, stride=2, ceil_mode=True), h)
    h = g.apply(cg.Flatten(), g.apply(cg.AvgPool2d(2), h))
    g.output(g.apply(cg.Softmax(), g.apply(cg.Linear(8, 5), h)), h)
    return g


def test_built_in_models_can_be_cut():
    for name, build in models.MODELS.items():
        graph = build() if name == "lenet5" else build(input_shape=(None, 3, 64, 64))
        assert batch_split.batch_symbol(graph) == "N", name


@pytest.mark.parametrize("make", [
    lambda: graph_of(cg.Softmax(axis=0)),
    lambda: graph_of(cg.Flatten(start_dim=0)),
    lambda: graph_of(cg.Transpose((1, 0, 2, 3))),
    lambda: graph_of(cg.ReduceMean(axes=(0,))),
    lambda: graph_of(cg.ReduceMean()),                       # all axes, the batch included
    lambda: graph_of(cg.Reshape((1, -1))),
    lambda: graph_of(cg.ReLU(), input_shape=(2, 4, 6, 6)),  # no symbolic batch
], ids=["softmax-axis-0", "flatten-from-0", "transpose-batch", "mean-over-batch", "mean-over-all",
        "reshape-merging-batch", "fixed-batch"])
def test_graphs_that_mix_samples_are_not_cut(make):
    assert batch_split.batch_symbol(make()) is None


def test_concat_on_the_batch_and_a_batch_sized_constant_are_not_cut():
    g = cg.Graph("concat0")
    x = g.input("x", (None, 4))
    g.output(g.apply(cg.Concat(axis=0), x, x))
    assert batch_split.batch_symbol(g) is None
    g = cg.Graph("constant-batch")
    x = g.input("x", (2, 4))
    g.output(g.apply(cg.Add(broadcast=True), x, g.apply(cg.Constant(np.ones((2, 4), np.float32)))))
    assert batch_split.batch_symbol(g) is None


def test_per_sample_reshape_and_transpose_are_cut():
    assert batch_split.batch_symbol(graph_of(cg.Reshape(("N", -1)), cg.Linear(144, 3))) == "N"
    assert batch_split.batch_symbol(graph_of(cg.Transpose((0, 2, 3, 1)), cg.Pad((0, 1, 0, 0, 0, 1, 0, 0)))) == "N"


def test_cuts_are_even_and_skip_small_work():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_split, "WORKERS", 3)
        big = batch_split.MIN_PIECE_MACS
        assert batch_split.cuts(8, big) == [(0, 2), (2, 5), (5, 8)]
        assert batch_split.cuts(2, big) == [(0, 1), (1, 2)]
        assert batch_split.cuts(1, big) == [(0, 1)]
        assert batch_split.cuts(8, big // 8) == [(0, 8)]              # the whole batch is one piece's worth
        assert batch_split.cuts(8, big // 4) == [(0, 4), (4, 8)]


def run_cut(graph, x, workers):
    """Run with any work worth cutting into ``workers`` pieces; return the outputs and the pieces used."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_split, "WORKERS", workers)
        patch.setattr(batch_split, "MIN_PIECE_MACS", 1)
        executor = Executor(graph)
        outputs = executor(x)
    return outputs, {key[1] for key in executor._plans}


@examples(25)
@given(batch=st.integers(2, 6), workers=st.integers(2, 4), seed=st.integers(0, 2**32 - 1))
def test_cut_run_matches_reference_and_uncut_run(batch, workers, seed):
    rng = np.random.default_rng(seed)
    graph = branchy_graph(rng)
    x = randn(rng, (batch, 4, 7, 7))
    outputs, pieces = run_cut(graph, x, workers)
    assert pieces == set(range(min(batch, workers)))
    uncut = Executor(graph)(x)
    for name, actual, expected, whole in zip(graph.outputs, outputs, reference_run(graph, x), uncut):
        assert actual.shape == whole.shape == (batch, *graph.type_of(name).shape[1:])
        assert_close(actual, expected, what=name)
        np.testing.assert_allclose(actual, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_cut_models_match_the_uncut_run(name):
    rng = np.random.default_rng(0)
    graph = models.MODELS[name](input_shape=(None, 3, 40, 40))
    x = rng.random((3, 3, 40, 40), dtype=np.float32)
    outputs, pieces = run_cut(graph, x, 2)
    assert pieces == {0, 1}
    assert_close(outputs, Executor(graph)(x))


def test_blas_threads_are_restored_after_a_cut_run():
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    graph = branchy_graph(np.random.default_rng(1))
    run_cut(graph, np.zeros((4, 4, 7, 7), np.float32), 2)
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_a_failing_piece_raises_in_the_caller():
    calls = []

    def fail():
        calls.append("fail")
        raise RuntimeError("piece 2 broke")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_split, "WORKERS", 2)
        with pytest.raises(RuntimeError, match="piece 2 broke"):
            batch_split.in_parallel([lambda: calls.append("ok"), fail])
    assert sorted(calls) == ["fail", "ok"]
