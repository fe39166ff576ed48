"""Every gradient rule against central finite differences in float64, with hypothesis drawing the op's
attributes; the NumPy backend's float32 run of the same training graph against the float64 result.
(gradcheck.py says how.)"""
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st

import cnngraph as cg
from cnngraph.autodiff.backward import build, missing_rules

ACTIVATIONS = [None, {"op": "ReLU", "attrs": {}}, {"op": "Sigmoid", "attrs": {}}, {"op": "Tanh", "attrs": {}},
               {"op": "ReLU6", "attrs": {}}, {"op": "LeakyReLU", "attrs": {"negative_slope": 0.1}}]
ACTIVATIONS += [{"op": "GELU", "attrs": {"approximate": "tanh"}}, {"op": "SiLU", "attrs": {}},   # from the input
                {"op": "Softplus", "attrs": {"beta": 2.0, "threshold": 20.0}}, {"op": "Mish", "attrs": {}}]


def one_op(layer, *shapes) -> cg.Graph:
    graph = cg.Graph(f"one_{layer.op}")
    graph.output(graph.apply(layer, *(graph.input(f"x{i}", s) for i, s in enumerate(shapes))))
    return graph


def with_attrs(graph: cg.Graph, **attrs) -> cg.Graph:
    """The graph's only layer with attributes changed (a fused activation)."""
    node = graph.layers()[0]
    graph.replace(node.name, node.op, node.inputs, dict(node.attrs, **attrs), node.params)
    return graph


def data(rng, *shapes, scale=1.0):
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def randomize(graph: cg.Graph, rng) -> None:
    """Random parameters (nonzero biases, BatchNorm statistics away from the defaults)."""
    for node in graph.layers():
        arrays = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in node.params.items()}
        if "running_var" in arrays:
            arrays["running_var"] = rng.uniform(0.5, 2.0, node.params["running_var"].shape).astype(np.float32)
        graph.set_params(node.name, **arrays)


# --- convolution and linear -------------------------------------------------------------------------------------
@examples(25)
@given(groups=st.integers(1, 3), cin_g=st.integers(1, 2), cout_g=st.integers(1, 2), kernel=st.tuples(
    st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), pads=st.tuples(*[st.integers(0, 2)] * 4),
    extra=st.tuples(st.integers(0, 3), st.integers(0, 3)), bias=st.booleans(), batch=st.integers(1, 2),
    activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16))
def test_conv2d(groups, cin_g, cout_g, kernel, stride, dilation, pads, extra, bias, batch, activation, seed):
    rng = np.random.default_rng(seed)
    size = [max(1, (k - 1) * d + 1 - pads[i] - pads[i + 2]) + e for i, (k, d, e) in enumerate(zip(kernel, dilation, extra))]
    cin = cin_g * groups
    conv = cg.Conv2d(cin, cout_g * groups, kernel, stride, pads, dilation, groups, bias)
    graph = one_op(conv, (None, cin, *size))
    if activation:
        graph = with_attrs(graph, activation=activation)
    randomize(graph, rng)
    check_gradients(graph, data(rng, (batch, cin, *size)), seed=seed)


@pytest.mark.parametrize("tile", [2, 4])
@examples(8)
@given(pads=st.tuples(*[st.integers(0, 2)] * 4), size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_conv2d_input_gradient_by_winograd(tile, pads, size, batch, seed):
    """A 3×3 stride-1 convolution's ∂x by the forward's Winograd kernel (forced on these few channels)."""
    from cnngraph.backends.numpy_backend import winograd
    rng = np.random.default_rng(seed)
    size = [max(1, 3 - pads[i] - pads[i + 2]) + e for i, e in enumerate(size)]
    graph = one_op(cg.Conv2d(3, 2, 3, 1, pads), (None, 3, *size))
    randomize(graph, rng)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "FORCE_TILE", tile)
        check_gradients(graph, data(rng, (batch, 3, *size)), seed=seed)


@examples(10)
@given(groups=st.integers(1, 2), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), size=st.tuples(st.integers(5, 7), st.integers(5, 7)),
       seed=st.integers(0, 2**16))
