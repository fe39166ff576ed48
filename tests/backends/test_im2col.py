"""The im2col convolution (backends/numpy_backend/gemm.py) against the naive reference in tests/reference.py.

Strided convolutions gather their columns from the input's phases (phase_split, tap_groups), and an image
whose columns exceed COLUMN_BYTES is cut into bands of output rows. Here COLUMN_BYTES is made tiny so that
small shapes take the band path too (bands of one row up to the whole image), across stride, dilation,
asymmetric padding, groups, batch 1–3, with the bias and a BatchNorm/ReLU absorbed as the epilogue.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import drawn_conv, examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import gemm
from cnngraph.tolerance import assert_close


@st.composite
def strided_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    return dict(groups=groups, cin=groups * draw(st.integers(1, 3)), cout=groups * draw(st.integers(1, 3)),
                kernel=(draw(st.integers(1, 7)), draw(st.integers(1, 5))),
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 2))),
                pads=tuple(draw(st.integers(0, 3)) for _ in range(4)), extra=(draw(st.integers(0, 5)),
                                                                              draw(st.integers(0, 5))),
                batch=draw(st.integers(1, 3)), bias=draw(st.booleans()), bn_relu=draw(st.booleans()),
                column_bytes=draw(st.sampled_from([1, 200, 2000, 8 << 20])), seed=draw(st.integers(0, 2 ** 16)))


def conv_graph(case, rng):
    layer = drawn_conv(case, rng)
    (kh, kw), (dh, dw), pads = case["kernel"], case["dilation"], case["pads"]
    h = max(1, (kh - 1) * dh + 1 - pads[0] - pads[2]) + case["extra"][0]
    w = max(1, (kw - 1) * dw + 1 - pads[1] - pads[3]) + case["extra"][1]
    g = cg.Graph("im2col")
    x = g.input("x", (None, case["cin"], h, w))
    y = g.add("Conv2d", [x], dict(layer.attrs, pads=pads), layer.params, name="conv")
    if case["bn_relu"]:
        bn = cg.BatchNorm2d(case["cout"])
        bn.weight, bn.bias = randn(rng, (case["cout"],)), randn(rng, (case["cout"],))
        bn.running_var = rng.uniform(0.2, 2.0, case["cout"]).astype(np.float32)
        y = g.apply(cg.ReLU(), g.apply(bn, y))
    g.output(y)
    return g, randn(rng, (case["batch"], case["cin"], h, w))


@examples(150)
@given(strided_cases())
def test_im2col_phases_and_bands_match_reference(case):
    rng = np.random.default_rng(case["seed"])
    g, x = conv_graph(case, rng)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "COLUMN_BYTES", case["column_bytes"])
        actual = cg.run(g, x)
    assert_close(actual, reference_run(g, x), "im2col convolution")


@pytest.mark.parametrize("kernel, stride, dilation", [(7, 2, 1), (3, 2, 2), (5, 3, 2), (4, 2, 3), (1, 2, 1)])
def test_tap_groups_cover_every_tap_once(kernel, stride, dilation):
    """Each kernel tap is in exactly one phase group, at offset i·d // s of phase i·d mod s."""
    seen = []
    for (p, q), rows, cols, (i0, j0), (di, dj) in gemm.tap_groups((kernel, kernel), (stride, stride),
                                                                  (dilation, dilation)):
        for a, i in enumerate(rows):
            assert (i * dilation % stride, i * dilation // stride) == (p, i0 + a * di)
        for b, j in enumerate(cols):
            assert (j * dilation % stride, j * dilation // stride) == (q, j0 + b * dj)
        seen += [(i, j) for i in rows for j in cols]
    assert sorted(seen) == [(i, j) for i in range(kernel) for j in range(kernel)]
