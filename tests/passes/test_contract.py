"""The pass contract: "changed" is read from the graph, records must agree with it, and verify=True checks
every pass that changed the graph, whatever it recorded."""
from __future__ import annotations

import pytest
from pass_helpers import chain

import cnngraph as cg
from cnngraph.passes import OptimizeError, Pass, PassResult, manager
from cnngraph.passes.contract import Fingerprint


def _first_conv(graph):
    return next(n for n in graph.layers() if n.op == "Conv2d")


def test_a_pass_that_changes_the_numbers_is_caught_by_verify(monkeypatch):
    def broken(graph, level=2):
        node = _first_conv(graph)
        graph.replace(node.name, node.op, node.inputs, node.attrs, {k: v * 1.01 for k, v in node.params.items()})
        return PassResult(graph, rewrites=["scaled"])
    monkeypatch.setattr(manager, "PIPELINE", [Pass("broken", 1, broken)] + manager.PIPELINE)
    with pytest.raises(OptimizeError, match="pass broken changed output"):
        cg.optimize(cg.models.seed_m1(), verify=True)


def _doubler(graph, level=2):
    """Doubles a weight through Graph.replace and records nothing."""
    node = _first_conv(graph)
    graph.replace(node.name, node.op, node.inputs, node.attrs, dict(node.params, weight=node.params["weight"] * 2))
    return PassResult(graph)


def test_a_silent_pass_that_changes_the_graph_is_verified_anyway(monkeypatch):
    """verify=True checked only the passes that recorded a rewrite: this one passed, output changed by 1.18."""
    monkeypatch.setattr(manager, "PIPELINE", [Pass("doubler", 1, _doubler)])
    with pytest.raises(OptimizeError, match="pass doubler changed output"):
        cg.optimize(cg.models.seed_m1(), verify=True)


def test_a_silent_pass_that_changes_the_graph_breaks_the_contract_without_verify(monkeypatch):
    monkeypatch.setattr(manager, "PIPELINE", [Pass("doubler", 1, _doubler)])
    with pytest.raises(OptimizeError, match="pass doubler changed the graph but recorded no rewrite"):
        cg.optimize(cg.models.seed_m1())


def test_a_pass_that_claims_a_rewrite_it_did_not_make_breaks_the_contract(monkeypatch):
    def boaster(graph, level=2):
        node = graph.layers()[0]
        graph.set_inputs(node.name, node.inputs)              # an edit that changes nothing (the version moves)
        return PassResult(graph, rewrites=[f"fused everything into {node.name}"])
    monkeypatch.setattr(manager, "PIPELINE", [Pass("boaster", 1, boaster)])
    with pytest.raises(OptimizeError, match="pass boaster recorded 1 rewrite.*did not change.*fused everything"):
        cg.optimize(cg.models.seed_m1())


def test_a_pass_cannot_write_into_a_parameter_in_place(monkeypatch):
    """The fingerprint sees arrays by identity only; that is sound because an in-place write cannot happen."""
    def scribbler(graph, level=2):
        _first_conv(graph).params["weight"].flat[0] = 7.0
        return PassResult(graph)
    monkeypatch.setattr(manager, "PIPELINE", [Pass("scribbler", 1, scribbler)])
    with pytest.raises(ValueError, match="read-only"):
        cg.optimize(cg.models.seed_m1())


def test_fingerprint_sees_structure_parameters_and_outputs_not_the_version():
    graph = chain(cg.Conv2d(3, 4, 3), cg.ReLU(), names=["conv", "relu"])
    before = Fingerprint(graph)
    graph.set_inputs("relu", ["conv"])                         # a no-op edit: the version moves, nothing else
    assert Fingerprint(graph) == before
    conv = graph.node("conv")
    graph.replace("conv", "Conv2d", conv.inputs, conv.attrs, {k: v.copy() for k, v in conv.params.items()})
    assert Fingerprint(graph) != before                        # equal numbers, but new arrays: a rewrite
    same = Fingerprint(graph)
    graph.output("conv")
    assert Fingerprint(graph) != same
