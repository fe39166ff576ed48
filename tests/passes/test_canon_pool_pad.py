"""canon_pool_pad: a constant spatial Pad merged into the MaxPool2d/AvgPool2d reading it, only when exact."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, named_ops, ops, refusals

import cnngraph as cg


def padded_pool(pool, pads=(0, 0, 1, 1, 0, 0, 1, 1), value=-np.inf, shape=(None, 2, 7, 7), extra_reader=False,
                pad_out=False):
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    padded = graph.add("Pad", [x], dict(pads=pads, mode="constant", value=value), name="pad")
    outputs = [graph.apply(pool, padded, name="pool")]
    if extra_reader:
        outputs.append(graph.apply(cg.ReLU(), padded, name="other"))
    graph.output(*outputs, *([padded] if pad_out else []))
    return graph


def test_minus_infinity_pad_merges_into_max_pool():
    graph = padded_pool(cg.MaxPool2d(3, 2))
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("pool", "MaxPool2d")]
    assert optimized.node("pool").attrs["pads"] == (1, 1, 1, 1)
    assert_equivalent(graph, optimized)


def test_zero_pad_merges_into_an_average_that_counts_it():
    graph = padded_pool(cg.AvgPool2d(3, 2, count_include_pad=False), pads=(0, 0, 1, 2, 0, 0, 1, 0), value=0.0)
    optimized = cg.optimize(graph, level=1)
    pool = optimized.node("pool")
    assert ops(optimized) == ["AvgPool2d"]
    assert pool.attrs["pads"] == (1, 2, 1, 0) and pool.attrs["count_include_pad"] is True
    assert_equivalent(graph, optimized)


def test_zero_pad_before_an_average_that_pads_without_counting_is_not_merged():
    """onnx/optimizer PR #108: the merged pool would count the pre-padding and its own alike."""
    graph = padded_pool(cg.AvgPool2d(3, 2, 1, count_include_pad=False), value=0.0)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", "AvgPool2d"]
    assert any("count_include_pad=0" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("pool,value", [(cg.MaxPool2d(3, 2), 0.0), (cg.AvgPool2d(3, 2), -np.inf),
                                        (cg.AvgPool2d(3, 2), 1.0)])
def test_a_fill_the_pool_does_not_pad_with_is_not_merged(pool, value):
    graph = padded_pool(pool, value=value)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", pool.op]
    assert any(f"the fill {value} is not" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_pad_read_elsewhere_is_not_merged():
    graph = padded_pool(cg.MaxPool2d(3, 2), extra_reader=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", "MaxPool2d", "ReLU"]
    assert any("pad has 2 readers" in r for r in refusals(optimized))


def test_a_pad_that_is_a_graph_output_is_not_merged():
    graph = padded_pool(cg.MaxPool2d(3, 2), pad_out=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", "MaxPool2d"]
    assert any("pad is a graph output" in r for r in refusals(optimized))


def test_a_pad_of_the_channels_is_not_merged():
    graph = padded_pool(cg.MaxPool2d(3, 2), pads=(0, 1, 0, 0, 0, 0, 0, 0))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", "MaxPool2d"]
    assert any("pad more than the two spatial axes" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_window_only_over_the_pad_would_be_dropped_so_it_is_not_merged():
    """size 2 padded by 2 at the end, k = s = 2, ceil_mode: the second window lies in the Pad; PyTorch's rule
    drops a ceil_mode window that starts in the pool's own padding (pytorch #71549), so merging changes sizes."""
    graph = padded_pool(cg.MaxPool2d(2, 2, ceil_mode=True), pads=(0, 0, 0, 0, 0, 0, 2, 2), shape=(None, 2, 2, 2))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Pad", "MaxPool2d"]
    assert any("give other output sizes" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("pool,size", [(cg.MaxPool2d(3, 3, 1, ceil_mode=True), (5, 6)),
                                       (cg.MaxPool2d(2, 3, ceil_mode=True), (6, 7)),
                                       (cg.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True), (6, 6))])
def test_the_exporters_ceil_mode_forms_come_back_as_the_pool(pool, size):
    """export -> import maps the exporter's Pad + pool one to one; the level-1 rules give the pool back."""
    graph = cg.Graph("g")
    graph.output(graph.apply(pool, graph.input("x", (None, 2, *size)), name="pool"))
    imported = cg.load_onnx(cg.export_onnx(graph))
    assert ops(imported) == ["Pad", pool.op]
    back = cg.optimize(imported, level=1)
    assert named_ops(back) == [("pool", pool.op)]
    assert back.node("pool").attrs == graph.node("pool").attrs
    assert_equivalent(graph, back)
