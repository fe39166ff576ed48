"""The pass manager: levels, disabling by name, the report, registered passes, the fixed point and its bound."""
from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import assert_equivalent, chain, named_ops, ops, random_bn, refusals

import cnngraph as cg
from cnngraph import passes
from cnngraph.passes import OptimizeError, Pass, PassResult, Rewrite, manager


def test_optimize_returns_a_new_graph_and_leaves_the_input_alone():
    graph = cg.models.seed_m2()
    version, layers = graph.version, named_ops(graph)
    optimized = cg.optimize(graph)
    assert graph.version == version and named_ops(graph) == layers
    assert optimized is not graph and len(optimized.layers()) < len(layers)
    assert_equivalent(graph, optimized)


def test_levels():
    rng = np.random.default_rng(0)
    graph = chain(cg.Conv2d(3, 4, 3), random_bn(4, rng), cg.ReLU(), cg.Dropout(0.5))
    assert ops(cg.optimize(graph, level=0)) == ops(graph)
    assert cg.optimize(graph, level=0).report.runs == []
    assert ops(cg.optimize(graph, level=1)) == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout"]   # output kept
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "Dropout"]
    for bad in (4, -1, True, "2"):
        with pytest.raises(ValueError, match="level"):
            cg.optimize(graph, level=bad)


def test_disable_takes_names_and_refuses_unknown_ones():
    graph = chain(cg.Conv2d(3, 4, 3), cg.ReLU())
    assert ops(cg.optimize(graph, disable=["fuse_activation"])) == ["Conv2d", "ReLU"]
    with pytest.raises(ValueError, match="fuse_activation"):
        cg.optimize(graph, disable=["fuse_relu"])


def test_disable_takes_a_single_name_as_a_string():
    """cg.optimize(g, disable="cse") reported unknown passes 'c', 'e', 's'."""
    graph = chain(cg.Conv2d(3, 4, 3), cg.ReLU())
    assert ops(cg.optimize(graph, disable="fuse_activation")) == ["Conv2d", "ReLU"]
    assert "cse" not in [run.name for run in cg.optimize(graph, disable="cse").report.runs]
    with pytest.raises(ValueError, match=r"unknown passes \['fuse_relu'\]"):
        cg.optimize(graph, disable="fuse_relu")


def test_report_lists_passes_rewrites_and_refusals():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 8, 8))
    conv = graph.apply(cg.Conv2d(3, 4, 3), x, name="conv")
    graph.output(graph.apply(cg.ReLU(), conv, name="relu"), graph.apply(cg.Sigmoid(), conv, name="gate"))
    report = cg.optimize(graph).report
    text = str(report)
    assert "fuse_activation" in text and "fold_conv" in text
    assert report.rewrites == []
    refusal = report.refusals[0]
    assert (refusal.rule, refusal.reason, [n.name for n in refusal.nodes]) == ("fuse_activation", "conv has 2 readers",
                                                                             ["conv", "relu"])
    assert "fuse_activation: conv (Conv2d) + relu (ReLU) not rewritten: conv has 2 readers" in text


def test_report_records_say_what_was_rewritten_into_what():
    graph = chain(cg.Conv2d(3, 4, 3), cg.ReLU(), names=["conv", "relu"])
    report = cg.optimize(graph).report
    record, = report.rewrites
    assert record.rule == "fuse_activation"
    assert [(n.name, n.op) for n in record.before] == [("conv", "Conv2d"), ("relu", "ReLU")]
    assert [(n.name, n.op) for n in record.after] == [("relu", "Conv2d+ReLU")]
    assert str(record) == "fuse_activation: conv (Conv2d) + relu (ReLU) -> relu (Conv2d+ReLU 3→4, 3×3)"
    run, = [r for r in report.runs if r.changed]
    assert (run.name, run.round, run.before[0], run.after[0]) == ("fuse_activation", 1, 2, 1)
    assert all(r.seconds >= 0 for r in report.runs)


def test_refusals_are_those_of_the_settled_graph():
    """A refusal overcome in a later round is not reported: the two reshapes are not merged while the first has
    two (equal) readers; once cse merges those, they are."""
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 3, 4))
    first = graph.apply(cg.Flatten(2, 3), x, name="first")
    a, b = graph.apply(cg.Flatten(), first, name="a"), graph.apply(cg.Flatten(), first, name="b")
    graph.output(graph.apply(cg.Add(), a, b, name="sum"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Flatten", "Add"]
    assert refusals(optimized) == []
    assert any("first has 2 readers" in str(r) for run in optimized.report.runs for r in run.refusals)
    assert_equivalent(graph, optimized)


def test_a_pass_that_breaks_the_graph_is_named_with_the_ones_before(monkeypatch):
    def breaking(graph, level=2):
        node = graph.layers()[0]                                 # a definition that does not fit: refused
        graph.replace(node.name, node.op, node.inputs, dict(node.attrs, out_channels=99), node.params)
        return PassResult(graph, rewrites=["broke"])
    monkeypatch.setattr(manager, "PIPELINE", manager.PIPELINE[:2] + [Pass("breaking", 1, breaking)])
    with pytest.raises(OptimizeError, match="pass breaking failed \\(after remove_identity, dead_code\\)"):
        cg.optimize(cg.models.seed_m1())


def test_a_pipeline_that_never_settles_is_an_error_naming_the_passes(monkeypatch):
    def flip(graph, level=2):
        node = graph.layers()[0]
        graph.replace(node.name, node.op, node.inputs, node.attrs, {k: -v for k, v in node.params.items()})
        return PassResult(graph, [Rewrite("flip", (), (), "negated")])
    monkeypatch.setattr(manager, "PIPELINE", [Pass("flip", 1, flip)])
    with pytest.raises(OptimizeError, match=f"did not settle after {manager.MAX_ROUNDS} rounds; still changing the "
                                            "graph: flip"):
        cg.optimize(chain(cg.Conv2d(3, 2, 1)))


def test_a_registered_pass_runs_under_the_manager_and_can_be_disabled():
    def note_sigmoids(graph, level=2):
        result = PassResult(graph)
        for node in graph.layers():
            if node.op == "Sigmoid" and node.name not in graph.outputs:
                result.refusals.append(f"{node.name} seen")              # plain strings still work
        return result
    passes.register(Pass("my_pass", 1, note_sigmoids), before="fold_batchnorm")
    try:
        names = [p.name for p in passes.PIPELINE]
        assert names.index("my_pass") == names.index("fold_batchnorm") - 1
        graph = chain(cg.Sigmoid(), cg.ReLU())
        assert "my_pass: sigmoid1 seen" in refusals(cg.optimize(graph))
        assert refusals(cg.optimize(graph, disable="my_pass")) == []
        with pytest.raises(ValueError, match="already registered"):
            passes.register(Pass("my_pass", 1, note_sigmoids))
        with pytest.raises(ValueError, match="no pass named"):
            passes.register(Pass("other", 1, note_sigmoids), before="nope")
    finally:
        passes.unregister("my_pass")
    assert "my_pass" not in [p.name for p in passes.PIPELINE]


def test_every_pass_and_rule_states_its_math():
    for step in passes.PIPELINE:
        module = __import__(step.rules[0].function.__module__ if step.rules else step.run.__module__, fromlist=["_"])
        assert module.__doc__ and len(module.__doc__) > 80, step.name
        for rule in step.rules:
            assert rule.doc.strip(), f"{step.name}: rule {rule.name} has no docstring"
