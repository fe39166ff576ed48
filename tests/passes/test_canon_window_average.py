"""canon_window_average: a depthwise Conv of ones times 1/divisor -> the ceil_mode AvgPool2d it computes."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, named_ops, ops, refusals

import cnngraph as cg
from cnngraph.shapes import average_pool_divisor


def window_sums(size=(5, 5), kernel=2, stride=2, conv_pads=(0, 0, 1, 1), scale=None, bias=False, extra_reader=False,
                computed_scale=False):
    """x -> Conv(ones, depthwise) -> Mul(scale); by default the exporter's form of AvgPool2d(2, 2, ceil_mode)."""
    channels = 2
    graph = cg.Graph("g")
    x = graph.input("x", (None, channels, *size))
    conv = cg.Conv2d(channels, channels, kernel, stride, groups=channels, bias=bias)
    attrs = dict(conv.attrs, pads=conv_pads)
    params = dict(conv.params, weight=np.ones_like(conv.params["weight"]))
    sums = graph.add("Conv2d", [x], attrs, params, name="sums")
    out = graph.type_of(sums).shape[2:]
    if scale is None:
        divisors = [average_pool_divisor(size[i], out[i], kernel, stride, 0, 0, False) for i in range(2)]
        scale = (1.0 / np.outer(*divisors)).astype(np.float32)[None, None]
    if computed_scale:
        factor = graph.input("scale", (1, 1, *out))
    else:
        factor = graph.add("Constant", [], dict(shape=scale.shape), dict(value=scale), name="scale")
    outputs = [graph.add("Mul", [sums, factor], name="avg")]
    if extra_reader:
        outputs.append(graph.add("ReLU", [sums], name="other"))
    graph.output(*outputs)
    return graph


def test_window_sums_times_inverse_divisors_are_the_average_pool():
    graph = window_sums()
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("avg", "AvgPool2d")]
    pool = optimized.node("avg").attrs
    assert (pool["kernel_size"], pool["stride"], pool["pads"], pool["ceil_mode"]) == ((2, 2), (2, 2), (0, 0, 0, 0), True)
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("size,kernel,stride,padding,include", [((5, 6), 3, 3, 1, True), ((6, 7), 2, 3, 0, False)])
def test_the_exporters_window_sums_come_back_as_the_pool(size, kernel, stride, padding, include):
    graph = cg.Graph("g")
    pool = cg.AvgPool2d(kernel, stride, padding, ceil_mode=True, count_include_pad=include)
    graph.output(graph.apply(pool, graph.input("x", (None, 2, *size)), name="pool"))
    imported = cg.load_onnx(cg.export_onnx(graph))
    assert ops(imported) == ["Conv2d", "Constant", "Mul"]
    back = cg.optimize(imported, level=1)
    assert named_ops(back) == [("pool", "AvgPool2d")]
    assert_equivalent(graph, back)


def test_a_scale_that_is_no_pools_divisors_stays_a_convolution():
    graph = window_sums(scale=np.full((1, 1, 3, 3), 0.3, np.float32))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "Constant", "Mul"]
    assert any("no ceil_mode average pool has these windows and divisors" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_computed_scale_is_not_matched():
    graph = window_sums(computed_scale=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "Mul"]
    assert any("the scale scale is not a constant" in r for r in refusals(optimized))


def test_window_sums_read_elsewhere_are_not_matched():
    graph = window_sums(extra_reader=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "Constant", "Mul", "ReLU"]
    assert any("sums has 2 readers" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_convolution_with_a_bias_is_not_window_sums():
    graph = window_sums(bias=True)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "Constant", "Mul"]
    assert not optimized.report.rewrites