def test_conv2d_weight_gradient_on_wide_maps(groups, kernel, stride, dilation, pads, size, seed):
    """∂W's other column gather, the one maps of BATCH_INNER_BELOW columns and more use (forced here)."""
    from cnngraph.backends.numpy_backend import gradients_conv
    rng = np.random.default_rng(seed)
    graph = one_op(cg.Conv2d(2 * groups, 2 * groups, kernel, stride, pads, dilation, groups), (None, 2 * groups, *size))
    randomize(graph, rng)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gradients_conv, "BATCH_INNER_BELOW", 1)
        check_gradients(graph, data(rng, (2, 2 * groups, *size)), seed=seed)


@examples(15)
@given(features=st.tuples(st.integers(1, 4), st.integers(1, 4)), lead=st.sampled_from([(2,), (2, 3)]),
       bias=st.booleans(), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16))
def test_linear(features, lead, bias, activation, seed):
    rng = np.random.default_rng(seed)
    graph = one_op(cg.Linear(*features, bias=bias), (None, *lead[1:], features[0]))
    if activation:
        graph = with_attrs(graph, activation=activation)
    randomize(graph, rng)
    check_gradients(graph, data(rng, (*lead, features[0])), seed=seed)


# --- activations --------------------------------------------------------------------------------------------------
@examples(15)
@given(make=st.sampled_from([cg.ReLU, cg.ReLU6, cg.Sigmoid, cg.Tanh, cg.Softsign, lambda: cg.LeakyReLU(0.2),
                             lambda: cg.LeakyReLU(0.0), lambda: cg.Hardtanh(-0.5, 1.0), lambda: cg.Softmax(1),
                             lambda: cg.Softmax(-1), cg.Identity, lambda: cg.Dropout(0.3)]),
       shape=st.sampled_from([(2, 3), (2, 3, 4, 2)]), seed=st.integers(0, 2**16))
def test_elementwise_and_softmax(make, shape, seed):
    rng = np.random.default_rng(seed)
    check_gradients(one_op(make(), (None, *shape[1:])), data(rng, shape, scale=4.0), seed=seed)


