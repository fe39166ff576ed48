"""The NumPy backend against the naive reference in tests/reference.py.

1. The oracle itself: hand-computed tiny cases, then ONNX's own reference implementation
   (onnx.reference.ReferenceEvaluator) for Conv, MaxPool and AveragePool.
2. Every op, as hypothesis property tests: cg.run == reference_run within cnngraph.tolerance.
3. Small multi-layer graphs (shared values, residuals, several outputs, intermediate outputs).
4. The run contract: batch sizes, refused inputs (cg.InputError naming the input), dtype conversion,
   inputs left untouched, results not overwritten by the next run (buffers are reused internally).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import avg_pool2d, conv2d, max_pool2d, reference_run

import cnngraph as cg
from cnngraph.tolerance import assert_close

seeds = st.integers(0, 2**32 - 1)


def check(graph, *arrays):
    """cg.run against reference_run, output by output; returns the backend's outputs as a tuple."""
    actual = cg.run(graph, *arrays)
    expected = reference_run(graph, *arrays)
    if len(graph.outputs) == 1:
        actual, expected = (actual,), (expected,)
    assert isinstance(actual, tuple) and len(actual) == len(graph.outputs)
    for name, a, e in zip(graph.outputs, actual, expected):
        assert_close(a, e, what=name)
    return actual


def single_layer_graph(layer, input_shape, name="x"):
    g = cg.Graph("single")
    g.output(g.apply(layer, g.input(name, input_shape)))
    return g


# =============================================================================================================
# 1. The oracle
# =============================================================================================================
X3 = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)       # [[1 2 3] [4 5 6] [7 8 9]]


def test_reference_conv_hand_cases():
    ones2 = np.ones((1, 1, 2, 2))
    assert np.array_equal(conv2d(X3, ones2, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)[0, 0], [[12, 16], [24, 28]])
    # 3×3 ones, padding 1: corner sees 1+2+4+5, centre sees everything, edge (0, 1) sees 1+2+3+4+5+6
    out = conv2d(X3, np.ones((1, 1, 3, 3)), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)[0, 0]
    assert out[0, 0] == 12 and out[1, 1] == 45 and out[0, 1] == 21 and out[2, 2] == 5 + 6 + 8 + 9
    # identity kernel with padding 1 reproduces the input; a bias is added everywhere
    centre = np.zeros((1, 1, 3, 3))
    centre[0, 0, 1, 1] = 1
    assert np.array_equal(conv2d(X3, centre, np.array([0.5]), (1, 1), (1, 1, 1, 1), (1, 1), 1), X3 + 0.5)
    # dilation 2: a 2×2 kernel touches the four corners
    assert conv2d(X3, ones2, None, (1, 1), (0, 0, 0, 0), (2, 2), 1)[0, 0, 0, 0] == 1 + 3 + 7 + 9
    # stride 2 with padding 1 and a 2×2 kernel: windows at rows/cols -1 and 1
    out = conv2d(X3, ones2, None, (2, 2), (1, 1, 1, 1), (1, 1), 1)[0, 0]
    assert np.array_equal(out, [[1, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]])
    # asymmetric pads (top 1, left 0, bottom 0, right 2) with a 1×1 kernel: just shifts the zero border
    out = conv2d(X3, np.ones((1, 1, 1, 1)), None, (1, 1), (1, 0, 0, 2), (1, 1), 1)[0, 0]
    assert out.shape == (4, 5) and np.array_equal(out[1:, :3], X3[0, 0]) and out[0].sum() == 0 and out[:, 3:].sum() == 0
    # groups=2: each output channel sees only its own group
    x2 = np.stack([X3[0, 0], 10 * X3[0, 0]])[None]
    w = np.array([2.0, 3.0]).reshape(2, 1, 1, 1)
    assert np.array_equal(conv2d(x2, w, None, (1, 1), (0,) * 4, (1, 1), 2), x2 * np.array([2, 3]).reshape(1, 2, 1, 1))
    # groups=1 with 2 input channels sums them
    w = np.ones((1, 2, 1, 1))
    assert np.array_equal(conv2d(x2, w, None, (1, 1), (0,) * 4, (1, 1), 1)[0, 0], 11 * X3[0, 0])


