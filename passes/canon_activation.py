"""Canonicalize the activations exporters spell out element by element into the one layer each computes
(level 1: the importer maps every ONNX node to one node; these rules give back the layer PyTorch had).

A product is read through its Mul nodes and its divisions by a constant, each read only by the product, as
scale · Π factors (c·a·b, (a·b)/c and a·(b·c) alike); the rules then match the factors:
  silu         x · sigmoid(x)                                           -> SiLU(x)
  hardsigmoid  relu6(x + 3) / 6  (Clip(0, 6) is imported as ReLU6)      -> Hardsigmoid(x)
  hardswish    x · hardsigmoid(x),  x · relu6(x + 3) / 6                -> Hardswish(x)
  gelu         0.5 · x · (1 + erf(x / √2))  (or erf(x · 1/√2))          -> GELU(x)
  gelu_tanh    0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))      -> GELU(x, approximate="tanh")
               (x³ as x·x·x or Pow(x, 3))
  mish         x · tanh(softplus(x))                                    -> Mish(x)
  softplus_beta  softplus(β·x) / β  (how both exporters write beta ≠ 1)   -> Softplus(x; β)
Each layer computes its formula exactly as written here, so a rewrite changes float32 results only by rounding.
A rule fires only when every node it removes is read by the pattern alone and is no graph output, the
constants equal the formula's to float32 precision (a relative 1e-6: 0.7071 for 1/√2 is not GELU), and the
result has the type of x (a constant that broadcasts x to a larger shape is no scalar).
"""
from __future__ import annotations

import math

from cnngraph.layers.modern_activations import SOFTPLUS_EXACT_THRESHOLD
from cnngraph.onnx.handler_tools import nice_float

from .base import constant_value, sole_reader
from .rules import rule, rule_pass

RELATIVE = 1e-6


def _scalar(graph, value: str) -> float | None:
    array = constant_value(graph, value)
    return float(array.reshape(-1)[0]) if array is not None and array.size == 1 else None


def _equals(value, target: float) -> bool:
    return value is not None and abs(value - target) <= RELATIVE * abs(target)


def _product(graph, root):
    """(scale, factors, nodes) with root's value = scale · Π factors, ``nodes`` the Mul/Div nodes read, root
    first; None when root is no product (a Div by a computed value)."""
    scale, factors, nodes = 1.0, [], []

    def visit(name: str, is_root: bool) -> bool:
        nonlocal scale
        node = graph.node(name)
        expandable = node.op in ("Mul", "Div") and len(node.inputs) == 2 and \
            (is_root or sole_reader(graph, name)[1] is None)
        if not expandable:
            factors.append(name)
            return True
        if node.op == "Div":
            divisor = _scalar(graph, node.inputs[1])
            if divisor is None or divisor == 0.0:
                if is_root:
                    return False
                factors.append(name)
                return True
            nodes.append(node)
            scale /= divisor
            return _operand(node.inputs[0])
        nodes.append(node)
        return _operand(node.inputs[0]) and _operand(node.inputs[1])

    def _operand(name: str) -> bool:
        nonlocal scale
        value = _scalar(graph, name)
        if value is not None:
            scale *= value
            return True
        return visit(name, False)

    return (scale, factors, nodes) if visit(root.name, True) else None


def _of_x(graph, factors, op: str):
    """(x, the node of op over x) when the factors are x and op(x)."""
    if len(factors) != 2:
        return None
    for x, other in (factors, factors[::-1]):
        node = graph.node(other)
        if node.op == op and tuple(node.inputs) == (x,):
            return x, node
    return None


def _add_constant(graph, name: str, constant: float, op: str = ""):
    """(the Add node, its other operand) of Add(y, c) or Add(c, y) with c ≈ constant, else None."""
    node = graph.node(name)
    if node.op != "Add" or len(node.inputs) != 2:
        return None
    for other, addend in (node.inputs, node.inputs[::-1]):
        if _equals(_scalar(graph, addend), constant) and (not op or graph.node(other).op == op):
            return node, other
    return None


