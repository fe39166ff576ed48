"""Conv1d, Conv3d and ConvTranspose1d/2d/3d in the NumPy backend against the naive loops of tests/reference.py,
every attribute drawn by hypothesis (stride, padding incl. asymmetric, dilation, groups, output_padding, bias);
and the oracle itself against hand-computed cases and ONNX's ReferenceEvaluator."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator
from reference import conv_nd, conv_transpose_nd, reference_run

import cnngraph as cg
from cnngraph.errors import ShapeError
from cnngraph.tolerance import assert_close

CONV = {1: cg.Conv1d, 2: cg.Conv2d, 3: cg.Conv3d}
TRANSPOSED = {1: cg.ConvTranspose1d, 2: cg.ConvTranspose2d, 3: cg.ConvTranspose3d}


def ints(draw, dims, low, high):
    return tuple(draw(st.integers(low, high)) for _ in range(dims))


@st.composite
def channels(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = groups > 1 and draw(st.booleans())
    cin = groups if depthwise else groups * draw(st.integers(1, 2))
    return cin, groups * draw(st.integers(1, 2)), groups


@st.composite
def conv_cases(draw):
    dims = draw(st.sampled_from([1, 3]))
    cin, cout, groups = draw(channels())
    kernel, dilation = ints(draw, dims, 1, 3), ints(draw, dims, 1, 2)
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid", "asymmetric"]))
    padding = {"int": st.integers(0, 2), "tuple": st.tuples(*[st.integers(0, 2)] * dims), "same": st.just("same"),
               "valid": st.just("valid"), "asymmetric": st.tuples(*[st.integers(0, 2)] * (2 * dims))}[kind]
    stride = (1,) * dims if kind == "same" else ints(draw, dims, 1, 3)
    layer = CONV[dims](cin, cout, kernel, stride, draw(padding), dilation, groups, bias=draw(st.booleans()))
    pads = layer.attrs["pads"]
    size = tuple(max(1, (k - 1) * d + 1 - pads[i] - pads[dims + i]) + draw(st.integers(0, 3))
                 for i, (k, d) in enumerate(zip(kernel, dilation)))
    return layer, (draw(st.integers(1, 2)), cin, *size), draw(st.integers(0, 2**32 - 1))


@st.composite
def transposed_cases(draw):
    dims = draw(st.sampled_from([1, 2, 3]))
    cin, cout, groups = draw(channels())
    kernel, stride, dilation = ints(draw, dims, 1, 3), ints(draw, dims, 1, 3), ints(draw, dims, 1, 2)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = ints(draw, dims, 1, 3)
    # pads that leave at least one output row per axis, begins and ends apart (ONNX allows asymmetric ones)
    full = [(n - 1) * s + (k - 1) * d + 1 + p for n, s, k, d, p in zip(size, stride, kernel, dilation, output_padding)]
    begins = tuple(draw(st.integers(0, min(2, f - 1))) for f in full)
    ends = tuple(draw(st.integers(0, min(2, f - 1 - b))) for f, b in zip(full, begins))
    layer = TRANSPOSED[dims](cin, cout, kernel, stride, begins + ends, output_padding, groups,
                             bias=draw(st.booleans()), dilation=dilation)
    return layer, (draw(st.integers(1, 2)), cin, *size), draw(st.integers(0, 2**32 - 1))


def run_against_reference(layer, shape, seed):
    rng = np.random.default_rng(seed)
    layer.weight = randn(rng, layer.weight.shape)
    if layer.attrs["bias"]:
        layer.bias = randn(rng, layer.bias.shape)
    graph = cg.Graph("one")
    graph.output(graph.apply(layer, graph.input("x", (None, *shape[1:]))))
    x = randn(rng, shape)
    out = cg.run(graph, x)
    assert_close(out, reference_run(graph, x), layer.op)
    return out


@examples(150)
@given(conv_cases())
def test_conv_nd_matches_reference(case):
    layer, shape, seed = case
    out = run_against_reference(layer, shape, seed)
    if layer.attrs["pads"] and layer.attrs["stride"] == (1,) * (len(shape) - 2) and shape[2:] == out.shape[2:]:
        assert out.shape[1] == layer.attrs["out_channels"]


@examples(150)
@given(transposed_cases())
def test_conv_transpose_matches_reference(case):
    run_against_reference(*case)


def test_padding_same_keeps_the_size_with_an_even_kernel():
    out = run_against_reference(cg.Conv3d(2, 2, (2, 3, 4), padding="same", dilation=(1, 2, 1)), (1, 2, 5, 4, 6), 0)
    assert out.shape == (1, 2, 5, 4, 6)


def test_reference_hand_cases():
    x = np.arange(1.0, 5.0).reshape(1, 1, 4)                      # [1 2 3 4]
    assert np.array_equal(conv_nd(x, np.ones((1, 1, 2)), None, (1,), (0, 0), (1,), 1)[0, 0], [3, 5, 7])
    assert np.array_equal(conv_nd(x, np.ones((1, 1, 2)), None, (2,), (1, 0), (1,), 1)[0, 0], [1, 5])
    # stride 2, kernel [1 10]: each input pixel writes x, 10·x two apart; output_padding adds a zero row
    y = conv_transpose_nd(x[:, :, :2], np.array([[[1.0, 10.0]]]), None, (2,), (0, 0), (1,), (1,), 1)
    assert np.array_equal(y[0, 0], [1, 10, 2, 20, 0])
    y = conv_transpose_nd(x[:, :, :2], np.array([[[1.0, 10.0]]]), np.array([0.5]), (1,), (1, 0), (0,), (1,), 1)
    assert np.array_equal(y[0, 0], [10 + 2 + 0.5, 20 + 0.5])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_reference_agrees_with_onnx_evaluator(dims):
    """The oracle against ONNX's own ConvTranspose and Conv (asymmetric pads, dilation; groups for Conv only:
    onnx 1.23's evaluator cannot run a grouped ConvTranspose, it reshapes the weight as if group were 1)."""
    rng = np.random.default_rng(dims)
    x = rng.standard_normal((2, 4, *(3, 4, 2)[:dims]))
    weight = rng.standard_normal((4, 3, *(2, 3, 2)[:dims]))          # group 1: (in, out, k...)
    stride, dilation = (2, 1, 3)[:dims], (1, 2, 1)[:dims]
    pads, output_padding = (1, 0, 0)[:dims] + (0, 1, 1)[:dims], (1, 0, 2)[:dims]
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=stride, dilations=dilation, pads=pads,
                            output_padding=output_padding)
    expected = ReferenceEvaluator(node).run(None, {"x": x, "w": weight})[0]
    assert_close(conv_transpose_nd(x, weight, None, stride, pads, output_padding, dilation, 1), expected)
    conv_w = rng.standard_normal((6, 2, *(2, 3, 2)[:dims]))
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=stride, dilations=dilation, pads=pads, group=2)
    expected = ReferenceEvaluator(node).run(None, {"x": x, "w": conv_w})[0]
    assert_close(conv_nd(x, conv_w, None, stride, pads, dilation, 2), expected)


