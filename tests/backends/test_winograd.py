"""Winograd 3×3 convolutions (backends/numpy_backend/winograd.py) against the naive reference in tests/reference.py.

The size rule sends only convolutions of 32+ channels to Winograd; here FORCE_TILE makes every eligible
convolution use F(2×2) or F(4×4), so that small, odd, padded and batched shapes (and batch chunking; the
split over the cores is in test_kernel_parts.py) are checked against the float64 reference within cnngraph.tolerance,
with the bias and a BatchNorm/ReLU absorbed as the convolution's epilogue.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import winograd
from cnngraph.tolerance import assert_close

FOLLOWERS = ["none", "relu", "bn", "bn+relu"]


def conv_graph(rng, cin, cout, hw, pads, bias, follower):
    """x → 3×3 stride-1 Conv2d with explicit (top, left, bottom, right) pads → optional BatchNorm / ReLU."""
    layer = cg.Conv2d(cin, cout, 3, bias=bias)
    layer.weight = randn(rng, layer.weight.shape, 1 / np.sqrt(9 * cin))
    if bias:
        layer.bias = randn(rng, layer.bias.shape)
    g = cg.Graph("winograd")
    x = g.input("x", (None, cin, *hw))
    y = g.add("Conv2d", [x], dict(layer.attrs, pads=tuple(pads)), layer.params, name="conv")
    if "bn" in follower:
        bn = cg.BatchNorm2d(cout)
        bn.weight, bn.bias = randn(rng, (cout,)), randn(rng, (cout,))
        bn.running_mean = randn(rng, (cout,))
        bn.running_var = rng.uniform(0.2, 2.0, cout).astype(np.float32)
        y = g.apply(bn, y)
    if "relu" in follower:
        y = g.apply(cg.ReLU(), y)
    g.output(y)
    return g


def check_winograd(g, x, tile, chunk_bytes=None, chunk_tiles=None):
    """Run ``g`` with every eligible convolution on Winograd F(tile×tile); assert it was used and agrees."""
    calls = []
    original = winograd.winograd_conv

    def counting(ctx, weight, m, finish):
        calls.append(m)
        return original(ctx, weight, m, finish)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "FORCE_TILE", tile)
        patch.setattr(winograd, "winograd_conv", counting)
        if chunk_bytes is not None:
            patch.setattr(winograd, "CHUNK_BYTES", chunk_bytes)
        if chunk_tiles is not None:
            patch.setattr(winograd, "CHUNK_TILES", chunk_tiles)
        actual = cg.run(g, x)
    assert calls == [tile]
    expected = reference_run(g, x)
    assert_close(actual, expected)
    return actual, expected


@st.composite
def cases(draw):
    pads = draw(st.one_of(st.sampled_from([(0,) * 4, (1,) * 4, (2,) * 4]), st.tuples(*[st.integers(0, 2)] * 4)))
    # the smallest input a 3×3 kernel fits, plus up to 8 odd or even pixels
    hw = tuple(max(1, 3 - pads[i] - pads[i + 2]) + draw(st.integers(0, 8)) for i in (0, 1))
    return dict(tile=draw(st.sampled_from([2, 4])), cin=draw(st.integers(1, 6)), cout=draw(st.integers(1, 12)),
                hw=hw, pads=pads, batch=draw(st.sampled_from([1, 3])), bias=draw(st.booleans()),
                follower=draw(st.sampled_from(FOLLOWERS)), chunk_bytes=draw(st.sampled_from([None, 1])),
                chunk_tiles=draw(st.sampled_from([None, 1, 20])), seed=draw(st.integers(0, 2**32 - 1)))


@examples(150)
@given(cases())
def test_winograd_matches_reference(case):
    """chunk_bytes=1 or chunk_tiles=1 runs the batch one image at a time (chunk_tiles=20: as many images as hold
    20 tiles)."""
    rng = np.random.default_rng(case["seed"])
    g = conv_graph(rng, case["cin"], case["cout"], case["hw"], case["pads"], case["bias"], case["follower"])
    x = randn(rng, (case["batch"], case["cin"], *case["hw"]))
    check_winograd(g, x, case["tile"], case["chunk_bytes"], case["chunk_tiles"])


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("which", ["input", "output"])
def test_separable_transform_is_the_kronecker_product(m, which):
    """separable(t, x) is the 2-D transform of each column's tile x[p, q] (one (a², a²) or (m², a²) product with
    kron(t, t) in float64), transposed: the input tiles are gathered transposed to get Bᵀ d B, and the output
    comes out indexed (j, i)."""
    b_t, _, a_t = (np.array(t, np.float64) for t in winograd.TRANSFORMS[m])
    t = b_t if which == "input" else a_t
    a, k = m + 2, t.shape[0]
    rng = np.random.default_rng(m)
    x = rng.standard_normal((a, a, 7)).astype(np.float32)
    out = winograd.separable(t.astype(np.float32), x, np.empty(a * k * 7, np.float32), np.empty(k * k * 7, np.float32))
    expected = (np.kron(t, t) @ x.astype(np.float64).reshape(a * a, -1)).reshape(k, k, -1).transpose(1, 0, 2)
    assert out.shape == (k, k, 7)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("cout, hw", [(16, (5, 5)), (2, (9, 7))], ids=["channels-over-tiles", "tiles-over-channels"])
def test_few_or_many_tiles_per_channel_and_uneven_chunks(tile, cout, hw):
    """Batch 3 in chunks of 2 and 1; 16 channels on ≤ 9 tiles a chunk, then 2 channels on many tiles."""
    rng = np.random.default_rng(tile * cout)
    g = conv_graph(rng, 3, cout, hw, (1, 1, 1, 1), True, "bn+relu")
    a = tile + 2
    per_image = a * a * -(-hw[0] // tile) * -(-hw[1] // tile) * max(3, cout) * 4   # the module's chunk budget
    check_winograd(g, randn(rng, (3, 3, *hw)), tile, chunk_bytes=2 * per_image)


@pytest.mark.parametrize("batch", [1, 3])
def test_size_rule_picks_winograd_for_wide_layers(batch):
    """Without forcing: 32+ channels go to Winograd, and the result is within tolerance of the reference."""
    rng = np.random.default_rng(batch)
    g = conv_graph(rng, 32, 40, (9, 11), (1, 2, 0, 1), True, "bn+relu")
    x = randn(rng, (batch, 32, 9, 11))
    conv = g.node("conv")
    tile = winograd.tile_size(conv.attrs, 32, 40, batch, g.type_of("conv").shape[2:])
    assert tile in (2, 4)
    calls = []
    original = winograd.winograd_conv
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "winograd_conv", lambda *args: calls.append(args[2]) or original(*args))
        actual = cg.run(g, x)
    assert calls == [tile]
    assert_close(actual, reference_run(g, x))


def test_large_channel_error_stays_far_inside_tolerance():
    """576-term dot products (64 channels): F(4×4)'s float32 error is ≤ 1/5 of what the tolerance allows."""
    for tile in (2, 4):                       # a graph of its own each time: plans are cached per graph
        rng = np.random.default_rng(0)
        g = conv_graph(rng, 64, 8, (10, 10), (1, 1, 1, 1), True, "none")
        actual, expected = check_winograd(g, randn(rng, (1, 64, 10, 10)), tile)
        scale = np.max(np.abs(expected))
        assert np.max(np.abs(actual - expected)) <= 0.2 * 1e-4 * scale