def _replace(m, nodes, op: str, x: str, attrs=None):
    """Check that every node the rewrite removes is read by the pattern alone and that the result keeps the type,
    then make the matched node (m.node) ``op`` over x and erase the others (constants are left to dead_code)."""
    root, graph = m.node, m.graph
    order = {name: index for index, name in enumerate(graph.topo_order())}
    nodes = sorted({n.name: n for n in nodes}.values(), key=lambda n: order[n.name])
    for node in nodes:
        if node.name != root.name and (why := m.read_elsewhere(node.name)):
            return m.refuse(why, *nodes)
    if graph.type_of(x) != root.type:
        return m.refuse(f"{root.name} has shape {list(root.type.shape)}, not the shape of {x}", *nodes)
    graph.replace(root.name, op, [x], attrs or {})
    for node in reversed(nodes):                      # readers before their producers
        if node.name != root.name:
            graph.erase(node.name)
    return m.rewrote(nodes, [root.name])


def _product_of(m, scale_wanted: float):
    """(factors, nodes) of the matched product when its scale is scale_wanted, else None."""
    found = _product(m.graph, m.node)
    if found is None or not _equals(found[0], scale_wanted):
        return None
    return found[1], found[2]


def _relu6_of_x_plus_3(graph, name: str):
    """(x, [the nodes]) when ``name`` is relu6(x + 3): a ReLU6 or Hardtanh(0, 6) of Add(x, 3)."""
    node = graph.node(name)
    bounds = (node.attrs.get("min_val"), node.attrs.get("max_val"))
    if not (node.op == "ReLU6" or (node.op == "Hardtanh" and bounds == (0.0, 6.0))):
        return None
    found = _add_constant(graph, node.inputs[0], 3.0)
    return None if found is None else (found[1], [node, found[0]])


def _scaled_factors(graph, name: str, scale: float):
    """(factors, nodes) when ``name`` is a product of scale times its factors."""
    node = graph.node(name)
    if node.op not in ("Mul", "Div"):
        return None
    found = _product(graph, node)
    if found is None or not _equals(found[0], scale):
        return None
    return found[1], found[2]


PRODUCT = lambda node: node.op in ("Mul", "Div")  # noqa: E731


@rule(anchor=PRODUCT)
def silu(m):
    """x · sigmoid(x) -> SiLU(x)"""
    found = _product_of(m, 1.0)
    pair = found and _of_x(m.graph, found[0], "Sigmoid")
    if not pair:
        return None
    x, gate = pair
    return _replace(m, [*found[1], gate], "SiLU", x)


@rule(anchor=PRODUCT)
def hardsigmoid(m):
    """relu6(x + 3) / 6 -> Hardsigmoid(x) (PyTorch's: alpha 1/6, beta 1/2)"""
    found = _product_of(m, 1 / 6)
    if not found or len(found[0]) != 1:
        return None
    inner = _relu6_of_x_plus_3(m.graph, found[0][0])
    if inner is None:
        return None
    x, nodes = inner
    return _replace(m, [*found[1], *nodes], "Hardsigmoid", x, dict(alpha=1 / 6, beta=0.5))


@rule(anchor=PRODUCT)
def hardswish(m):
    """x · hardsigmoid(x) -> Hardswish(x);  x · relu6(x + 3) / 6 -> Hardswish(x)"""
    graph = m.graph
    found = _product_of(m, 1.0)
    pair = found and _of_x(graph, found[0], "Hardsigmoid")
    if pair and graph.node(pair[1].name).layer.is_pytorch(pair[1].attrs):
        return _replace(m, [*found[1], pair[1]], "Hardswish", pair[0])
    found = _product_of(m, 1 / 6)
    if not found or len(found[0]) != 2:
        return None
    for x, other in (found[0], found[0][::-1]):
        inner = _relu6_of_x_plus_3(graph, other)
        if inner is not None and inner[0] == x:
            return _replace(m, [*found[1], *inner[1]], "Hardswish", x)
    return None


def _one_plus(graph, factors, op: str):
    """(x, the Add node, the op node) when the factors are x and (1 + op(·))."""
    if len(factors) != 2:
        return None
    for x, other in (factors, factors[::-1]):
        found = _add_constant(graph, other, 1.0, op)
        if found is not None:
            return x, found[0], graph.node(found[1])
    return None


