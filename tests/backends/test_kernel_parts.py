"""Convolutions that split their own work over the cores (batch_split.inference_threads, kernel_parts).

A batch that is not cut into pieces (batch 1, or samples that meet) runs with BLAS on one thread while the big
convolutions cut their work into one part per core: im2col by blocks of output pixels or by output channels,
Winograd by rows of tiles or by output channels. Here the size thresholds are lowered so that small shapes
split, with two workers, and every path is checked against the naive reference across its attributes.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import batch_split, gemm, winograd
from cnngraph.tolerance import assert_close


def conv_graph(rng, cin, cout, hw, kernel, stride, dilation, pads, groups, bn_relu):
    layer = cg.Conv2d(cin, cout, kernel, stride=stride, dilation=dilation, groups=groups)
    layer.weight = randn(rng, layer.weight.shape, 1 / np.sqrt(cin * kernel[0] * kernel[1]))
    layer.bias = randn(rng, layer.bias.shape)
    g = cg.Graph("parts")
    x = g.input("x", (None, cin, *hw))
    y = g.add("Conv2d", [x], dict(layer.attrs, pads=pads), layer.params, name="conv")
    if bn_relu:
        bn = cg.BatchNorm2d(cout)
        bn.weight, bn.bias = randn(rng, (cout,)), randn(rng, (cout,))
        y = g.apply(cg.ReLU(), g.apply(bn, y))
    g.output(y)
    return g


def run_split(g, x, block_columns, tile=None):
    """cg.run with splitting forced on two workers; the parts' count is checked by the caller's reference."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_split, "WORKERS", 2)
        patch.setattr(batch_split, "MIN_PIECE_MACS", 1)
        patch.setattr(gemm, "BLOCK_SPLIT_COLUMNS", block_columns)
        patch.setattr(winograd, "FORCE_TILE", tile)
        return cg.run(g, x)


@st.composite
def im2col_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    hw = tuple(max(1, (k - 1) * d + 1 - pads[i] - pads[i + 2]) + draw(st.integers(0, 6))
               for i, (k, d) in enumerate(zip(kernel, dilation)))
    return dict(groups=groups, cin=groups * draw(st.integers(2, 3)), cout=groups * draw(st.integers(1, 5)),
                kernel=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), dilation=dilation,
                pads=pads, hw=hw, batch=draw(st.integers(1, 3)), bn_relu=draw(st.booleans()),
                block_columns=draw(st.sampled_from([1, 10 ** 9])), column_bytes=draw(st.sampled_from([1, 8 << 20])),
                seed=draw(st.integers(0, 2 ** 16)))


@examples(120)
@given(im2col_cases())
def test_im2col_split_by_blocks_or_channels_matches_reference(case):
    """block_columns 1: blocks of output pixels per part; 10⁹: output channels per part (groups 1)."""
    rng = np.random.default_rng(case["seed"])
    g = conv_graph(rng, case["cin"], case["cout"], case["hw"], case["kernel"], case["stride"], case["dilation"],
                   case["pads"], case["groups"], case["bn_relu"])
    x = randn(rng, (case["batch"], case["cin"], *case["hw"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "COLUMN_BYTES", case["column_bytes"])
        actual = run_split(g, x, case["block_columns"])
    assert_close(actual, reference_run(g, x), "im2col in parts")


@st.composite
def winograd_cases(draw):
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    hw = tuple(max(1, 3 - pads[i] - pads[i + 2]) + draw(st.integers(0, 10)) for i in (0, 1))
    return dict(tile=draw(st.sampled_from([2, 4])), cin=draw(st.integers(1, 5)), cout=draw(st.integers(1, 24)),
                hw=hw, pads=pads, batch=draw(st.integers(1, 3)), bn_relu=draw(st.booleans()),
                chunk_bytes=draw(st.sampled_from([1, 4 << 20])), seed=draw(st.integers(0, 2 ** 16)))


@examples(120)
@given(winograd_cases())
def test_winograd_split_by_tile_rows_or_channels_matches_reference(case):
    """Many output channels on few tiles split the channels, the rest split the rows of tiles."""
    rng = np.random.default_rng(case["seed"])
    g = conv_graph(rng, case["cin"], case["cout"], case["hw"], (3, 3), (1, 1), (1, 1), case["pads"], 1,
                   case["bn_relu"])
    x = randn(rng, (case["batch"], case["cin"], *case["hw"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "CHUNK_BYTES", case["chunk_bytes"])
        actual = run_split(g, x, 10 ** 9, case["tile"])
    assert_close(actual, reference_run(g, x), "Winograd in parts")


@examples(60)
@given(st.integers(1, 6), st.integers(1, 9), st.tuples(st.integers(1, 6), st.integers(1, 6)), st.integers(1, 3),
       st.booleans(), st.sampled_from([1, 10 ** 9]), st.integers(0, 2 ** 16))
def test_pointwise_split_by_pixels_or_channels_matches_reference(cin, cout, hw, batch, bn_relu, block_columns, seed):
    """1×1 stride-1 convolutions (no im2col): images or rows of one image per part, or output channels."""
    rng = np.random.default_rng(seed)
    g = conv_graph(rng, cin, cout, hw, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1, bn_relu)
    x = randn(rng, (batch, cin, *hw))
    assert_close(run_split(g, x, block_columns), reference_run(g, x), "1×1 convolution in parts")


@examples(40)
@given(st.integers(1, 8), st.integers(1, 9), st.sampled_from([None, 3]), st.booleans(), st.integers(0, 2 ** 16))
def test_linear_split_by_output_features_matches_reference(in_features, out_features, steps, relu, seed):
    rng = np.random.default_rng(seed)
    layer = cg.Linear(in_features, out_features)
    layer.weight, layer.bias = randn(rng, layer.weight.shape), randn(rng, layer.bias.shape)
    g = cg.Graph("linear")
    x = g.input("x", (1, in_features) if steps is None else (1, steps, in_features))
    y = g.apply(layer, x)
    g.output(g.apply(cg.ReLU(), y) if relu else y)
    data = randn(rng, (1, in_features) if steps is None else (1, steps, in_features))
    assert_close(run_split(cg.optimize(g), data, 1), reference_run(g, data), "Linear in parts")


def test_kernel_parts_only_inside_inference_threads():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_split, "WORKERS", 2)
        assert batch_split.kernel_parts(10, 10 ** 12) == [(0, 10)]
        with batch_split.inference_threads(10 ** 12):
            assert batch_split.kernel_parts(10, 10 ** 12) == [(0, 5), (5, 10)]
            assert batch_split.kernel_parts(10, batch_split.MIN_PIECE_MACS) == [(0, 10)]   # too little work
            assert batch_split.kernel_parts(1, 10 ** 12) == [(0, 1)]
        assert batch_split.kernel_parts(10, 10 ** 12) == [(0, 10)]