ATTRS = dict(kernel_size=(3, 3), stride=(1, 1), dilation=(1, 1), groups=1)


@pytest.mark.parametrize("change", [dict(stride=(2, 2)), dict(dilation=(2, 2)), dict(groups=2),
                                    dict(kernel_size=(1, 1)), dict(kernel_size=(5, 5)), dict(kernel_size=(3, 1))])
def test_only_plain_3x3_stride_1_convolutions(change):
    assert winograd.tile_size(dict(ATTRS, **change), 256, 256, 8, (14, 14)) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "FORCE_TILE", 4)
        assert winograd.tile_size(dict(ATTRS, **change), 256, 256, 8, (14, 14)) is None


@pytest.mark.parametrize("channels, size, batch, tile", [
    (3, 224, 8, None), (16, 56, 8, None),               # too few channels: im2col
    (64, 56, 8, 4), (128, 28, 8, 4), (256, 14, 8, 4), (512, 7, 8, 4),     # resnet18 at batch 8
    (64, 56, 1, 4), (128, 28, 1, 4), (256, 14, 1, 2), (512, 7, 1, None),  # and at batch 1: 16 tiles, im2col
    (256, 2, 32, 2), (512, 1, 32, None), (512, 1, 1, None),  # resnet18 at 32×32: maps smaller than a tile
])
def test_size_rule_on_resnet18_shapes(channels, size, batch, tile):
    assert winograd.tile_size(ATTRS, channels, channels, batch, (size, size)) == tile