@rule(anchor=PRODUCT)
def gelu(m):
    """0.5 · x · (1 + erf(x / √2)) -> GELU(x)"""
    graph = m.graph
    found = _product_of(m, 0.5)
    match = found and _one_plus(graph, found[0], "Erf")
    if not match:
        return None
    x, add, erf = match
    argument = _scaled_factors(graph, erf.inputs[0], 1 / math.sqrt(2))
    if argument is None or argument[0] != [x]:
        return None
    return _replace(m, [*found[1], add, erf, *argument[1]], "GELU", x, dict(approximate="none"))


def _cube_nodes(graph, name: str, x: str):
    """The nodes of 0.044715 · x³ (x·x·x or Pow(x, 3)), else None."""
    found = _scaled_factors(graph, name, 0.044715)
    if found is None:
        return None
    factors, nodes = found
    if factors == [x, x, x]:
        return nodes
    power = graph.node(factors[0]) if len(factors) == 1 else None
    if power is not None and power.op == "Pow" and power.inputs[0] == x and _equals(_scalar(graph, power.inputs[1]), 3.0):
        return [*nodes, power]
    return None


@rule(anchor=PRODUCT)
def gelu_tanh(m):
    """0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))) -> GELU(x, approximate="tanh")"""
    graph = m.graph
    found = _product_of(m, 0.5)
    match = found and _one_plus(graph, found[0], "Tanh")
    if not match:
        return None
    x, add, tanh = match
    argument = _scaled_factors(graph, tanh.inputs[0], math.sqrt(2 / math.pi))
    if argument is None or len(argument[0]) != 1:
        return None
    shift = graph.node(argument[0][0])
    if shift.op != "Add" or len(shift.inputs) != 2 or x not in shift.inputs:
        return None
    cube = _cube_nodes(graph, shift.inputs[1] if shift.inputs[0] == x else shift.inputs[0], x)
    if cube is None:
        return None
    return _replace(m, [*found[1], add, tanh, *argument[1], shift, *cube], "GELU", x, dict(approximate="tanh"))


@rule(anchor=PRODUCT)
def mish(m):
    """x · tanh(softplus(x)) -> Mish(x), softplus with beta 1 (a threshold of 15 or more is exact in float32)"""
    graph = m.graph
    found = _product_of(m, 1.0)
    if not found or len(found[0]) != 2:
        return None
    for x, other in (found[0], found[0][::-1]):
        tanh = graph.node(other)
        softplus = graph.node(tanh.inputs[0]) if tanh.op == "Tanh" else None
        if softplus is not None and softplus.op == "Softplus" and tuple(softplus.inputs) == (x,):
            break
    else:
        return None
    if softplus.attrs["beta"] != 1.0 or softplus.attrs["threshold"] < SOFTPLUS_EXACT_THRESHOLD:
        return m.refuse(f"{softplus.name} is Softplus{tuple(softplus.attrs.values())}, not Mish's (1, 20)",
                        softplus, tanh, m.node)
    return _replace(m, [*found[1], tanh, softplus], "Mish", x)


@rule(anchor=PRODUCT)
def softplus_beta(m):
    """softplus(β·x) / β -> Softplus(x; β), the inner softplus of beta 1: exact, thresholds included (β·x > t
    gives β·x/β = x on both sides)"""
    graph = m.graph
    found = _product(graph, m.node)
    if found is None or len(found[1]) != 1 or found[0] == 0.0:
        return None
    scale, (inner,), nodes = found
    softplus = graph.node(inner)
    if softplus.op != "Softplus" or softplus.attrs["beta"] != 1.0:
        return None
    argument = _scaled_factors(graph, softplus.inputs[0], 1 / scale)
    if argument is None or len(argument[0]) != 1 or _equals(1 / scale, 1.0):
        return None
    attrs = dict(beta=nice_float(1 / scale), threshold=softplus.attrs["threshold"])
    return _replace(m, [*nodes, softplus, *argument[1]], "Softplus", argument[0][0], attrs)


PASS = rule_pass("canon_activation", 1, [silu, hardsigmoid, hardswish, gelu, gelu_tanh, mish, softplus_beta],
                 "activations spelled out element by element (x·sigmoid(x), the erf form of GELU, ...) made one layer")