def test_layers_follow_pytorch():
    layer = cg.ConvTranspose2d(4, 6, (2, 3), 2, 1, 1, groups=2)
    assert layer.weight.shape == (4, 3, 2, 3) and layer.attrs["output_padding"] == (1, 1)
    assert cg.Conv1d(4, 6, 3, groups=2, bias=False).weight.shape == (6, 2, 3)
    assert cg.Conv3d(2, 4, 3, padding="same").attrs["pads"] == (1,) * 6
    with pytest.raises(ValueError, match="output_padding"):
        cg.ConvTranspose1d(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding_mode"):
        cg.Conv1d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="strided"):
        cg.Conv1d(1, 1, 3, stride=2, padding="same")
    graph = cg.Graph("bad")
    with pytest.raises(ShapeError, match=r"conv.*3-D input"):
        graph.apply(cg.Conv1d(2, 2, 3), graph.input("x", (None, 2, 4, 4)))
    with pytest.raises(ShapeError, match="removes the whole output"):
        graph.apply(cg.ConvTranspose1d(2, 2, 1, padding=1), graph.input("y", (None, 2, 1)))


def test_costs():
    graph = cg.Graph("cost")
    conv = graph.apply(cg.Conv1d(4, 6, 3, groups=2), graph.input("x", (None, 4, 5)))
    assert graph.macs() == 6 * 3 * (2 * 3)                          # out pixels · (in/groups) · taps
    graph.apply(cg.ConvTranspose1d(6, 4, 3, stride=2, groups=2), conv)
    assert graph.macs() == 6 * 3 * (2 * 3) + 6 * 3 * (2 * 3)        # in pixels · (out/groups) · taps
