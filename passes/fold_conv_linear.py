"""Collapse a linear feature extractor into the Linear that reads it: x -> (Conv ...) -> Flatten -> Linear with
nothing non-linear between is one Linear on the flattened input.

The chain before the Flatten (convolutions, BatchNorms, average pools, pads, ...: every op flagged ``linear``,
one data input, computing each sample from that sample alone) is an affine map of the flattened input,
    flatten(chain(x)) = T·flatten(x) + t,   T of shape (F, D), D = C·H·W of the chain's input,
T being the chain's Toeplitz matrix. It is computed exactly by running the chain itself on the identity basis:
t = chain(0), and column d of T is chain(e_d) − t. Then
    W·(T·x + t) + b = (W·T)·x + (W·t + b),
one Linear of D inputs (a bias when the old one had one or t ≠ 0), after a Flatten from axis 1 that keeps
the batch symbolic. The cost model (passes/cost.py) decides: at level 2 neither MACs nor parameters may grow, at
level 3 MACs must fall. Computing T costs D samples of the chain: a chain for which that exceeds
MAX_BASIS_MACS, or whose input has more than MAX_FEATURES values, is refused (said in the record). A static
batch B runs the basis in chunks of B samples. T is computed by the NumPy backend in float32 (exact inputs,
one rounding per output), the product W·T in float64, rounded once to float32.
"""
from __future__ import annotations

import numpy as np

from cnngraph.graph import Graph
from cnngraph.layer import Operand, lookup
from cnngraph.shapes import TensorType

from . import cost
from .base import sole_reader
from .rules import rule, rule_pass

MAX_BASIS_MACS = 1 << 30          # D samples through the chain: about a second of BLAS at most
MAX_FEATURES = 1 << 14            # D, the basis size (a static batch of 1 runs it sample by sample)


def _in_chain(graph, node) -> bool:
    """An affine per-sample map of one input that may be part of the collapsed chain; it keeps the batch as its
    first axis, so each sample's values stay one contiguous block."""
    if not (node.layer.linear and not node.layer.constant and len(node.inputs) == 1
            and not node.attrs.get("activation")):
        return False
    source = graph.type_of(node.inputs[0]).shape
    return (node.layer.per_sample(node.attrs, len(source)) and bool(source) and bool(node.type.shape)
            and node.type.shape[0] == source[0])


def _chain(graph, value) -> list:
    """The nodes from ``value`` back while each is in_chain and read only by the next one (first to last)."""
    chain = []
    node = graph.node(value)
    while node.op != "Input" and _in_chain(graph, node) and sole_reader(graph, node.name)[0] is not None:
        chain.append(node)
        node = graph.node(node.inputs[0])
    return chain[::-1]


def toeplitz(chain, source_type) -> tuple[np.ndarray, np.ndarray]:
    """(T, t) of the chain: its output flattened is T·x + t for x its input flattened (batch axis apart)."""
    from cnngraph.backends.numpy_backend import run as run_numpy
    tiny = Graph("toeplitz")
    batch, dims = source_type.shape[0], source_type.shape[1:]
    tiny.input(chain[0].inputs[0], source_type.shape)         # the same batch dim: symbolic, or a static one
    for node in chain:
        tiny.add(node.op, node.inputs, node.attrs, node.params, name=node.name)
    tiny.output(chain[-1].name)
    size = int(np.prod(dims))
    rows = size + 1                                           # the basis, then the zero sample
    step = batch if isinstance(batch, int) else rows          # a static batch: the basis in chunks of that size
    basis = np.zeros((-(-rows // step) * step, size), np.float32)
    basis[:size, :size] = np.eye(size, dtype=np.float32)
    out = np.concatenate([np.asarray(run_numpy(tiny, chunk.reshape(step, *dims)), dtype=np.float64).reshape(step, -1)
                          for chunk in np.split(basis, len(basis) // step)])
    return (out[:size] - out[size]).T, out[size]


@rule(anchor=lambda node: node.op == "Linear")
def collapse_conv_linear(m):
    """x -> chain -> Flatten(1) -> Linear(W, b)  ->  x -> Flatten(1) -> Linear(W·T, W·t + b)"""
    linear, graph = m.node, m.graph
    flatten = m.input(0)
    if flatten.op != "Flatten" or flatten.attrs["start_dim"] != 1 or flatten.attrs["end_dim"] not in (
            -1, len(graph.type_of(flatten.inputs[0]).shape) - 1):
        return None
    chain = _chain(graph, flatten.inputs[0])
    if not chain:
        return None
    if why := m.read_elsewhere(flatten.name):
        return m.refuse(why, *chain, flatten, linear)
    source = graph.type_of(chain[0].inputs[0])
    if not all(isinstance(d, int) for d in source.shape[1:]):
        return m.refuse(f"the chain's input {chain[0].inputs[0]} has symbolic features {source.shape}", *chain,
                        flatten, linear)
    size = int(np.prod(source.shape[1:]))
    before = cost.of_nodes(graph, [*chain, flatten, linear])
    attrs = dict(linear.attrs, in_features=size, bias=True)
    flat = Operand("flattened", TensorType((source.shape[0], size)))
    after = cost.Cost(lookup("Linear").macs(attrs, [flat], linear.type), cost.param_count("Linear", attrs))
    if why := cost.allows(m.level, before, after):
        return m.refuse(why, *chain, flatten, linear)
    chain_macs = cost.of_nodes(graph, chain).macs
    if size * chain_macs > MAX_BASIS_MACS or size > MAX_FEATURES:
        return m.refuse(f"computing its Toeplitz matrix would take {size} × {chain_macs} MACs", *chain, flatten,
                        linear)
    matrix, offset = toeplitz(chain, source)
    weight = linear.params["weight"].astype(np.float64)
    bias = weight @ offset + (linear.params["bias"].astype(np.float64) if "bias" in linear.params else 0.0)
    params = {"weight": (weight @ matrix).astype(np.float32)}
    if "bias" in linear.params or np.any(offset):
        params["bias"] = np.broadcast_to(bias, weight.shape[:1]).astype(np.float32)
    else:
        attrs["bias"] = False
    new_flatten = graph.add("Flatten", [chain[0].inputs[0]], dict(start_dim=1, end_dim=-1))
    graph.replace(linear.name, "Linear", [new_flatten], attrs, params)
    for node in [flatten, *reversed(chain)]:
        graph.erase(node.name)
    return m.rewrote([*chain, flatten, linear], [graph.node(linear.name).inputs[0], linear.name])


PASS = rule_pass("fold_conv_linear", 2, [collapse_conv_linear],
                 "a linear chain (Conv ...) -> Flatten -> Linear collapsed into one Linear, when the cost allows")
