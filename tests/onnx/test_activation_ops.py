"""The modern activations and the element-wise math ops, attributes and shapes drawn by hypothesis: the NumPy
backend against the naive reference, the export at a drawn opset (13 to the newest) through the checker and
onnxruntime against the reference, the file read back as the same op; the ONNX forms PyTorch's exporters write
(PRelu slopes, HardSigmoid's alpha/beta, Gelu-20, the spelled-out GELU, SiLU, Hardswish) imported; clean errors."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from conftest import as_tuple, examples, ort_outputs
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import ExportError, OnnxImportError, ShapeError
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
ORT_RANGE = 3.0        # onnxruntime in float32: its sigmoid is 2e-4 off at x = −8 (1% at −15), 1 + erf(x/√2) cancels


def _floats(low, high):
    return st.floats(low, high, allow_nan=False).map(lambda v: float(np.float32(v)))


ACTIVATIONS = {
    "PReLU": None,                                               # drawn with the shape (its channel count)
    "ELU": st.builds(lambda a: cg.ELU(a), _floats(0.1, 2.0)),
    "SELU": st.just(cg.SELU()),
    "CELU": st.builds(lambda a: cg.CELU(a), st.one_of(_floats(0.2, 2.0), _floats(-2.0, -0.2))),
    "GELU": st.sampled_from([cg.GELU(), cg.GELU("tanh")]),
    "SiLU": st.just(cg.SiLU()),
    "Mish": st.just(cg.Mish()),
    "Hardsigmoid": st.one_of(st.just(cg.Hardsigmoid()),
                             st.builds(lambda a, b: cg.Hardsigmoid(a, b), _floats(-1, 1), _floats(-1, 1))),
    "Hardswish": st.just(cg.Hardswish()),
    "Softplus": st.builds(lambda b, t: cg.Softplus(b, t), st.sampled_from([1.0, 0.5, 2.0, 3.0]),
                          st.sampled_from([20.0, 15.0, 30.0, 1.0, 5.0])),
    "LogSoftmax": None,                                          # dim drawn with the shape
    "Abs": st.just(cg.Abs()), "Neg": st.just(cg.Neg()), "Exp": st.just(cg.Exp()), "Log": st.just(cg.Log()),
    "Sqrt": st.just(cg.Sqrt()), "Reciprocal": st.just(cg.Reciprocal()), "Erf": st.just(cg.Erf()),
}


@st.composite
def unary_cases(draw):
    op = draw(st.sampled_from(sorted(ACTIVATIONS)))
    rank = draw(st.integers(2, 4))
    shape = (None, *draw(st.lists(st.integers(1, 4), min_size=rank - 1, max_size=rank - 1)))
    if op == "PReLU":
        count = draw(st.sampled_from([1, shape[1]]))
        layer = cg.PReLU(count)
        layer.weight = np.asarray(draw(st.lists(_floats(-1, 1), min_size=count, max_size=count)), np.float32)
    elif op == "LogSoftmax":
        layer = cg.LogSoftmax(draw(st.integers(-rank, rank - 1)))
    else:
        layer = draw(ACTIVATIONS[op])
    return dict(layer=layer, shape=shape, opset=draw(st.sampled_from(sorted({13, 14, 17, 18, 20, NEWEST}))),
                seed=draw(st.integers(0, 2**16)), scale=draw(st.sampled_from([1.0, 4.0, 30.0])))


def broadcast_shapes(draw, full):
    """A shape that broadcasts to ``full`` (a suffix of it, some dims 1), batch symbolic when of full rank."""
    rank = draw(st.integers(0, len(full)))
    shape = [1 if draw(st.booleans()) else d for d in full[len(full) - rank:]]
    if rank == len(full):
        shape[0] = None
    return tuple(shape)


@st.composite
def broadcasting_cases(draw):
    op = draw(st.sampled_from(["Pow", "Max", "Min"]))
    full = (None, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    count = 2 if op == "Pow" else draw(st.integers(1, 4))
    shapes = [full] + [broadcast_shapes(draw, full) for _ in range(count - 1)]
    constant = [False] + [draw(st.booleans()) for _ in range(count - 1)]
    return dict(op=op, shapes=shapes, constant=constant, opset=draw(st.sampled_from(sorted({13, 18, NEWEST}))),
                seed=draw(st.integers(0, 2**16)))


def inputs_of(graph, rng, scale, batch):
    return [np.asarray(rng.uniform(-scale, scale, size=[batch if d is None or isinstance(d, str) else d
                                                        for d in graph.type_of(name).shape]), np.float32)
            for name in graph.inputs]


def check_everywhere(graph, case, scale, expected_op):
    """NumPy backend and onnxruntime (after the export) against the reference; the file reads back as the op."""
    rng = np.random.default_rng(case["seed"])
    for batch in (1, 3):
        arrays = inputs_of(graph, rng, scale, batch)
        expected = as_tuple(reference_run(graph, *arrays))
        for name, got, want in zip(graph.outputs, as_tuple(cg.run(graph, *arrays)), expected):
            assert_close(got, want, f"NumPy backend, {name}")
        model = cg.export_onnx(graph, opset=case["opset"])          # full_check inside
        arrays = [np.asarray(np.clip(a, -ORT_RANGE, ORT_RANGE), np.float32) for a in arrays]
        expected = as_tuple(reference_run(graph, *arrays))
        for name, got, want in zip(graph.outputs, ort_outputs(model, *arrays), expected):
            assert_close(got, want, f"onnxruntime at opset {case['opset']}, {name}")
    back = cg.optimize(cg.load_onnx(model), level=1)
    ours = graph.node(graph.outputs[0])
    one_input_variadic = ours.layer.arity[1] is None and len(ours.inputs) == 1    # passes/identity.py: its input
    assert back.node(graph.outputs[0]).op == ("Identity" if one_input_variadic else expected_op)
    for name, got, want in zip(graph.outputs, as_tuple(cg.run(back, *arrays)), expected):
        assert_close(got, want, f"read back, {name}")


@examples(120)
@given(unary_cases())
def test_activation_and_unary_math_everywhere(case):
    layer = case["layer"]
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", case["shape"]), name="y"))
    scale = case["scale"]
    if layer.op in ("Exp",):
        scale = min(scale, 4.0)                            # exp(30) is fine, but keep the scale meaningful
    if layer.op == "Softplus" and layer.attrs["threshold"] < 15:
        arrays = inputs_of(graph, np.random.default_rng(case["seed"]), scale, 2)
        assert_close(cg.run(graph, *arrays), reference_run(graph, *arrays))
        with pytest.raises(ExportError, match="threshold"):
            cg.export_onnx(graph, opset=case["opset"])
        return
    check_everywhere(graph, case, scale, layer.op)


@examples(60)
@given(broadcasting_cases())
def test_pow_max_min_broadcast_everywhere(case):
    rng = np.random.default_rng(case["seed"])
    graph = cg.Graph("g")
    values = []
    for index, (shape, constant) in enumerate(zip(case["shapes"], case["constant"])):
        if constant:
            array = rng.uniform(-3, 3, size=[1 if d is None else d for d in shape]).astype(np.float32)
            if case["op"] == "Pow":                      # integer and half-integer exponents, as models use
                array = np.round(array * 2) / 2
            values.append(graph.apply(cg.Constant(array), name=f"c{index}"))
        else:
            values.append(graph.input(f"x{index}", shape))
    graph.output(graph.add(case["op"], values, name="y"))
    check_everywhere(graph, case, 2.0, case["op"])


# --- the ONNX forms exporters write ---------------------------------------------------------------------------
def one_node_model(op_type, shape, opset, initializers=(), **attrs):
    inputs = ["x", *(name for name, _ in initializers)]
    node = helper.make_node(op_type, inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              initializer=[numpy_helper.from_array(a, n) for n, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def matches_ort(model, graph, shape):
    x = np.random.default_rng(0).uniform(-4, 4, size=[2 if d == "N" else d for d in shape]).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0])
    assert_close(reference_run(graph, x), ort_outputs(model, x)[0])


@pytest.mark.parametrize("slope_shape, op", [((3, 1, 1), "PReLU"), ((1,), "PReLU"), ((), "PReLU"),
                                             ((1, 3, 1, 1), "PReLU"), ((5,), "Add"), ((3, 4, 5), "Add")])
@pytest.mark.parametrize("opset", [13, 17, NEWEST])
def test_prelu_slopes_exporters_write(slope_shape, op, opset):
    """(C, 1, 1) is TorchScript's per-channel slope, (1,) a shared one; others are ONNX's broadcast, kept exact."""
    slope = np.random.default_rng(1).uniform(-1, 1, size=slope_shape).astype(np.float32)
    shape = ["N", 3, 4, 5]
    model = one_node_model("PRelu", shape, opset, [("slope", slope)])
    graph = cg.optimize(cg.load_onnx(model), level=1)
    assert graph.node("y").op == op
    matches_ort(model, graph, shape)


@pytest.mark.parametrize("alpha, beta", [(1 / 6, 0.5), (0.2, 0.5), (0.5, 0.1), (-0.3, 0.7)])
def test_hardsigmoid_any_alpha_beta(alpha, beta):
    shape = ["N", 3, 4]
    model = one_node_model("HardSigmoid", shape, 17, alpha=alpha, beta=beta)
    graph = cg.load_onnx(model)
    node = graph.node("y")
    assert node.op == "Hardsigmoid"
    if alpha == 1 / 6:
        assert node.attrs == {"alpha": 1 / 6, "beta": 0.5}              # PyTorch's exactly, not float32's 1/6
    matches_ort(model, graph, shape)


@pytest.mark.parametrize("form", ["none", "tanh"])
def test_gelu_op_of_opset_20(form):
    shape = ["N", 6]
    model = one_node_model("Gelu", shape, 20, approximate=form)
    graph = cg.load_onnx(model)
    assert graph.node("y").op == "GELU" and graph.node("y").attrs == {"approximate": form}
    matches_ort(model, graph, shape)


def test_selu_with_other_constants_is_gamma_times_elu():
    shape = ["N", 6]
    model = one_node_model("Selu", shape, 17, alpha=2.0, gamma=3.0)
    graph = cg.load_onnx(model)
    assert {n.op for n in graph.layers()} == {"ELU", "Constant", "Mul"}
    matches_ort(model, graph, shape)


def expression_model(nodes, constants, opset=17, shape=("N", 3, 4, 4)):
    """A graph x -> y of the given nodes, the constants as float32 initializers (as TorchScript writes them)."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
                              initializer=[numpy_helper.from_array(np.array(v, np.float32), n)
                                           for n, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


N = helper.make_node
SPELLED_OUT = {
    # torch.onnx (TorchScript) gelu: Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)
    "gelu_torchscript": ([N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
                          N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"])],
                         dict(s2=math.sqrt(2), one=1.0, half=0.5), ("GELU", {"approximate": "none"})),
    # dynamo (onnxscript) gelu: Mul(x, Mul(0.5, Add(Erf(Mul(x, 1/√2)), 1)))
    "gelu_dynamo": ([N("Mul", ["x", "r2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["one", "e"], ["a"]),
                     N("Mul", ["half", "a"], ["h"]), N("Mul", ["x", "h"], ["y"])],
                    dict(r2=1 / math.sqrt(2), one=1.0, half=0.5), ("GELU", {"approximate": "none"})),
    # dynamo gelu(approximate="tanh"): Pow(x, 3)
    "gelu_tanh_dynamo": ([N("Pow", ["x", "three"], ["p"]), N("Mul", ["kappa", "p"], ["k"]),
                          N("Add", ["x", "k"], ["s"]), N("Mul", ["beta", "s"], ["u"]), N("Tanh", ["u"], ["t"]),
                          N("Add", ["t", "one"], ["a"]), N("Mul", ["half", "a"], ["h"]), N("Mul", ["x", "h"], ["y"])],
                         dict(three=3.0, kappa=0.044715, beta=math.sqrt(2 / math.pi), one=1.0, half=0.5),
                         ("GELU", {"approximate": "tanh"})),
    "silu": ([N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"])], {}, ("SiLU", {})),
    # x * relu6(x + 3) / 6, as GhostNet, older timm and hand-written MobileNetV3s write it
    "hardswish_clip_div": ([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]),
                            N("Mul", ["x", "c"], ["m"]), N("Div", ["m", "six"], ["y"])],
                           dict(three=3.0, zero=0.0, six=6.0), ("Hardswish", {})),
    "hardswish_div_first": ([N("Add", ["three", "x"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]),
                             N("Div", ["c", "six"], ["h"]), N("Mul", ["h", "x"], ["y"])],
                            dict(three=3.0, zero=0.0, six=6.0), ("Hardswish", {})),
    "hardsigmoid_clip_div": ([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["c"]),
                              N("Div", ["c", "six"], ["y"])], dict(three=3.0, zero=0.0, six=6.0),
                             ("Hardsigmoid", {"alpha": 1 / 6, "beta": 0.5})),
    "hardswish_opset13": ([N("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])], {},
                          ("Hardswish", {})),
    "mish_opset13": ([N("Softplus", ["x"], ["s"]), N("Tanh", ["s"], ["t"]), N("Mul", ["x", "t"], ["y"])], {},
                     ("Mish", {})),
    # both exporters' Softplus(beta=2): Div(Softplus(Mul(x, 2)), 2)
    "softplus_beta": ([N("Mul", ["x", "beta"], ["b"]), N("Softplus", ["b"], ["s"]), N("Div", ["s", "beta"], ["y"])],
                      dict(beta=2.0), ("Softplus", {"beta": 2.0, "threshold": 20.0})),
}


@pytest.mark.parametrize("name", sorted(SPELLED_OUT))
def test_spelled_out_forms_become_one_layer(name):
    nodes, constants, (op, attrs) = SPELLED_OUT[name]
    model = expression_model(nodes, constants)
    onnx.checker.check_model(model, full_check=True)
    graph = cg.optimize(cg.load_onnx(model), level=1)
    assert [(n.name, n.op) for n in graph.layers()] == [("y", op)]
    assert graph.node("y").attrs == attrs
    matches_ort(model, graph, ("N", 3, 4, 4))


# --- clean errors ----------------------------------------------------------------------------------------------
def test_misfits_raise_clean_errors():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 4))
    with pytest.raises(ShapeError, match=r"4 slopes need an input \(N, 4, ...\)"):
        graph.apply(cg.PReLU(4), x)
    with pytest.raises(ShapeError, match="dim 3 is out of range"):
        graph.apply(cg.LogSoftmax(3), x)
    with pytest.raises(ShapeError):
        graph.add("Pow", [x, graph.input("e", (None, 5))])
    with pytest.raises(ValueError, match="approximate"):
        cg.GELU("erf")
    with pytest.raises(ValueError):
        cg.Softplus(beta=0.0)


def test_import_refusals_name_the_node():
    with pytest.raises(OnnxImportError, match="'y'.*approximate 'fast'"):
        cg.load_onnx(one_node_model("Gelu", ["N", 3], 20, approximate="fast"))
    with pytest.raises(OnnxImportError, match="slope of shape"):
        cg.load_onnx(one_node_model("PRelu", ["N", 3], 17, [("slope", np.ones((4,), np.float32))]))


@pytest.mark.parametrize("exponent", [np.array(2, np.int64), np.array([3], np.int32), np.array([0.5], np.float32)])
def test_pow_exponent_of_another_type_becomes_a_float32_constant(exponent):
    shape = ["N", 3]
    model = one_node_model("Pow", shape, 17, [("e", exponent)])
    graph = cg.load_onnx(model)
    assert graph.node("y").op == "Pow"
    x = np.random.default_rng(0).uniform(0.1, 3, size=(2, 3)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0])


def test_max_min_with_a_constant_operand_import():
    shape = ["N", 3]
    for op_type in ("Max", "Min"):
        model = one_node_model(op_type, shape, 13, [("c", np.array([0.5, -0.5, 0.0], np.float32))])
        graph = cg.load_onnx(model)
        assert graph.node("y").op == op_type
        matches_ort(model, graph, shape)


@pytest.mark.parametrize("opset, axis", [(11, 1), (11, -1), (11, None), (13, 1), (13, None)])
def test_log_softmax_before_and_from_opset_13(opset, axis):
    """Before 13 LogSoftmax normalizes over the axes from ``axis`` on, flattened (default 1); from 13 along ``axis``
    (default −1): the PITFALLS' Softmax change, the same for LogSoftmax."""
    shape = ["N", 3, 2, 4]
    model = one_node_model("LogSoftmax", shape, opset, **({} if axis is None else {"axis": axis}))
    graph = cg.optimize(cg.load_onnx(model), level=1)
    matches_ort(model, graph, shape)
