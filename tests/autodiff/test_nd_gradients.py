"""Gradient rules of Conv1d/Conv3d, ConvTranspose1d/2d/3d, MaxPool/AvgPool 1d/3d and the adaptive pools against
central finite differences in float64, hypothesis drawing every attribute the rules read (stride, asymmetric
padding, output_padding, dilation, groups, bias, ceil_mode, count_include_pad, output sizes).
(gradcheck.py says how.)"""
import numpy as np
import pytest
from conftest import examples
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st
from test_gradient_rules import data, one_op, randomize, with_attrs

import cnngraph as cg
from cnngraph.autodiff.backward import build

SEED = st.integers(0, 2**16)
SIZES = {1: (6,), 2: (4, 3), 3: (3, 2, 3)}          # kept small: the references loop over every cell


@st.composite
def conv_case(draw, dims):
    groups = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    pads = tuple(draw(st.integers(0, 1)) for _ in range(2 * dims))
    extra = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    size = tuple(max(1, (k - 1) * d + 1 - pads[i] - pads[dims + i]) + e
                 for i, (k, d, e) in enumerate(zip(kernel, dilation, extra)))
    return dict(groups=groups, kernel=kernel, stride=stride, dilation=dilation, pads=pads, size=size,
                cin=groups * draw(st.integers(1, 2)), cout=groups * draw(st.integers(1, 2)), bias=draw(st.booleans()))


@examples(20)
@given(dims=st.sampled_from([1, 3]), data_=st.data(), fused=st.sampled_from([None, {"op": "ReLU", "attrs": {}},
                                                                             {"op": "SiLU", "attrs": {}}]), seed=SEED)
def test_conv_1d_3d(dims, data_, fused, seed):
    c = data_.draw(conv_case(dims))
    rng = np.random.default_rng(seed)
    layer = getattr(cg, f"Conv{dims}d")(c["cin"], c["cout"], c["kernel"], c["stride"], c["pads"], c["dilation"],
                                        c["groups"], c["bias"])
    graph = one_op(layer, (None, c["cin"], *c["size"]))
    if fused:
        graph = with_attrs(graph, activation=fused)
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, c["cin"], *c["size"])), seed=seed)


@examples(25)
@given(dims=st.sampled_from([1, 2, 3]), data_=st.data(), seed=SEED,
       fused=st.sampled_from([None, {"op": "Tanh", "attrs": {}}, {"op": "GELU", "attrs": {"approximate": "none"}}]))
def test_conv_transpose(dims, data_, fused, seed):
    c = data_.draw(conv_case(dims))
    output_padding = tuple(data_.draw(st.integers(0, s - 1)) for s in c["stride"])
    size = tuple(data_.draw(st.integers(1, 3)) for _ in range(dims))
    rng = np.random.default_rng(seed)
    layer = getattr(cg, f"ConvTranspose{dims}d")(c["cin"], c["cout"], c["kernel"], c["stride"], 0, output_padding,
                                                 c["groups"], c["bias"], c["dilation"])
    shape = layer.infer(dict(layer.attrs), [cg.layer.Operand("x", cg.shapes.TensorType((2, c["cin"], *size)))]).shape
    pads = tuple(min(p, (s - 1) // 2) for p, s in zip(c["pads"], shape[2:] * 2))  # pads that keep an output
    layer = getattr(cg, f"ConvTranspose{dims}d")(c["cin"], c["cout"], c["kernel"], c["stride"], pads, output_padding,
                                                 c["groups"], c["bias"], c["dilation"])
    graph = one_op(layer, (None, c["cin"], *size))
    if fused:
        graph = with_attrs(graph, activation=fused)
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, c["cin"], *size)), seed=seed)


def test_conv_transpose_output_padding_past_the_stride_is_refused_by_name():
    layer = cg.ConvTranspose1d(2, 2, 3, stride=1, output_padding=1, dilation=2)
    with pytest.raises(cg.GraphError, match=r"deconv1 \(ConvTranspose1d\): no gradient rule for output_padding"):
        build(one_op(layer, (None, 2, 4)), loss=None)