def test_reference_pool_hand_cases():
    row = np.arange(1, 6, dtype=np.float64).reshape(1, 1, 1, 5)    # [1 2 3 4 5]
    # pytorch #71549: input 5, kernel 2, stride 2, padding 1, ceil_mode -> 3 windows (start -1, 1, 3); the
    # 4th would start at 5, inside the right padding, and is dropped
    out = max_pool2d(row, (1, 2), (1, 2), (0, 1, 0, 1), (1, 1), True)
    assert np.array_equal(out[0, 0, 0], [1, 3, 5])
    # ceil_mode adding a partial window that does start inside the input: [1 2][3 4][5]
    assert np.array_equal(max_pool2d(row, (1, 2), (1, 2), (0,) * 4, (1, 1), True)[0, 0, 0], [2, 4, 5])
    assert np.array_equal(max_pool2d(row, (1, 2), (1, 2), (0,) * 4, (1, 1), False)[0, 0, 0], [2, 4])
    assert np.array_equal(avg_pool2d(row, (1, 2), (1, 2), (0,) * 4, True, True)[0, 0, 0], [1.5, 3.5, 5])
    # padding is -inf for max pooling: an all-negative row keeps its values at the border
    assert np.array_equal(max_pool2d(-row, (1, 3), (1, 1), (0, 1, 0, 1), (1, 1), False)[0, 0, 0], [-1, -1, -2, -3, -4])
    # dilation 2: the window {i, i+2}
    assert np.array_equal(max_pool2d(row, (1, 2), (1, 1), (0,) * 4, (1, 2), False)[0, 0, 0], [3, 4, 5])

    ones3 = np.ones((1, 1, 3, 3))
    # 3×3 average with padding 1 on a 3×3 input of ones: divisors at the corner, edge and centre
    with_pad = avg_pool2d(ones3, (3, 3), (1, 1), (1, 1, 1, 1), False, True)[0, 0]
    assert np.allclose(with_pad, [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]])
    assert np.array_equal(avg_pool2d(ones3, (3, 3), (1, 1), (1, 1, 1, 1), False, False)[0, 0], np.ones((3, 3)))
    # ceil_mode + count_include_pad (PyTorch): 4×4 ones, kernel 3, stride 2, padding 1 -> 3×3. The last window
    # (rows 3..5) is clipped to the padded input (rows 3..4): divisor 2 per axis, one real element -> 1/4.
    ones4 = np.ones((1, 1, 4, 4))
    out = avg_pool2d(ones4, (3, 3), (2, 2), (1, 1, 1, 1), True, True)[0, 0]
    assert np.allclose(out, [[4 / 9, 6 / 9, 2 / 6], [6 / 9, 1, 3 / 6], [2 / 6, 3 / 6, 1 / 4]])
    out = avg_pool2d(ones4, (3, 3), (2, 2), (1, 1, 1, 1), True, False)[0, 0]
    assert np.array_equal(out, np.ones((3, 3)))
    # a non-constant input at that corner: only x[3, 3] is real
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    assert avg_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1), True, True)[0, 0, 2, 2] == 15 / 4
    assert avg_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1), True, False)[0, 0, 2, 2] == 15


def test_reference_small_ops():
    g = cg.Graph("ops")
    x = g.input("x", (None, 2, 1, 2))
    outs = [g.apply(layer, x) for layer in (cg.ReLU(), cg.LeakyReLU(0.5), cg.ReLU6(), cg.Sigmoid(), cg.Tanh(),
                                            cg.Softmax(1), cg.GlobalAvgPool2d(), cg.Flatten())]
    g.output(*outs)
    data = np.array([[[[-2.0, 8.0]], [[0.0, 1.0]]]], dtype=np.float32)
    relu, lrelu, relu6, sig, tanh, soft, gap, flat = reference_run(g, data)
    assert np.array_equal(relu.ravel(), [0, 8, 0, 1]) and np.array_equal(lrelu.ravel(), [-1, 8, 0, 1])
    assert np.array_equal(relu6.ravel(), [0, 6, 0, 1]) and sig[0, 1, 0, 0] == 0.5 and tanh[0, 1, 0, 0] == 0
    assert np.allclose(soft[0, :, 0, 0], np.exp([-2, 0]) / np.exp([-2, 0]).sum())
    assert np.array_equal(gap.ravel(), [3, 0.5]) and np.array_equal(flat, [[-2, 8, 0, 1]])


def test_tolerance_is_not_disarmed_by_infinities_or_nans():
    """assert_close judges every comparison in this file: an inf or a nan among the expected values must not
    let every other element pass (the atol scale is max|expected|, which becomes inf or nan)."""
    with pytest.raises(AssertionError):
        assert_close(np.array([np.inf, 5.0]), np.array([np.inf, 1.0]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan, 5.0]), np.array([np.nan, 1.0]))
    with pytest.raises(AssertionError):
        assert_close(np.array([np.inf, 1.0]), np.array([1.0, 1.0]))
    assert_close(np.array([-np.inf, 1.0 + 1e-6]), np.array([-np.inf, 1.0]))
    assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))


# --- ONNX's reference implementation as a second opinion --------------------------------------------------
def onnx_reference(op, x, initializers=(), **attrs):
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    names = ["X"] + [f"P{i}" for i in range(len(initializers))]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["Y"], **attrs)], "oracle",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, list(x.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)],
        [helper.make_tensor(n, TensorProto.DOUBLE, a.shape, a.ravel()) for n, a in zip(names[1:], initializers)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    return ReferenceEvaluator(model).run(None, {"X": x})[0]


@st.composite
def onnx_conv_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))           # (top, left, bottom, right), asymmetric
    sizes = [draw(st.integers(max(1, (kernel[i] - 1) * dilation[i] + 1 - pads[i] - pads[i + 2]), 7))
             for i in range(2)]
    return dict(groups=groups, cin=cin, cout=cout, kernel=kernel, stride=stride, dilation=dilation, pads=pads,
                sizes=sizes, seed=draw(seeds))


