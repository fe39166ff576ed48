"""2-D pooling (backends/numpy_backend/pooling.py) run block by block of channels, against tests/reference.py.

The kernels pool BLOCK_BYTES of input at a time and merge the first two taps of an axis into one pass; with
BLOCK_BYTES made tiny every block is one channel (or a few), across kernel, stride, dilation, asymmetric
pads, ceil_mode, count_include_pad and batch 1–3; with ``split`` the blocks are shared out over two threads.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import batch_split, pooling
from cnngraph.tolerance import assert_close


@st.composite
def pool_cases(draw):
    op = draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if op == "MaxPool2d" else (1, 1)
    limits = [((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation)]
    pads = (draw(st.integers(0, limits[0])), draw(st.integers(0, limits[1])),
            draw(st.integers(0, limits[0])), draw(st.integers(0, limits[1])))
    return dict(op=op, kernel=kernel, dilation=dilation, pads=pads,
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                channels=draw(st.integers(1, 4)), batch=draw(st.integers(1, 3)),
                extra=(draw(st.integers(0, 6)), draw(st.integers(0, 6))),
                block_bytes=draw(st.sampled_from([1, 300, 1 << 20])), split=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 16)))


@examples(150)
@given(pool_cases())
def test_pooling_in_blocks_matches_reference(case):
    if case["op"] == "MaxPool2d":
        layer = cg.MaxPool2d(case["kernel"], case["stride"], dilation=case["dilation"], ceil_mode=case["ceil_mode"])
    else:
        layer = cg.AvgPool2d(case["kernel"], case["stride"], ceil_mode=case["ceil_mode"],
                             count_include_pad=case["count_include_pad"])
    (kh, kw), (dh, dw), pads = case["kernel"], case["dilation"], case["pads"]
    # at least `dilation` pixels, so that no window lies entirely in the padding
    h = max(dh, (kh - 1) * dh + 1 - pads[0] - pads[2]) + case["extra"][0]
    w = max(dw, (kw - 1) * dw + 1 - pads[1] - pads[3]) + case["extra"][1]
    g = cg.Graph("pool")
    x = g.input("x", (None, case["channels"], h, w))
    g.output(g.add(case["op"], [x], dict(layer.attrs, pads=pads), name="pool"))
    data = randn(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], h, w))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pooling, "BLOCK_BYTES", case["block_bytes"])
        if case["split"]:                    # the blocks shared out over two workers (at batch 1: not cut)
            patch.setattr(batch_split, "WORKERS", 2)
            patch.setattr(batch_split, "MIN_PIECE_MACS", 1)
        actual = cg.run(g, data)
    assert_close(actual, reference_run(g, data), f"{case['op']} in blocks")


@examples(30)
@given(channels=st.integers(1, 5), batch=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16))
def test_global_average_pool_as_a_product_matches_reference(channels, batch, h, w, seed):
    """GlobalAvgPool2d is one matrix-vector product (rows of H·W times 1/(H·W)): any C, N, H, W."""
    g = cg.Graph("gap")
    x = g.input("x", (None, channels, h, w))
    g.output(g.apply(cg.GlobalAvgPool2d(), x))
    data = randn(np.random.default_rng(seed), (batch, channels, h, w))
    assert_close(cg.run(g, data), reference_run(g, data), "GlobalAvgPool2d")
