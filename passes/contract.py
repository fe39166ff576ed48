"""The pass contract, enforced by the manager: whether a pass changed the graph is read from the graph, and
what the pass recorded must agree with it.

A fingerprint of a graph holds its nodes (frozen, so a node object cannot change behind it) and its inputs
and outputs; nodes compare by op, inputs, attributes, type and the identity of each parameter array (the
nodes are held, so no identity can be reused while the fingerprint lives). A version counter would not do:
it is bumped by edits that change nothing, and a pass may replace a node by an equal one. Parameter arrays
are read-only in the IR (an in-place write raises), so a new value means a new array and its identity is
enough.

The contract, for every pass, built-in or registered:
  - a pass that changed the graph records at least one rewrite, and a pass that records a rewrite changed the
    graph; either mismatch is an OptimizeError naming the pass (a report that lies is a bug, like a wrong
    number);
  - under verify=True, every pass that changed the graph is run on the same random inputs as the graph before
    it, and outputs that differ beyond cnngraph.tolerance are an OptimizeError naming the pass.
"""
from __future__ import annotations

import numpy as np

from cnngraph.tolerance import tolerance_violation

from .base import OptimizeError, PassResult

VERIFY_BATCH = 2


class Fingerprint:
    """The graph's nodes (frozen objects, held) and its inputs and outputs. Two fingerprints are equal when
    every node is the same object or an equal one: same op, inputs, attributes, type and parameter arrays."""
    __slots__ = ("ends", "nodes")

    def __init__(self, graph):
        self.ends = (tuple(graph.inputs), tuple(graph.outputs))
        self.nodes = {node.name: node for node in graph.nodes}

    def __eq__(self, other) -> bool:
        if not isinstance(other, Fingerprint) or self.ends != other.ends or self.nodes.keys() != other.nodes.keys():
            return False
        return all(node is other.nodes[name] or _key(node) == _key(other.nodes[name])
                   for name, node in self.nodes.items())

    __hash__ = None


def _key(node) -> tuple:
    """What a node computes; a parameter by its array's identity (read-only arrays: new values, new array)."""
    params = tuple((name, id(array), array.shape, array.dtype.str) for name, array in sorted(node.params.items()))
    return node.op, tuple(node.inputs), repr(sorted(node.attrs.items())), params, node.type


def check_records(name: str, changed: bool, result: PassResult) -> None:
    """Hold a pass's records to what the graph says it did."""
    if changed and not result.rewrites:
        raise OptimizeError(f"pass {name} changed the graph but recorded no rewrite (a pass records what it "
                            f"rewrites: passes.Rewrite, or a string)")
    if result.rewrites and not changed:
        raise OptimizeError(f"pass {name} recorded {len(result.rewrites)} rewrite(s) but the graph did not "
                            f"change; first: {result.rewrites[0]}")


class Verifier:
    """Translation validation: the graph's outputs on fixed random inputs, compared after each change."""

    def __init__(self, graph, seed: int = 0):
        rng = np.random.default_rng(seed)
        shapes = [[d if isinstance(d, int) else VERIFY_BATCH for d in graph.type_of(n).shape] for n in graph.inputs]
        self.arrays = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
        self.expected = self._outputs(graph)

    def _outputs(self, graph) -> tuple:
        from cnngraph.backends.numpy_backend import run
        outputs = run(graph.copy(), *self.arrays)          # a fresh copy: no compiled plan can be stale
        return outputs if isinstance(outputs, tuple) else (outputs,)

    def check(self, graph, what: str) -> None:
        """Raise naming ``what`` and the first output that moved beyond the tolerance; else remember the new
        outputs as the reference for the next change."""
        got = self._outputs(graph)
        for output, a, b in zip(graph.outputs, got, self.expected):
            violation = tolerance_violation(a, b)
            if violation > 0:
                with np.errstate(invalid="ignore"):
                    difference = float(np.max(np.abs(a.astype(np.float64) - b)))
                raise OptimizeError(f"{what} changed output {output!r}: max difference {difference:.3g} is "
                                    f"{violation:.3g}× the float32 tolerance")
        self.expected = got
