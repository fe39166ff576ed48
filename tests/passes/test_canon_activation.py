"""canon_activation: spelled-out activations (x·sigmoid(x), relu6(x + 3)/6, the erf and tanh forms of GELU,
x·tanh(softplus(x))) become one layer; not across a second reader, a graph output, an inexact constant or a
constant that broadcasts x to a larger shape."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st
from pass_helpers import assert_equivalent, named_ops, refusals

import cnngraph as cg


class Builder:
    """A graph x -> y written node by node with our ops (as the importer maps an exporter's nodes)."""

    def __init__(self, shape=(None, 3, 4, 4)):
        self.graph = cg.Graph("g")
        self.x = self.graph.input("x", shape)
        self.count = 0

    def const(self, value, shape=()):
        self.count += 1
        array = np.full(shape, value, np.float32)
        return self.graph.add("Constant", [], dict(shape=array.shape), dict(value=array), name=f"c{self.count}")

    def __call__(self, op, *inputs, name=None, **attrs):
        if op == "Add" and any(self.graph.type_of(i).shape != self.graph.type_of(inputs[0]).shape for i in inputs):
            attrs["broadcast"] = True
        return self.graph.add(op, list(inputs), attrs, name=name)

    def done(self, y, *more):
        self.graph.output(y, *more)
        return self.graph


def silu(b, swap=False):
    s = b("Sigmoid", b.x, name="s")
    return b("Mul", s, b.x, name="y") if swap else b("Mul", b.x, s, name="y")


SQRT2 = math.sqrt(2)


def gelu_erf(b, divide=True, sqrt2=SQRT2, half=0.5, order=0):
    """order 0: Mul(Mul(x, 1 + erf), 0.5) (TorchScript); 1: Mul(x, Mul(0.5, 1 + erf)) (dynamo)."""
    scaled = b("Div", b.x, b.const(sqrt2), name="d") if divide else b("Mul", b.x, b.const(1 / sqrt2), name="d")
    plus = b("Add", b("Erf", scaled, name="e"), b.const(1.0), name="a")
    if order == 0:
        return b("Mul", b("Mul", b.x, plus, name="m"), b.const(half), name="y")
    return b("Mul", b.x, b("Mul", b.const(half), plus, name="h"), name="y")


def gelu_tanh(b, power=False, kappa=0.044715):
    cube = b("Pow", b.x, b.const(3.0), name="p") if power else b("Mul", b.x, b("Mul", b.x, b.x, name="xx"), name="p")
    shift = b("Add", b.x, b("Mul", cube, b.const(kappa), name="k"), name="s")
    inner = b("Tanh", b("Mul", shift, b.const(math.sqrt(2 / math.pi)), name="u"), name="t")
    return b("Mul", b("Mul", b.x, b("Add", inner, b.const(1.0), name="a"), name="m"), b.const(0.5), name="y")


def hardswish_clip(b, clip="ReLU6", divide_first=False, three=3.0):
    shifted = b("Add", b.const(three), b.x, name="a")
    relu6 = b("ReLU6", shifted, name="c") if clip == "ReLU6" else b("Hardtanh", shifted, name="c", min_val=0.0,
                                                                     max_val=6.0)
    if divide_first:
        return b("Mul", b("Div", relu6, b.const(6.0), name="h"), b.x, name="y")
    return b("Div", b("Mul", b.x, relu6, name="m"), b.const(6.0), name="y")


def mish(b, beta=1.0, threshold=20.0):
    soft = b("Softplus", b.x, name="sp", beta=beta, threshold=threshold)
    return b("Mul", b.x, b("Tanh", soft, name="t"), name="y")


def softplus_beta(b, beta=3.0, divisor=3.0, inner_beta=1.0):
    soft = b("Softplus", b("Mul", b.x, b.const(beta), name="bx"), name="sp", beta=inner_beta, threshold=20.0)
    return b("Div", soft, b.const(divisor), name="y")


POSITIVE = {
    "silu": (lambda b: silu(b), "SiLU", {}),
    "silu_swapped": (lambda b: silu(b, swap=True), "SiLU", {}),
    "gelu_div_torchscript": (lambda b: gelu_erf(b), "GELU", {"approximate": "none"}),
    "gelu_mul_dynamo": (lambda b: gelu_erf(b, divide=False, order=1), "GELU", {"approximate": "none"}),
    "gelu_float32_constants": (lambda b: gelu_erf(b, sqrt2=float(np.float32(1.4142135))), "GELU",
                               {"approximate": "none"}),
    "gelu_tanh_cubed": (lambda b: gelu_tanh(b), "GELU", {"approximate": "tanh"}),
    "gelu_tanh_pow": (lambda b: gelu_tanh(b, power=True), "GELU", {"approximate": "tanh"}),
    "hardswish_relu6_div": (lambda b: hardswish_clip(b), "Hardswish", {}),
    "hardswish_hardtanh_div_first": (lambda b: hardswish_clip(b, "Hardtanh", divide_first=True), "Hardswish", {}),
    "hardswish_of_hardsigmoid": (lambda b: b("Mul", b("Hardsigmoid", b.x, name="h", alpha=1 / 6, beta=0.5), b.x,
                                                       name="y"), "Hardswish", {}),
    "hardsigmoid": (lambda b: b("Div", b("ReLU6", b("Add", b.x, b.const(3.0), name="a"), name="c"), b.const(6.0),
                                name="y"), "Hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    "mish": (lambda b: mish(b), "Mish", {}),
    "softplus_beta": (lambda b: softplus_beta(b), "Softplus", {"beta": 3.0, "threshold": 20.0}),
    "softplus_beta_as_product": (lambda b: b("Mul", b.const(0.5), b("Softplus", b("Mul", b.const(2.0), b.x),
                                                                       beta=1.0, threshold=20.0)),
                                 "Softplus", {"beta": 2.0, "threshold": 20.0}),
}


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_spelled_out_activation_becomes_one_layer(name):
    build, op, attrs = POSITIVE[name]
    b = Builder()
    graph = b.done(build(b))
    optimized = cg.optimize(graph, level=1)
    final = optimized.layers()[-1].name
    assert named_ops(optimized) == [(final, op)]
    assert optimized.node(final).attrs == attrs
    assert_equivalent(graph, optimized)


def test_the_layer_fuses_into_the_conv_before_it_at_level_2():
    b = Builder()
    conv = b.graph.apply(cg.Conv2d(3, 3, 3, padding=1), b.x, name="conv")
    b.x = conv
    graph = b.done(gelu_erf(b))
    optimized = cg.optimize(graph, level=2)
    assert named_ops(optimized) == [("y", "Conv2d")]
    assert optimized.node("y").attrs["activation"] == {"op": "GELU", "attrs": {"approximate": "none"}}
    assert_equivalent(graph, optimized)


# --- must not fire ---------------------------------------------------------------------------------------------
POSITIVE_BUILD = {"silu": silu, "gelu": gelu_erf, "gelu_tanh": gelu_tanh, "hardswish": hardswish_clip, "mish": mish}
READ = {"silu": "s", "gelu": "e", "gelu_tanh": "t", "hardswish": "c", "mish": "sp"}


@pytest.mark.parametrize("name", sorted(POSITIVE_BUILD))
def test_an_intermediate_read_elsewhere_stays(name):
    b = Builder()
    y = POSITIVE_BUILD[name](b)
    graph = b.done(y, b("Neg", READ[name], name="other"))
    optimized = cg.optimize(graph, level=1)
    assert READ[name] in {n.name for n in optimized.layers()}
    assert not {"SiLU", "GELU", "Hardswish", "Mish"} & {n.op for n in optimized.layers()}
    assert any(f"{READ[name]} has 2 readers" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("name", sorted(POSITIVE_BUILD))
def test_an_intermediate_graph_output_stays(name):
    b = Builder()
    graph = b.done(POSITIVE_BUILD[name](b), READ[name])
    optimized = cg.optimize(graph, level=1)
    assert not {"SiLU", "GELU", "Hardswish", "Mish"} & {n.op for n in optimized.layers()}
    assert any(f"{READ[name]} is a graph output" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


NEGATIVE = {
    "sigmoid_of_another_value": lambda b: b("Mul", b.x, b("Sigmoid", b("Neg", b.x, name="n"), name="s"), name="y"),
    "gelu_with_0.7071": lambda b: gelu_erf(b, divide=False, sqrt2=1 / 0.7071),
    "gelu_with_half_0.6": lambda b: gelu_erf(b, half=0.6),
    "gelu_tanh_other_kappa": lambda b: gelu_tanh(b, kappa=0.05),
    "hardswish_plus_2": lambda b: hardswish_clip(b, three=2.0),
    "x_times_hardsigmoid_of_onnx_defaults": lambda b: b("Mul", b("Hardsigmoid", b.x, alpha=0.2, beta=0.5), b.x),
    "mish_of_softplus_beta_2": lambda b: mish(b, beta=2.0),
    "mish_of_softplus_threshold_1": lambda b: mish(b, threshold=1.0),
    "softplus_divided_by_another_beta": lambda b: softplus_beta(b, divisor=2.0),
    "softplus_of_softplus_beta_2": lambda b: softplus_beta(b, inner_beta=2.0),
    "relu6_clip_of_other_bounds": lambda b: b("Div", b("Mul", b.x, b("Hardtanh", b("Add", b.x, b.const(3.0)),
                                                                      min_val=0.0, max_val=5.0)), b.const(6.0)),
}


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_an_inexact_pattern_stays(name):
    b = Builder()
    graph = b.done(NEGATIVE[name](b))
    optimized = cg.optimize(graph, level=1)
    assert [n.op for n in optimized.layers() if n.op != "Constant"] == [n.op for n in graph.layers() if n.op != "Constant"]
    assert_equivalent(graph, optimized)


def test_a_constant_that_broadcasts_x_larger_is_no_scalar():
    b = Builder(shape=(None, 4))
    s = b("Sigmoid", b.x, name="s")
    graph = b.done(b("Mul", b("Mul", b.x, b.const(1.0, shape=(1, 1, 1)), name="m"), s, name="y"))
    optimized = cg.optimize(graph, level=1)
    assert "SiLU" not in {n.op for n in optimized.layers()}
    assert any("not the shape of x" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


# --- any operand order and any grouping of the product ---------------------------------------------------------
def product_of(b, draw, factors, constant):
    """constant · Π factors as binary Mul nodes in a drawn order and grouping, or a Div by 1/constant (a constant
    1 is left out: x·sigmoid(x)·1 is SiLU(x)·1, rightly)."""
    divide = constant != 1.0 and draw(st.booleans())              # the constant becomes a divisor instead
    items = list(factors) if divide or constant == 1.0 else [*factors, b.const(constant)]
    items = draw(st.permutations(items))
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        items[i:i + 2] = [b("Mul", items[i], items[i + 1])]
    return b("Div", items[0], b.const(1 / constant)) if divide else items[0]


def add_one(b, draw, value):
    return b("Add", *((value, b.const(1.0)) if draw(st.booleans()) else (b.const(1.0), value)))


@st.composite
def spelled_out(draw):
    b = Builder()
    kind = draw(st.sampled_from(["GELU", "GELU tanh", "SiLU", "Hardswish", "Mish"]))
    if kind == "GELU":
        argument = product_of(b, draw, [b.x], 1 / math.sqrt(2))
        y = product_of(b, draw, [b.x, add_one(b, draw, b("Erf", argument))], 0.5)
    elif kind == "GELU tanh":
        cube = product_of(b, draw, [b.x, b.x, b.x], 0.044715)
        shift = b("Add", *draw(st.permutations([b.x, cube])))
        inner = b("Tanh", product_of(b, draw, [shift], math.sqrt(2 / math.pi)))
        y = product_of(b, draw, [b.x, add_one(b, draw, inner)], 0.5)
    elif kind == "SiLU":
        y = product_of(b, draw, [b.x, b("Sigmoid", b.x)], 1.0)
    elif kind == "Hardswish":
        shifted = b("Add", *draw(st.permutations([b.x, b.const(3.0)])))
        y = product_of(b, draw, [b.x, b("ReLU6", shifted)], 1 / 6)
    else:
        y = product_of(b, draw, [b.x, b("Tanh", b("Softplus", b.x, beta=1.0, threshold=20.0))], 1.0)
    return kind, b.done(y)


@examples(60)
@given(spelled_out())
def test_any_grouping_and_order_becomes_one_layer(case):
    kind, graph = case
    optimized = cg.optimize(graph, level=1)
    op, _, form = kind.partition(" ")
    assert [n.op for n in optimized.layers()] == [op]
    assert optimized.layers()[0].attrs == ({"approximate": form or "none"} if op == "GELU" else {})
    assert_equivalent(graph, optimized)
