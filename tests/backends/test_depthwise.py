"""The depthwise convolution kernel (backends/numpy_backend/depthwise.py) against the naive reference.

Both of its layouts (channel-major for long images, pixel-major for short ones) are forced in turn, with
blocks down to one channel or one position and tiles of scales down to one position, so that block and tile
edges fall everywhere; stride and dilation make the
tap grids of the stride phases, asymmetric padding the phases' borders; a BatchNorm and a ReLU6 behind the
convolution run as its epilogue, block by block.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import compile_graph, depthwise
from cnngraph.tolerance import assert_close


@st.composite
def depthwise_cases(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    return dict(cin=draw(st.integers(2, 5)), multiplier=draw(st.integers(1, 3)), kernel=kernel,
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), dilation=dilation, pads=pads,
                size=tuple(max(1, s - pads[a] - pads[a + 2]) + draw(st.integers(0, 6)) for a, s in enumerate(span)),
                batch=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                epilogue=draw(st.sampled_from(["none", "batchnorm", "batchnorm+relu6"])),
                channel_major=draw(st.booleans()), block_bytes=draw(st.sampled_from([4, 300, 3000, 1 << 20])),
                tile_elements=draw(st.sampled_from([1, 7, 4096])),
                seed=draw(st.integers(0, 2**16)))


def depthwise_graph(case):
    rng = np.random.default_rng(case["seed"])
    cin, cout = case["cin"], case["cin"] * case["multiplier"]
    layer = cg.Conv2d(cin, cout, case["kernel"], stride=case["stride"], dilation=case["dilation"], groups=cin,
                      bias=case["bias"])
    layer.weight = randn(rng, layer.weight.shape)
    if case["bias"]:
        layer.bias = randn(rng, layer.bias.shape)
    g = cg.Graph("depthwise")
    x = g.input("x", (None, cin, *case["size"]))
    y = g.add("Conv2d", [x], dict(layer.attrs, pads=case["pads"]), layer.params, name="conv")
    if case["epilogue"] != "none":
        norm = cg.BatchNorm2d(cout)
        norm.weight, norm.bias = randn(rng, (cout,)), randn(rng, (cout,))
        norm.running_mean, norm.running_var = randn(rng, (cout,)), rng.random(cout).astype(np.float32) + 0.5
        y = g.apply(norm, y, name="norm")
    if case["epilogue"] == "batchnorm+relu6":
        y = g.apply(cg.ReLU6(), y, name="relu6")
    g.output(y)
    return g, randn(rng, (case["batch"], cin, *case["size"]), scale=2.0)


@examples(200)
@given(depthwise_cases())
def test_depthwise_matches_reference(case):
    g, x = depthwise_graph(case)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(depthwise, "CHANNEL_MAJOR_POSITIONS", 0 if case["channel_major"] else 1 << 30)
        patch.setattr(depthwise, "BLOCK_BYTES", case["block_bytes"])
        patch.setattr(depthwise, "TILE_ELEMENTS", case["tile_elements"])
        actual = cg.run(g, x)
    assert_close(actual, reference_run(g, x))


@pytest.mark.parametrize("channel_major", [False, True])
def test_depthwise_writes_all_it_reads_of_the_arena(channel_major, monkeypatch):
    """Every position the kernel reads is written in the same step: NaN left in the scratch arena by earlier
    steps does not reach the output."""
    monkeypatch.setattr(depthwise, "CHANNEL_MAJOR_POSITIONS", 0 if channel_major else 1 << 30)
    case = dict(cin=3, multiplier=2, kernel=(3, 3), stride=(2, 1), dilation=(1, 2), pads=(1, 0, 2, 3), size=(9, 8),
                batch=2, bias=True, epilogue="batchnorm+relu6", seed=1)
    g, x = depthwise_graph(case)
    first = cg.run(g, x)
    for plan in compile_graph(g)._plans.values():
        plan.scratch._arena[:] = np.nan
    assert_close(cg.run(g, x), first)
    assert_close(first, reference_run(g, x))


def test_pixel_major_block_ending_in_part_of_a_tile(monkeypatch):
    """A last block of whole tiles plus a few rows (61 wide positions, blocks of 40 = 10 tiles of 4 rows: the
    last block is 5 tiles and one row), which random cases seldom draw."""
    monkeypatch.setattr(depthwise, "CHANNEL_MAJOR_POSITIONS", 1 << 30)
    monkeypatch.setattr(depthwise, "BLOCK_BYTES", 3000)
    monkeypatch.setattr(depthwise, "TILE_ELEMENTS", 7)
    case = dict(cin=2, multiplier=1, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=(1, 1, 1, 1), size=(7, 7),
                batch=1, bias=False, epilogue="none", seed=3)
    g, x = depthwise_graph(case)
    assert_close(cg.run(g, x), reference_run(g, x))