@examples(150)
@given(onnx_conv_cases())
def test_reference_conv_matches_onnx(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((2, case["cin"], *case["sizes"]))
    w = rng.standard_normal((case["cout"], case["cin"] // case["groups"], *case["kernel"]))
    b = rng.standard_normal(case["cout"])
    expected = onnx_reference("Conv", x, [w, b], kernel_shape=list(case["kernel"]), strides=list(case["stride"]),
                              dilations=list(case["dilation"]), pads=list(case["pads"]), group=case["groups"])
    ours = conv2d(x, w, b, case["stride"], case["pads"], case["dilation"], case["groups"])
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)


@st.composite
def onnx_pool_cases(draw, op):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if op == "max" else (1, 1)
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    limits = [((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation)]
    pad = [draw(st.integers(0, lim)) for lim in limits]
    ceil_mode = draw(st.booleans())
    if op == "max" and stride == (1, 1) and dilation == (1, 1):
        # onnx 1.23's ReferenceEvaluator sends this MaxPool case to an older pooling helper that reads 2-D pads as
        # (top, bottom, left, right) and adds the pads twice under ceil_mode (a no-op at stride 1 anyway):
        # compare only where that is harmless, equal pads and no ceil_mode.
        pad, ceil_mode = [min(pad)] * 2, False
    # at least `dilation` pixels, so that no window lies entirely in the padding (see test_max_pool_all_padding)
    sizes = [draw(st.integers(max(dilation[i], (kernel[i] - 1) * dilation[i] + 1 - 2 * pad[i]), 7)) for i in range(2)]
    return dict(kernel=kernel, stride=stride, dilation=dilation, pads=(pad[0], pad[1], pad[0], pad[1]), sizes=sizes,
                ceil_mode=ceil_mode, count_include_pad=draw(st.booleans()), seed=draw(seeds))


@examples(200)
@given(onnx_pool_cases("max"))
def test_reference_max_pool_matches_onnx(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((2, 2, *case["sizes"]))
    expected = onnx_reference("MaxPool", x, kernel_shape=list(case["kernel"]), strides=list(case["stride"]),
                              dilations=list(case["dilation"]), pads=list(case["pads"]),
                              ceil_mode=int(case["ceil_mode"]))
    ours = max_pool2d(x, case["kernel"], case["stride"], case["pads"], case["dilation"], case["ceil_mode"])
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@examples(300)
@given(onnx_pool_cases("avg"))
def test_reference_avg_pool_matches_onnx(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((2, 2, *case["sizes"]))
    kernel, stride, pads, ceil, cip = case["kernel"], case["stride"], case["pads"], case["ceil_mode"], \
        case["count_include_pad"]
    ours = avg_pool2d(x, kernel, stride, pads, ceil, cip)
    # With ceil_mode the last window may reach past the padded input by `extra` positions. PyTorch clips that
    # window to the padded input (divisor included); ONNX's evaluator instead pads by `extra` more, split
    # extra//2 before and the rest after (shifting every window when extra >= 2) and, with count_include_pad=1,
    # counts those positions in the divisor (the PyTorch/ONNX ceil_mode difference, pytorch #183528). Compare
    # where the two definitions coincide: extra == 0, or extra == 1 with count_include_pad=0.
    extra = [(ours.shape[2 + i] - 1) * stride[i] + kernel[i] - case["sizes"][i] - pads[i] - pads[i + 2]
             for i in range(2)]
    if max(extra) > (0 if cip else 1):
        return
    expected = onnx_reference("AveragePool", x, kernel_shape=list(kernel), strides=list(stride), pads=list(pads),
                              ceil_mode=int(ceil), count_include_pad=int(cip))
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


# =============================================================================================================
# 2. Every op: the backend against the reference
# =============================================================================================================
@st.composite
def conv_cases(draw):
    mode = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if mode == "dense":
        groups, cin, cout = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif mode == "grouped":
        groups = draw(st.integers(2, 3))
        cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    else:                                               # depthwise: groups == in_channels, out = k·in
        cin = draw(st.integers(1, 4))
        groups, cout = cin, cin * draw(st.integers(1, 2))

    def int_or_pair(lo, hi):
        return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))
    padding_kind = draw(st.sampled_from(["int", "pair", "same", "valid", "asymmetric"]))
    padding = {"int": st.integers(0, 2), "pair": st.tuples(st.integers(0, 2), st.integers(0, 2)),
               "same": st.just("same"), "valid": st.just("valid"),
               "asymmetric": st.tuples(*[st.integers(0, 3)] * 4)}[padding_kind]
    return dict(cin=cin, cout=cout, groups=groups, kernel_size=draw(int_or_pair(1, 4)),
                stride=1 if padding_kind == "same" else draw(int_or_pair(1, 3)), dilation=draw(int_or_pair(1, 2)),
                padding=draw(padding), asymmetric=padding_kind == "asymmetric", bias=draw(st.booleans()),
                batch=draw(st.integers(1, 3)), extra=(draw(st.integers(0, 4)), draw(st.integers(0, 4))),
                seed=draw(seeds))


def build_conv(case):
    rng = np.random.default_rng(case["seed"])
    layer = cg.Conv2d(case["cin"], case["cout"], case["kernel_size"], stride=case["stride"],
                      padding=0 if case["asymmetric"] else case["padding"], dilation=case["dilation"],
                      groups=case["groups"], bias=case["bias"])
    layer.weight = randn(rng, layer.weight.shape)
    if case["bias"]:
        layer.bias = randn(rng, layer.bias.shape)
    attrs = dict(layer.attrs, pads=tuple(case["padding"])) if case["asymmetric"] else layer.attrs
    (kh, kw), (dh, dw), pads = attrs["kernel_size"], attrs["dilation"], attrs["pads"]
    # the smallest input the kernel fits, plus a few odd or even extra pixels
    h = max(1, (kh - 1) * dh + 1 - pads[0] - pads[2]) + case["extra"][0]
    w = max(1, (kw - 1) * dw + 1 - pads[1] - pads[3]) + case["extra"][1]
    g = cg.Graph("conv")
    x = g.input("x", (None, case["cin"], h, w))
    g.output(g.add("Conv2d", [x], attrs, layer.params, name="conv"))
    return g, randn(rng, (case["batch"], case["cin"], h, w))


@examples(500)
@given(conv_cases())
def test_conv2d(case):
    g, x = build_conv(case)
    out, = check(g, x)
    if case["padding"] == "same":
        assert out.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("kernel, dilation", [(2, 1), (4, 1), (2, 3), ((2, 3), (1, 2))])
def test_conv2d_same_padding_with_even_kernel(kernel, dilation):
    """'same' with an even span pads one more on the bottom/right, as PyTorch does."""
    rng = np.random.default_rng(0)
    layer = cg.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    g = single_layer_graph(layer, (None, 2, 7, 6))
    out, = check(g, randn(rng, (2, 2, 7, 6)))
    assert out.shape == (2, 3, 7, 6)


@st.composite
def pool_cases(draw):
    op = draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if op == "MaxPool2d" else (1, 1)
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    limits = [((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation)]
    padding = (draw(st.integers(0, limits[0])), draw(st.integers(0, limits[1])))
    if padding[0] == padding[1] and draw(st.booleans()):
        padding = padding[0]
    return dict(op=op, kernel_size=kernel if kernel[0] != kernel[1] else kernel[0], stride=stride, padding=padding,
                dilation=dilation, ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                channels=draw(st.integers(1, 3)), batch=draw(st.integers(1, 3)),
                extra=(draw(st.integers(0, 5)), draw(st.integers(0, 5))), seed=draw(seeds))


def build_pool(case):
    if case["op"] == "MaxPool2d":
        layer = cg.MaxPool2d(case["kernel_size"], case["stride"], case["padding"], case["dilation"],
                             ceil_mode=case["ceil_mode"])
    else:
        layer = cg.AvgPool2d(case["kernel_size"], case["stride"], case["padding"], ceil_mode=case["ceil_mode"],
                             count_include_pad=case["count_include_pad"])
    (kh, kw), (dh, dw), pads = layer.attrs["kernel_size"], layer.attrs["dilation"], layer.attrs["pads"]
    # at least `dilation` pixels, so that no window lies entirely in the padding (see test_max_pool_all_padding)
    h = max(dh, (kh - 1) * dh + 1 - pads[0] - pads[2]) + case["extra"][0]
    w = max(dw, (kw - 1) * dw + 1 - pads[1] - pads[3]) + case["extra"][1]
    g = single_layer_graph(layer, (None, case["channels"], h, w))
    x = randn(np.random.default_rng(case["seed"]), (case["batch"], case["channels"], h, w))
    return g, x


@examples(500)
@given(pool_cases())
def test_pooling(case):
    check(*build_pool(case))


POOL_CORNERS = [
    # (layer, input H×W): ceil_mode windows that would start in the right padding are dropped
    (lambda: cg.MaxPool2d(2, 2, 1, ceil_mode=True), (5, 5)),                       # pytorch #71549: 3, not 4
    (lambda: cg.AvgPool2d(2, 2, 1, ceil_mode=True), (5, 5)),
    (lambda: cg.AvgPool2d(2, 2, 1, ceil_mode=True, count_include_pad=False), (5, 5)),
    (lambda: cg.AvgPool2d(3, 2, 1, ceil_mode=True), (4, 4)),                       # corner divisor 2×2
    (lambda: cg.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (4, 4)),
    (lambda: cg.AvgPool2d(3, 2, 0, ceil_mode=True), (6, 7)),                       # window past the input
    (lambda: cg.AvgPool2d((3, 2), (2, 3), (1, 0), ceil_mode=True), (6, 7)),
    (lambda: cg.MaxPool2d(3, 2, ceil_mode=True), (8, 9)),
    (lambda: cg.MaxPool2d(3, 3, 1, dilation=2, ceil_mode=True), (7, 8)),
    (lambda: cg.MaxPool2d(2, 1, 1), (3, 3)),
    (lambda: cg.AvgPool2d(1, 2, ceil_mode=True), (5, 4)),
]


@pytest.mark.parametrize("make, size", POOL_CORNERS)
def test_pooling_ceil_mode_corners(make, size):
    g = single_layer_graph(make(), (None, 2, *size))
    check(g, randn(np.random.default_rng(1), (2, 2, *size)))


def test_max_pool_all_padding_window():
    """A dilated window can hold only padding (width 1, kernel 2, dilation 2, padding 1: positions -1 and 1).
    onnxruntime starts every maximum at the lowest float32 and returns that there (PyTorch returns -inf); we
    match onnxruntime, the runtime our exports run on. Compared exactly."""
    g = single_layer_graph(cg.MaxPool2d((1, 2), 1, (0, 1), dilation=(1, 2)), (None, 2, 3, 1))
    x = randn(np.random.default_rng(22), (2, 2, 3, 1))
    expected = cg.run(g, x, backend="onnxruntime")
    assert expected.shape == (2, 2, 3, 1) and np.all(expected == np.finfo(np.float32).min)
    assert np.array_equal(cg.run(g, x), expected)


@pytest.mark.parametrize("op", ["MaxPool2d", "AvgPool2d"])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("pads", [(1, 0, 0, 1), (0, 1, 1, 0), (1, 1, 0, 0), (2, 0, 1, 2)])
def test_pooling_asymmetric_pads(op, count_include_pad, pads):
    """Asymmetric pool pads (as ONNX files have them), without ceil_mode; AvgPool's count_include_pad divisor
    counts the pads actually present on each side."""
    if op == "MaxPool2d" and not count_include_pad:
        pytest.skip("count_include_pad is an AvgPool2d attribute")
    layer = cg.MaxPool2d(3, 2, 1) if op == "MaxPool2d" else cg.AvgPool2d(3, 2, 1,
                                                                           count_include_pad=count_include_pad)
    g = cg.Graph("asym")
    x = g.input("x", (None, 2, 6, 7))
    g.output(g.add(op, [x], dict(layer.attrs, pads=pads), name="pool"))
    check(g, randn(np.random.default_rng(2), (2, 2, 6, 7)))


@examples(80)
@given(st.integers(1, 8), st.integers(1, 6), st.booleans(), st.sampled_from([None, 1, 3]), st.sampled_from([1, 2, 3, 40]),
       seeds)
def test_linear(in_features, out_features, bias, steps, batch, seed):
    """Linear over the last axis of a 2-D (N, in) or 3-D (N, T, in) input: one row (a matrix-vector product), a
    few rows (W @ xᵀ, gemm.SKINNY_ROWS) and many (x @ Wᵀ)."""
    rng = np.random.default_rng(seed)
    layer = cg.Linear(in_features, out_features, bias=bias)
    layer.weight = randn(rng, (out_features, in_features))
    if bias:
        layer.bias = randn(rng, (out_features,))
    shape = (batch, in_features) if steps is None else (batch, steps, in_features)
    g = single_layer_graph(layer, (None, *shape[1:]))
    check(g, randn(rng, shape))


@examples(60)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.sampled_from([1e-5, 1e-3, 0.5]), st.integers(1, 3),
       seeds)
def test_batch_norm(channels, h, w, eps, batch, seed):
    rng = np.random.default_rng(seed)
    layer = cg.BatchNorm2d(channels, eps=eps)
    layer.weight = randn(rng, (channels,))
    layer.bias = randn(rng, (channels,))
    layer.running_mean = randn(rng, (channels,))
    layer.running_var = rng.uniform(0.05, 3.0, channels).astype(np.float32)
    g = single_layer_graph(layer, (None, channels, h, w))
    check(g, randn(rng, (batch, channels, h, w), scale=2.0))


ACTIVATIONS = {op: (lambda cls=cls: cls.example()[0]) for op, cls in cg.REGISTRY.items() if cls.fusable_activation}
ACTIVATIONS["LeakyReLU(0.3)"] = lambda: cg.LeakyReLU(0.3)


@pytest.mark.parametrize("make", ACTIVATIONS.values(), ids=list(ACTIVATIONS))
@examples(25)
@given(shape=st.sampled_from([(2, 3), (1, 2, 3, 4), (3, 1, 5, 2)]), scale=st.sampled_from([0.1, 1.0, 10.0, 60.0]),
       seed=seeds)
def test_activations(make, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, scale)
    x.flat[0] = 0.0                                   # the kink of ReLU-like functions
    g = single_layer_graph(make(), (None, *shape[1:]))
    check(g, x)


@examples(80)
@given(st.sampled_from([(2, 5), (2, 3, 4), (2, 3, 2, 4), (1, 4, 1, 1)]), st.data(), st.sampled_from([1.0, 30.0]),
       seeds)
def test_softmax(shape, data, scale, seed):
    """Every axis, and large logits (a softmax that does not subtract the maximum overflows in float32)."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    g = single_layer_graph(cg.Softmax(axis), (None, *shape[1:]))
    check(g, randn(np.random.default_rng(seed), shape, scale))


@examples(60)
@given(st.sampled_from([(2, 3), (2, 3, 4), (2, 3, 2, 4), (1, 1, 3, 1)]), st.data(), seeds)
def test_flatten(shape, data, seed):
    rank = len(shape)
    start = data.draw(st.integers(-rank, rank - 1))
    end = data.draw(st.integers(start % rank, rank - 1))
    end = data.draw(st.sampled_from([end, end - rank]))
    g = single_layer_graph(cg.Flatten(start, end), (None, *shape[1:]))
    out, = check(g, randn(np.random.default_rng(seed), shape))
    assert out.shape == reference_run(g, np.zeros(shape, np.float32)).shape


@pytest.mark.parametrize("count", [2, 3])
def test_add(count):
    rng = np.random.default_rng(count)
    g = cg.Graph("add")
    xs = [g.input(f"x{i}", (None, 3, 4, 5)) for i in range(count)]
    g.output(g.apply(cg.Add(), *xs))
    check(g, *[randn(rng, (2, 3, 4, 5)) for _ in range(count)])


def test_add_same_value_twice():
    g = cg.Graph("double")
    x = g.input("x", (None, 3, 4, 4))
    y = g.apply(cg.ReLU(), x)
    g.output(g.apply(cg.Add(), y, y), g.apply(cg.Add(), x, x, y))
    check(g, randn(np.random.default_rng(3), (2, 3, 4, 4)))


@examples(50)
@given(st.integers(-4, 3), st.lists(st.integers(1, 3), min_size=1, max_size=3), seeds)
def test_concat(axis, sizes, seed):
    rng = np.random.default_rng(seed)
    base = [2, 3, 4, 5]
    shapes = []
    for size in sizes:
        shape = list(base)
        shape[axis] = size
        shapes.append(tuple(shape))
    g = cg.Graph("concat")
    xs = [g.input(f"x{i}", (None, *s[1:]) if axis % 4 != 0 else s) for i, s in enumerate(shapes)]
    g.output(g.apply(cg.Concat(axis), *xs))
    check(g, *[randn(rng, s) for s in shapes])


def test_concat_of_the_same_value_and_of_layers():
    g = cg.Graph("concat2")
    x = g.input("x", (None, 2, 3, 3))
    a = g.apply(cg.Conv2d(2, 3, 1), x)
    g.output(g.apply(cg.Concat(1), x, a, x), g.apply(cg.Concat(-1), a, a))
    check(g, randn(np.random.default_rng(4), (3, 2, 3, 3)))


@pytest.mark.parametrize("make", [lambda: cg.GlobalAvgPool2d(), lambda: cg.Identity(), lambda: cg.Dropout(0.3)],
                         ids=["gap", "identity", "dropout"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 7, 1)])
def test_simple_layers(make, shape):
    g = single_layer_graph(make(), (None, *shape[1:]))
    check(g, randn(np.random.default_rng(5), shape))


@pytest.mark.parametrize("op", sorted(cg.REGISTRY))
@pytest.mark.parametrize("batch", [1, 3])
def test_every_op_on_its_example(op, batch):
    """Every registered op, as its layer's example (Layer.example), at two batch sizes."""
    layer, shapes = cg.REGISTRY[op].example()
    g = cg.Graph("example")
    g.output(g.apply(layer, *(g.input(f"x{i}", shape) for i, shape in enumerate(shapes))))
    rng = np.random.default_rng(6)
    check(g, *(randn(rng, [d if isinstance(d, int) else batch for d in shape], 2.0) for shape in shapes))


# =============================================================================================================
# 3. Small graphs
# =============================================================================================================
def lenet_like(rng):
    g = cg.Graph("lenet")
    x = g.input("x", (None, 2, 12, 12))
    conv = cg.Conv2d(2, 4, 3, padding=1)
    bn = cg.BatchNorm2d(4)
    bn.running_mean = randn(rng, (4,))
    bn.running_var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    bn.weight = randn(rng, (4,))
    y = g.apply(cg.Sequential(conv, bn, cg.ReLU(), cg.MaxPool2d(2), cg.Flatten(), cg.Linear(4 * 6 * 6, 5)), x)
    g.output(y)
    return g


def residual_block(rng):
    g = cg.Graph("residual")
    x = g.input("x", (None, 4, 6, 6))
    branch = cg.Sequential(cg.Conv2d(4, 4, 3, padding=1, bias=False), cg.BatchNorm2d(4), cg.ReLU(),
                           cg.Conv2d(4, 4, 3, padding="same", bias=False), cg.BatchNorm2d(4))
    for layer in branch:
        if isinstance(layer, cg.BatchNorm2d):
            layer.running_mean = randn(rng, (4,))
            layer.running_var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    y = g.apply(cg.ReLU(), g.apply(cg.Add(), g.apply(branch, x), x))
    g.output(y)
    return g


def random_graph(rng, steps):
    """A random small DAG of conv / bn / activation / pool / add / concat layers, maybe with a linear head and
    an extra output taken from the middle. Layers that do not fit are skipped (a refused apply changes nothing)."""
    g = cg.Graph("random")
    channels, size = int(rng.integers(1, 5)), (int(rng.integers(4, 10)), int(rng.integers(4, 10)))
    values = [g.input("x", (None, channels, *size))]
    for _ in range(steps):
        cur = values[-1] if rng.random() < 0.7 else values[int(rng.integers(len(values)))]
        c = g.type_of(cur).shape[1]
        kind = rng.choice(["conv", "conv", "bn", "act", "pool", "add", "concat"])
        try:
            if kind == "conv":
                groups = int(rng.choice([d for d in (1, 2, c) if c % d == 0]))
                layer = cg.Conv2d(c, groups * int(rng.integers(1, 3)), int(rng.integers(1, 4)),
                                  stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
                                  dilation=int(rng.integers(1, 3)), groups=groups, bias=bool(rng.random() < 0.5))
                layer.weight = randn(rng, layer.weight.shape)
            elif kind == "bn":
                layer = cg.BatchNorm2d(c)
                layer.running_mean = randn(rng, (c,))
                layer.running_var = rng.uniform(0.2, 2.0, c).astype(np.float32)
                layer.weight = randn(rng, (c,))
            elif kind == "act":
                layer = [cg.ReLU, cg.ReLU6, cg.Sigmoid, cg.Tanh, lambda: cg.LeakyReLU(0.2),
                         lambda: cg.Softmax(1), cg.Identity, cg.Dropout][int(rng.integers(8))]()
            elif kind == "pool":
                k = int(rng.integers(1, 4))
                pool = cg.MaxPool2d if rng.random() < 0.5 else cg.AvgPool2d
                layer = pool(k, int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1)),
                             ceil_mode=bool(rng.random() < 0.5))
            elif kind == "add":
                same = [v for v in values if g.type_of(v).shape == g.type_of(cur).shape]
                values.append(g.apply(cg.Add(), cur, same[int(rng.integers(len(same)))]))
                continue
            else:
                shape = g.type_of(cur).shape
                fits = [v for v in values if g.type_of(v).shape[2:] == shape[2:]]
                values.append(g.apply(cg.Concat(1), cur, fits[int(rng.integers(len(fits)))]))
                continue
            values.append(g.apply(layer, cur))
        except cg.ShapeError:
            continue
    last = values[-1]
    if rng.random() < 0.5:
        c = g.type_of(last).shape[1]
        last = g.apply(cg.Sequential(cg.GlobalAvgPool2d(), cg.Flatten(), cg.Linear(c, 3)), last)
    outputs = [last]
    if len(values) > 2 and rng.random() < 0.4:
        extra = values[int(rng.integers(1, len(values) - 1))]
        if extra.name != last.name:
            outputs.append(extra)
    g.output(*outputs)
    return g, (channels, *size)


@examples(60)
@given(seeds, st.integers(1, 7), st.integers(1, 3))
def test_random_graphs(seed, steps, batch):
    rng = np.random.default_rng(seed)
    g, shape = random_graph(rng, steps)
    g.lint()
    check(g, randn(rng, (batch, *shape)))


def test_conv_bn_relu_pool_flatten_linear():
    rng = np.random.default_rng(6)
    g = lenet_like(rng)
    for batch in (1, 3):
        check(g, randn(rng, (batch, 2, 12, 12)))


def test_residual_block():
    rng = np.random.default_rng(7)
    check(residual_block(rng), randn(rng, (2, 4, 6, 6)))


def test_two_outputs_in_output_order():
    rng = np.random.default_rng(8)
    g = cg.Graph("two")
    x = g.input("x", (None, 3, 6, 6))
    features = g.apply(cg.Conv2d(3, 4, 3), x)
    pooled = g.apply(cg.GlobalAvgPool2d(), features)
    logits = g.apply(cg.Linear(4, 2), g.apply(cg.Flatten(), pooled))
    g.output(logits, features)                       # not the order the values were created in
    out = check(g, randn(rng, (2, 3, 6, 6)))
    assert out[0].shape == (2, 2) and out[1].shape == (2, 4, 4, 4)


def test_intermediate_output_is_not_clobbered_by_in_place_activation():
    """conv's output is a graph output and also feeds ReLU: an in-place ReLU (or a reused buffer) would zero
    its negative values."""
    rng = np.random.default_rng(9)
    g = cg.Graph("mid")
    x = g.input("x", (None, 2, 5, 5))
    conv = g.apply(cg.Conv2d(2, 3, 3, padding=1), x)
    relu = g.apply(cg.ReLU(), conv)
    deeper = g.apply(cg.Conv2d(3, 3, 1), relu)
    g.output(conv, deeper, relu)
    conv_out, deeper_out, relu_out = check(g, randn(rng, (2, 2, 5, 5)))
    assert (conv_out < 0).any()


def test_one_value_feeds_several_layers():
    rng = np.random.default_rng(10)
    g = cg.Graph("fanout")
    x = g.input("x", (None, 3, 7, 7))
    stem = g.apply(cg.Conv2d(3, 4, 3, padding=1), x)
    a = g.apply(cg.ReLU(), stem)                       # in-place candidates reading the same value
    b = g.apply(cg.Sigmoid(), stem)
    c = g.apply(cg.Conv2d(4, 2, 1), stem)
    d = g.apply(cg.MaxPool2d(3, 1, 1), stem)
    e = g.apply(cg.Tanh(), stem)
    g.output(g.apply(cg.Concat(1), a, b, c, d, e), g.apply(cg.Add(), stem, a))
    check(g, randn(rng, (2, 3, 7, 7)))


def test_inception_like_branches_and_two_inputs():
    rng = np.random.default_rng(11)
    g = cg.Graph("two_inputs")
    x = g.input("image", (None, 2, 8, 8))
    m = g.input("mask", (None, 3, 8, 8))
    b1 = g.apply(cg.Conv2d(2, 3, 1), x)
    b2 = g.apply(cg.Sequential(cg.Conv2d(2, 3, 3, padding=1), cg.LeakyReLU(0.1)), x)
    b3 = g.apply(cg.Sequential(cg.AvgPool2d(3, 1, 1, count_include_pad=False), cg.Conv2d(2, 3, 1)), x)
    s = g.apply(cg.Add(), b1, b2, b3, m)
    g.output(g.apply(cg.Softmax(1), s))
    check(g, randn(rng, (2, 2, 8, 8)), randn(rng, (2, 3, 8, 8)))


def test_rewired_graph_runs_in_topological_order():
    """After set_inputs a node may read a node inserted after it: execution must follow topological order,
    not insertion order (finn #61)."""
    rng = np.random.default_rng(12)
    g = cg.Graph("rewired")
    x = g.input("x", (None, 2, 4, 4))
    first = g.apply(cg.ReLU(), x, name="first")
    second = g.apply(cg.Conv2d(2, 2, 1), x, name="second")
    g.set_inputs(first, [second])
    g.output(first)
    g.lint()
    out, = check(g, randn(rng, (2, 2, 4, 4)))
    assert (out >= 0).all()


def test_edited_graph_is_recompiled():
    """The backend caches a compiled plan per graph; editing the graph must not leave a stale plan."""
    rng = np.random.default_rng(13)
    g = cg.Graph("edit")
    x = g.input("x", (None, 2, 4, 4))
    relu = g.apply(cg.ReLU(), x)
    g.output(relu)
    data = randn(rng, (2, 2, 4, 4))
    check(g, data)
    tanh = g.apply(cg.Tanh(), x)
    g.replace_all_uses_with(relu, tanh)
    g.erase(relu)
    out, = check(g, data)
    assert (out < 0).any()


# =============================================================================================================
# 4. The run contract
# =============================================================================================================
def contract_graph():
    g = cg.Graph("contract")
    x = g.input("image", (None, 3, 8, 8))
    g.output(g.apply(cg.Sequential(cg.Conv2d(3, 4, 3, padding=1), cg.ReLU(), cg.MaxPool2d(2),
                                   cg.Flatten(), cg.Linear(64, 5)), x))
    return g


@pytest.mark.parametrize("batch", [1, 5])
def test_symbolic_batch_accepts_any_batch_size(batch):
    g = contract_graph()
    out, = check(g, randn(np.random.default_rng(batch), (batch, 3, 8, 8)))
    assert out.shape == (batch, 5) and out.dtype == np.float32


def test_batch_sizes_alternate_on_one_graph():
    rng = np.random.default_rng(14)
    g = contract_graph()
    for batch in (2, 1, 5, 2):
        check(g, randn(rng, (batch, 3, 8, 8)))


def _input_error(graph, *arrays) -> str:
    with pytest.raises(cg.InputError) as info:
        cg.run(graph, *arrays)
    return str(info.value)


@pytest.mark.parametrize("shape, found", [
    ((2, 3, 8), r"2,\s*3,\s*8\)"),                     # wrong rank
    ((2, 3, 8, 8, 1), r"2,\s*3,\s*8,\s*8,\s*1"),
    ((2, 4, 8, 8), r"2,\s*4,\s*8,\s*8"),               # wrong channel count
    ((2, 3, 9, 8), r"2,\s*3,\s*9,\s*8"),               # wrong height
    ((2, 3, 8, 7), r"2,\s*3,\s*8,\s*7"),               # wrong width
])
def test_wrong_shapes_are_refused_naming_the_input(shape, found):
    message = _input_error(contract_graph(), np.zeros(shape, np.float32))
    assert "image" in message
    assert re.search(found, message), message                            # the shape found
    assert re.search(r"3,\s*8,\s*8", message), message                   # the shape expected


def test_wrong_number_of_inputs():
    g = contract_graph()
    x = np.zeros((1, 3, 8, 8), np.float32)
    for arrays in ((), (x, x)):
        message = _input_error(g, *arrays)
        assert "image" in message, message


def test_static_batch_refuses_another_batch():
    g = cg.Graph("static")
    x = g.input("image", (2, 3, 4, 4))
    g.output(g.apply(cg.ReLU(), x))
    check(g, randn(np.random.default_rng(15), (2, 3, 4, 4)))
    message = _input_error(g, np.zeros((3, 3, 4, 4), np.float32))
    assert "image" in message and re.search(r"3,\s*3,\s*4,\s*4", message)


@pytest.mark.parametrize("bad", [
    np.zeros((1, 3, 8, 8), dtype=bool),
    np.zeros((1, 3, 8, 8), dtype=np.complex64),
    np.zeros((1, 3, 8, 8), dtype=object),
    np.full((1, 3, 8, 8), "a"),
], ids=["bool", "complex", "object", "str"])
def test_non_numeric_inputs_are_refused(bad):
    message = _input_error(contract_graph(), bad)
    assert "image" in message and str(bad.dtype) in message, message


def test_float64_and_integer_inputs_are_converted_to_float32():
    g = contract_graph()
    rng = np.random.default_rng(16)
    x64 = rng.standard_normal((2, 3, 8, 8))
    assert np.array_equal(cg.run(g, x64), cg.run(g, x64.astype(np.float32)))
    for dtype in (np.int64, np.int32, np.uint8):
        xi = rng.integers(0, 5, (2, 3, 8, 8)).astype(dtype)
        out = cg.run(g, xi)
        assert out.dtype == np.float32
        assert np.array_equal(out, cg.run(g, xi.astype(np.float32)))


def test_nested_list_input_is_accepted():
    g = contract_graph()
    x = randn(np.random.default_rng(17), (1, 3, 8, 8))
    assert np.array_equal(cg.run(g, x.tolist()), cg.run(g, x))


def test_non_contiguous_input():
    rng = np.random.default_rng(18)
    g = contract_graph()
    base = randn(rng, (8, 8, 3, 2))
    view = base.transpose(3, 2, 0, 1)[:, :, ::1, :]      # (2, 3, 8, 8), not C-contiguous
    assert not view.flags["C_CONTIGUOUS"]
    assert np.array_equal(cg.run(g, view), cg.run(g, np.ascontiguousarray(view)))
    check(g, view)


@pytest.mark.parametrize("first", [lambda: cg.ReLU(), lambda: cg.Identity(), lambda: cg.BatchNorm2d(3),
                                   lambda: cg.Softmax(1)], ids=["relu", "identity", "bn", "softmax"])
def test_input_array_is_not_modified(first):
    g = cg.Graph("keep")
    x = g.input("x", (None, 3, 4, 4))
    y = g.apply(first(), x)
    g.output(g.apply(cg.ReLU(), y), g.apply(cg.Tanh(), g.apply(cg.Add(), y, x)))
    data = randn(np.random.default_rng(19), (2, 3, 4, 4))
    before = data.copy()
    check(g, data)
    assert np.array_equal(data, before)


def test_results_are_not_overwritten_by_the_next_run():
    rng = np.random.default_rng(20)
    for g in (contract_graph(), residual_block(rng)):
        shape = (2, *g.type_of(g.inputs[0]).shape[1:])
        a, b = randn(rng, shape), randn(rng, shape)
        first = cg.run(g, a)
        kept = first.copy()
        second = cg.run(g, b)
        assert np.array_equal(first, kept), "the second run overwrote the first result"
        assert not np.array_equal(first, second)
        assert np.array_equal(cg.run(g, a), kept), "two runs on the same input differ"


def test_a_graph_run_once_is_freed_with_its_plan():
    """The compiled plan is cached per graph, weakly: once the caller drops the graph, graph, weights and
    buffers go (a cache whose entries held their graph kept every graph ever run alive)."""
    import gc
    import weakref

    g = contract_graph()
    cg.run(g, np.zeros((2, 3, 8, 8), np.float32))
    alive = weakref.ref(g)
    del g
    gc.collect()
    assert alive() is None


def test_tuple_results_are_not_overwritten_by_the_next_run():
    rng = np.random.default_rng(21)
    g = cg.Graph("pair")
    x = g.input("x", (None, 2, 4, 4))
    c = g.apply(cg.Conv2d(2, 2, 3, padding=1), x)
    g.output(g.apply(cg.ReLU(), c), c)
    a, b = randn(rng, (1, 2, 4, 4)), randn(rng, (1, 2, 4, 4))
    first = cg.run(g, a)
    assert isinstance(first, tuple) and len(first) == 2
    kept = tuple(o.copy() for o in first)
    cg.run(g, b)
    cg.run(g, b[:1])
    for o, k in zip(first, kept):
        assert np.array_equal(o, k)
    for o, k in zip(cg.run(g, a), kept):
        assert np.array_equal(o, k)


def test_a_scalar_graph_input_stays_a_scalar():
    """np.ascontiguousarray turned a 0-d input into shape (1,), and Sub with a 0-d Constant then failed in NumPy."""
    graph = cg.Graph("scalar")
    p = graph.input("p", ())
    one = graph.apply(cg.Constant(np.array(1.0, np.float32)))
    graph.output(graph.apply(cg.Sub(), p, one))
    result = cg.run(graph, np.array(3.0, np.float32))
    assert np.shape(result) == () and result == np.float32(2.0)