@st.composite
def pool_case(draw, dims, dilated):
    kernel = tuple(draw(st.integers(1, 3 if dims < 3 else 2)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims)) if dilated else (1,) * dims
    padding = tuple(draw(st.integers(0, ((k - 1) * d + 1) // 2)) for k, d in zip(kernel, dilation))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    size = tuple((k - 1) * d + 1 + draw(st.integers(0, 2)) for k, d in zip(kernel, dilation))
    return kernel, stride, padding, dilation, size


@examples(20)
@given(dims=st.sampled_from([1, 3]), data_=st.data(), ceil_mode=st.booleans(), seed=SEED)
def test_max_pool_1d_3d(dims, data_, ceil_mode, seed):
    kernel, stride, padding, dilation, size = data_.draw(pool_case(dims, True))
    rng = np.random.default_rng(seed)
    graph = one_op(getattr(cg, f"MaxPool{dims}d")(kernel, stride, padding, dilation, ceil_mode), (None, 2, *size))
    check_gradients(graph, data(rng, (2, 2, *size)), seed=seed)


@examples(20)
@given(dims=st.sampled_from([1, 3]), data_=st.data(), ceil_mode=st.booleans(), count_include_pad=st.booleans(),
       seed=SEED)
def test_avg_pool_1d_3d(dims, data_, ceil_mode, count_include_pad, seed):
    kernel, stride, padding, _, size = data_.draw(pool_case(dims, False))
    rng = np.random.default_rng(seed)
    layer = getattr(cg, f"AvgPool{dims}d")(kernel, stride, padding, ceil_mode, count_include_pad)
    check_gradients(one_op(layer, (None, 2, *size)), data(rng, (2, 2, *size)), seed=seed)


def test_max_pool_nd_ties_go_to_the_first_maximum():
    graph = one_op(cg.MaxPool1d(3), (None, 1, 3))
    tg = build(graph, loss=None)
    grads = cg.run(tg.graph, np.ones((1, 1, 3), np.float32), np.full((1, 1, 1), 3.0, np.float32))
    np.testing.assert_array_equal(grads[-1][0, 0], [3.0, 0.0, 0.0])


@examples(20)
@given(dims=st.sampled_from([1, 2, 3]), maximum=st.booleans(), data_=st.data(), seed=SEED)
def test_adaptive_pools(dims, maximum, data_, seed):
    """Output sizes that tile the input, that do not (overlapping windows of two lengths), None (kept), larger."""
    size = tuple(data_.draw(st.integers(1, 5 if dims < 3 else 3)) for _ in range(dims))
    out = tuple(data_.draw(st.one_of(st.none(), st.integers(1, s + 1))) for s in size)
    rng = np.random.default_rng(seed)
    layer = getattr(cg, f"Adaptive{'Max' if maximum else 'Avg'}Pool{dims}d")(out)
    check_gradients(one_op(layer, (None, 2, *size)), data(rng, (2, 2, *size)), seed=seed)


def test_adaptive_max_pool_ties_go_to_the_first_maximum():
    graph = one_op(cg.AdaptiveMaxPool2d(1), (None, 1, 2, 2))
    tg = build(graph, loss=None)
    grads = cg.run(tg.graph, np.ones((1, 1, 2, 2), np.float32), np.full((1, 1, 1, 1), 3.0, np.float32))
    np.testing.assert_array_equal(grads[-1][0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_a_net_of_the_new_rules_trains():
    """Conv1d, GroupNorm, LeakyReLU (negative slope), ConvTranspose1d, LayerNorm, AdaptiveMaxPool1d, Upsample,
    reflect Pad, Slice, MatMul, ReduceMax: the Trainer's steps keep every holder of a weight in step (the
    transposed convolution computing Conv1d's ∂x holds its weight) and the training loss falls."""
    cg.manual_seed(0)
    g = cg.Graph("rows")
    x = g.input("x", (None, 1, 8, 8))
    rows = g.apply(cg.Reshape((0, 8, 8)), x)                                         # 8 channels of 8
    a = g.apply(cg.LeakyReLU(-0.2), g.apply(cg.GroupNorm(2, 8), g.apply(cg.Conv1d(8, 8, 3, padding=1), rows)))
    b = g.apply(cg.ConvTranspose1d(8, 4, 3, stride=2, padding=1, output_padding=1), a)     # (N, 4, 16)
    c = g.apply(cg.Pad((0, 0, 1, 0, 0, 1), mode="reflect"), g.apply(cg.LayerNorm(16), b))  # (N, 4, 18)
    d = g.apply(cg.Upsample(scale_factor=2, mode="linear"), g.apply(cg.AdaptiveMaxPool1d(6), c))
    e = g.apply(cg.Slice((1,), (11,), (2,)), d)                                      # (N, 4, 10)
    m = g.apply(cg.MatMul(), e, g.apply(cg.Constant(np.eye(10, dtype=np.float32)[:, :5])))
    f = g.apply(cg.Flatten(), g.apply(cg.Concat(1), m, g.apply(cg.ReduceMax((1,), True), m)))
    g.output(g.apply(cg.Linear(25, 10), f))
    tg = build(g, "cross_entropy", train=True)
    assert ("conv1.dx", "weight") in tg.holders[("conv1", "weight")]
    (x_, y_) = cg.datasets.digits()
    trainer = cg.Trainer(g, optimizer=cg.optim.Adam(lr=0.01))
    history = trainer.fit(x_[:256], y_[:256], epochs=3, batch_size=32)
    assert history.loss[-1] < history.loss[0]