# --- pooling ------------------------------------------------------------------------------------------------------
@st.composite
def windows(draw, dilated: bool):
    kernel = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dilation = draw(st.tuples(st.integers(1, 2), st.integers(1, 2))) if dilated else (1, 1)
    padding = tuple(draw(st.integers(0, ((k - 1) * d + 1) // 2)) for k, d in zip(kernel, dilation))
    stride = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    size = tuple((k - 1) * d + 1 + draw(st.integers(0, 4)) for k, d in zip(kernel, dilation))
    return kernel, stride, padding, dilation, size


@examples(25)
@given(window=windows(True), ceil_mode=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool2d(window, ceil_mode, seed):
    kernel, stride, padding, dilation, size = window
    rng = np.random.default_rng(seed)
    graph = one_op(cg.MaxPool2d(kernel, stride, padding, dilation, ceil_mode), (None, 2, *size))
    check_gradients(graph, data(rng, (2, 2, *size)), seed=seed)


@examples(25)
@given(window=windows(False), ceil_mode=st.booleans(), count_include_pad=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool2d(window, ceil_mode, count_include_pad, seed):
    kernel, stride, padding, _, size = window
    rng = np.random.default_rng(seed)
    graph = one_op(cg.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad), (None, 2, *size))
    check_gradients(graph, data(rng, (2, 2, *size)), seed=seed)


def test_max_pool2d_ties_go_to_the_first_maximum():
    """PyTorch's choice: a window of equal values sends its whole gradient to its first (row-major) element."""
    graph = one_op(cg.MaxPool2d(2), (None, 1, 2, 2))
    tg = build(graph, loss=None)
    grads = cg.run(tg.graph, np.ones((1, 1, 2, 2), np.float32), np.full((1, 1, 1, 1), 3.0, np.float32))
    np.testing.assert_array_equal(grads[-1][0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_global_avg_pool_and_flatten():
    rng = np.random.default_rng(1)
    graph = cg.Graph("gap")
    x = graph.input("x", (None, 3, 4, 5))
    graph.output(graph.apply(cg.Flatten(), graph.apply(cg.GlobalAvgPool2d(), x)))
    check_gradients(graph, data(rng, (2, 3, 4, 5)))


# --- normalization ------------------------------------------------------------------------------------------------
@examples(15)
@given(train=st.booleans(), shape=st.sampled_from([(2, 3, 2, 2), (3, 2, 1, 3), (4, 3)]), seed=st.integers(0, 2**16))
def test_batch_norm(train, shape, seed):
    rng = np.random.default_rng(seed)
    graph = one_op(cg.BatchNorm2d(shape[1]), (None, *shape[1:]))
    randomize(graph, rng)
    check_gradients(graph, data(rng, shape, scale=2.0), train=train, seed=seed)


# --- structure and tensor ops ------------------------------------------------------------------------------------
@examples(10)
@given(seed=st.integers(0, 2**16), broadcast=st.booleans())
def test_add_mul_concat_reshape(seed, broadcast):
    """A small DAG: a value read by several nodes gets the sum of their gradients."""
    rng = np.random.default_rng(seed)
    graph = cg.Graph("dag")
    x = graph.input("x", (None, 2, 3, 3))
    y = graph.input("y", (None, 2, 3, 3))
    scale = graph.input("s", (2, 1, 1)) if broadcast else graph.input("s", (None, 2, 3, 3))
    a = graph.apply(cg.Add(broadcast=broadcast), x, scale)
    m = graph.apply(cg.Mul(), a, y)
    c = graph.apply(cg.Concat(1), m, x, a)
    r = graph.apply(cg.Reshape((0, 6, 9)), c)
    graph.output(graph.apply(cg.Add(), r, graph.apply(cg.Reshape((0, 6, 9)), graph.apply(cg.Concat(1), x, y, x))))
    s_shape = (2, 1, 1) if broadcast else (2, 2, 3, 3)
    check_gradients(graph, data(rng, (2, 2, 3, 3), (2, 2, 3, 3), s_shape), seed=seed)


@examples(10)
@given(op=st.sampled_from(["Sub", "Div", "Mul"]), other=st.sampled_from([(None, 2, 3), (2, 1), (3,), ()]),
       seed=st.integers(0, 2**16))
def test_broadcasting_arithmetic(op, other, seed):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("arith")
    x, y = graph.input("x", (None, 2, 3)), graph.input("y", other)
    graph.output(graph.add(op, [x, y]))
    shape = [2 if d is None else d for d in other]
    divisor = (1.5 + np.abs(rng.standard_normal(shape))) * rng.choice([-1, 1], shape)
    check_gradients(graph, [data(rng, (2, 2, 3))[0], divisor.astype(np.float32)], seed=seed)


@examples(10)
@given(perm=st.permutations([1, 2, 3]), axes=st.sets(st.integers(1, 3), min_size=1), keepdims=st.booleans(),
       pads=st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(0, 2)), seed=st.integers(0, 2**16))
def test_transpose_reduce_mean_pad(perm, axes, keepdims, pads, seed):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("tensor_ops")
    x = graph.input("x", (None, 2, 3, 4))
    t = graph.apply(cg.Transpose((0, *perm)), x)
    p = graph.apply(cg.Pad((0, 0, 1, pads[0], 0, pads[1], 0, pads[2])), t)
    graph.output(graph.apply(cg.ReduceMean(tuple(sorted(axes)), keepdims), p))
    check_gradients(graph, data(rng, (2, 2, 3, 4)), seed=seed)


def test_global_max_pool():
    rng = np.random.default_rng(6)
    check_gradients(one_op(cg.GlobalMaxPool2d(), (None, 3, 2, 4)), data(rng, (2, 3, 2, 4)))


def test_refused_attributes_are_named():
    with pytest.raises(cg.GraphError, match="mean over a symbolic axis"):
        build(one_op(cg.ReduceMean((0,)), (None, 2)), loss=None)


def test_dropout_in_training_mode_multiplies_by_its_mask():
    rng = np.random.default_rng(3)
    graph = one_op(cg.Dropout(0.5), (None, 4))
    mask = np.array([[0, 2, 2, 0], [2, 0, 2, 2]], np.float32)
    check_gradients(graph, data(rng, (2, 4)), train=True, masks={"dropout1": mask})


# --- losses -------------------------------------------------------------------------------------------------------
@examples(10)
@given(classes=st.integers(2, 5), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_cross_entropy(classes, batch, seed):
    rng = np.random.default_rng(seed)
    graph = one_op(cg.Linear(3, classes), (None, 3))
    randomize(graph, rng)
    check_gradients(graph, data(rng, (batch, 3)), loss="cross_entropy", target=rng.integers(0, classes, batch),
                    seed=seed)


def test_mse():
    rng = np.random.default_rng(4)
    graph = one_op(cg.Conv2d(2, 3, 2), (None, 2, 3, 3))
    check_gradients(graph, data(rng, (2, 2, 3, 3)), loss="mse", target=data(rng, (2, 3, 2, 2))[0])


# --- coverage and refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(cg.models.MODELS))
def test_every_builtin_model_has_every_rule(name):
    assert missing_rules(cg.models.MODELS[name](input_shape=(None, 3, 32, 32))) == []


def test_an_op_without_a_rule_is_refused_by_name():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 4, 4))
    graph.output(graph.apply(cg.LocalResponseNorm(3), x, name="lrn"))
    with pytest.raises(cg.GraphError, match=r"no gradient rule for lrn \(LocalResponseNorm\)"):
        build(graph, loss=None)


def test_backward_keeps_only_the_activations_it_needs():
    """The ReLU's gradient reads its output, not its input, and the global average's gradient reads neither:
    the convolutions' outputs are read by the forward pass alone, so the plan frees them early."""
    graph = cg.models.seed_m1(input_shape=(None, 1, 8, 8))
    tg = build(graph, "cross_entropy", wrt_inputs=False).graph
    assert tg.users("L1") == ["relu"]
    assert tg.users("L2") == ["avgpool"]
    assert set(tg.users("relu")) == {"L2", "relu.dx", "L2.dweight.matrix"}
    assert not [n for n in tg.layers() if n.op == "Conv2dGradInput" and n.name.startswith("L1")]   # no ∂input


def test_a_training_graph_is_a_graph_like_any_other():
    """It lints, the linter finds nothing to say, and it draws."""
    from cnngraph.draw import to_dot
    tg = build(cg.models.seed_m1(input_shape=(None, 1, 8, 8)), "cross_entropy", train=True).graph
    tg.lint()
    assert cg.lint(tg) == []
    assert "Conv2dGradWeight" in to_dot(tg)


PYTORCH_MODELS = sorted(p.name for p in (Path(__file__).parent.parent / "data" / "pytorch").glob("*.onnx"))


@pytest.mark.parametrize("name", PYTORCH_MODELS)
def test_every_pytorch_test_model_gets_a_training_graph(name):
    """The models PyTorch's TorchScript and dynamo exporters wrote (tests/data/pytorch): every op has a rule,
    in both modes, and the training graph lints."""
    graph = cg.load_onnx(Path(__file__).parent.parent / "data" / "pytorch" / name)
    loss = "cross_entropy" if len(graph.type_of(graph.outputs[0]).shape) == 2 else None
    for train in (False, True):
        build(graph, loss, train=train).graph.lint()


# --- modern activations -------------------------------------------------------------------------------------------
def away_from(rng, shape, kinks=(), scale=2.0, margin=0.05):
    """Standard normal data times ``scale``, every value at least ``margin`` from each kink (redrawn there), so
    central differences never straddle a point where the derivative jumps."""
    x = np.array(rng.standard_normal(shape) * scale)
    for _ in range(100):
        near = np.zeros(shape, bool)
        for kink in kinks:
            near |= np.abs(x - kink) < margin
        if not near.any():
            break
        x[near] = rng.standard_normal(int(near.sum())) * scale
    return np.asarray(x, np.float32)


@st.composite
def modern_activations(draw):
    """(layer, kinks of its derivative) with hypothesis drawing its attributes."""
    kind = draw(st.sampled_from(["ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish", "Hardsigmoid",
                                 "Softplus", "LogSoftmax"]))
    alpha = draw(st.floats(0.2, 2.0))
    if kind == "ELU":
        return cg.ELU(alpha), [0.0]
    if kind == "CELU":
        return cg.CELU(alpha), [0.0]
    if kind == "GELU":
        return cg.GELU(draw(st.sampled_from(GELU_FORMS))), []
    if kind == "Hardsigmoid":
        slope, offset = draw(st.sampled_from([(1 / 6, 0.5), (0.2, 0.5), (alpha, draw(st.floats(-0.5, 1.5)))]))
        return cg.Hardsigmoid(slope, offset), [-offset / slope, (1 - offset) / slope]
    if kind == "Softplus":
        beta, threshold = draw(st.floats(0.5, 3.0)), draw(st.sampled_from([20.0, 1.0, 2.5]))
        return cg.Softplus(beta, threshold), [threshold / beta]
    if kind == "LogSoftmax":
        return cg.LogSoftmax(draw(st.sampled_from([1, -1]))), []
    return getattr(cg, kind)(), {"SELU": [0.0], "Hardswish": [-3.0, 3.0]}.get(kind, [])


GELU_FORMS = ["none", "tanh"]


@examples(30)
@given(activation=modern_activations(), shape=st.sampled_from([(2, 3), (2, 3, 4, 2)]), seed=st.integers(0, 2**16))
def test_modern_activations(activation, shape, seed):
    layer, kinks = activation
    rng = np.random.default_rng(seed)
    check_gradients(one_op(layer, (None, *shape[1:])), [away_from(rng, shape, kinks, scale=3.0)], seed=seed)


@examples(10)
@given(per_channel=st.booleans(), shape=st.sampled_from([(2, 3), (2, 3, 4, 2), (3, 3, 5)]), seed=st.integers(0, 2**16))
def test_prelu_input_and_slopes(per_channel, shape, seed):
    rng = np.random.default_rng(seed)
    graph = one_op(cg.PReLU(shape[1] if per_channel else 1), (None, *shape[1:]))
    randomize(graph, rng)
    check_gradients(graph, [away_from(rng, shape, [0.0])], seed=seed)
    assert ("prelu1", "weight") in build(graph, loss=None).params


# --- element-wise math --------------------------------------------------------------------------------------------
UNARY_MATH = {   # op -> the data it is differentiable on (away from 0 where it has a kink or a pole)
    "Abs": lambda rng, s: away_from(rng, s, [0.0]), "Neg": lambda rng, s: away_from(rng, s),
    "Exp": lambda rng, s: away_from(rng, s, scale=1.0), "Erf": lambda rng, s: away_from(rng, s, scale=1.0),
    "Log": lambda rng, s: np.abs(away_from(rng, s)) + np.float32(0.3),
    "Sqrt": lambda rng, s: np.abs(away_from(rng, s)) + np.float32(0.3),
    "Reciprocal": lambda rng, s: away_from(rng, s, [0.0], margin=0.5),
}


@examples(15)
@given(op=st.sampled_from(sorted(UNARY_MATH)), shape=st.sampled_from([(2, 3), (2, 3, 4, 2)]), seed=st.integers(0, 2**16))
def test_unary_math(op, shape, seed):
    rng = np.random.default_rng(seed)
    check_gradients(one_op(getattr(cg, op)(), (None, *shape[1:])), [UNARY_MATH[op](rng, shape)], seed=seed)


@examples(15)
@given(exponent=st.sampled_from([2.0, 3.0, -1.0, 0.5, 1.5, -2.5]), shape=st.sampled_from([(2, 3), (2, 3, 2, 2)]),
       seed=st.integers(0, 2**16))
def test_pow_by_a_constant_exponent(exponent, shape, seed):
    """x^p with p a Constant (x² of a variance): integer powers on any sign, others on x > 0."""
    rng = np.random.default_rng(seed)
    graph = cg.Graph("pow")
    x = graph.input("x", (None, *shape[1:]))
    graph.output(graph.add("Pow", [x, graph.apply(cg.Constant(np.array(exponent, np.float32)))]))
    base = away_from(rng, shape, [0.0], margin=0.3)
    check_gradients(graph, [base if exponent == int(exponent) else np.abs(base)], seed=seed)


@examples(10)
@given(other=st.sampled_from([(None, 2, 3), (2, 1), (3,), (1,)]), seed=st.integers(0, 2**16))
def test_pow_by_a_computed_exponent(other, seed):
    """Both operands get gradients, each summed down to its (broadcast) shape; the base is positive. (No 0-d
    graph input: the NumPy backend runs Sub of a 0-d input and a 0-d Constant into a (1,) buffer, a separate bug.)"""
    rng = np.random.default_rng(seed)
    graph = cg.Graph("pow")
    graph.output(graph.add("Pow", [graph.input("x", (None, 2, 3)), graph.input("p", other)]))
    shape = [2 if d is None else d for d in other]
    base = np.abs(away_from(rng, (2, 2, 3), scale=1.0)) + np.float32(0.3)
    check_gradients(graph, [base, away_from(rng, tuple(shape), scale=1.0)], seed=seed)


@examples(15)
@given(op=st.sampled_from(["Max", "Min"]), shapes=st.lists(st.sampled_from([(None, 2, 3), (2, 1), (3,), ()]),
                                                            min_size=0, max_size=2), seed=st.integers(0, 2**16))
def test_max_min(op, shapes, seed):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("extremum")
    shapes = [(None, 2, 3), *shapes]
    names = [graph.input(f"x{i}", s) for i, s in enumerate(shapes)]
    graph.output(graph.add(op, names))
    check_gradients(graph, [away_from(rng, tuple(2 if d is None else d for d in s)) for s in shapes], seed=seed)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_ties_go_to_the_first_operand(op):
    """A subgradient at a tie: the whole of dy goes to the earliest operand holding the extremum."""
    graph = cg.Graph("tie")
    a, b = graph.input("a", (None, 3)), graph.input("b", (None, 3))
    graph.output(graph.add(op, [a, b]))
    tg = build(graph, loss=None)
    x = np.array([[1.0, 2.0, -1.0]], np.float32)
    other = np.array([[1.0, 0.0 if op == "Max" else 5.0, -1.0]], np.float32)
    grads = dict(zip(tg.graph.outputs, cg.run(tg.graph, x, other, np.full((1, 3), 3.0, np.float32))))
    np.testing.assert_array_equal(grads[tg.inputs[0]], [[3.0, 3.0, 3.0]])
    np.testing.assert_array_equal(grads[tg.inputs[1]], [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("fused", [{"op": "GELU", "attrs": {"approximate": "none"}}, {"op": "ELU", "attrs": {"alpha": 1.0}},
                                   {"op": "Hardsigmoid", "attrs": {"alpha": 0.2, "beta": 0.5}}])
def test_a_fused_activation_whose_derivative_needs_its_input(fused):
    """Conv2d's output after GELU does not give GELU's derivative: the rule recomputes the convolution without
    it, from the same parameter arrays, so an optimizer step updates that copy too (a holder of the weight)."""
    rng = np.random.default_rng(5)
    graph = with_attrs(one_op(cg.Conv2d(2, 3, 2), (None, 2, 3, 3)), activation=fused)
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, 2, 3, 3)), seed=5)
    tg = build(graph, loss=None)
    assert [n.op for n in tg.graph.layers() if n.name == "conv1.dact.input"] == ["Conv2d"]
    assert ("conv1.dact.input", "weight") in tg.holders[("conv1", "weight")]


def test_every_fusable_activation_has_a_rule_alone_and_fused():
    """Read from the trait, not a list: an activation made fusable later without a derivative fails here."""
    from cnngraph.autodiff.registry import rule_for
    from cnngraph.layer import REGISTRY, fusable_activations
    for op in fusable_activations():
        assert rule_for(REGISTRY[op]) is not None, op
        layer, _ = REGISTRY[op].example()
        fused = with_attrs(one_op(cg.Linear(3, 2), (None, 3)), activation={"op": op, "attrs": dict(layer.attrs)})
        build(fused, loss=None).graph.lint()
