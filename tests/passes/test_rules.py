"""The rule driver: traversal, the stale-node guard, records, refusals and the fixed point."""
from __future__ import annotations

import pytest
from pass_helpers import chain, named_ops

import cnngraph as cg
from cnngraph.passes import OptimizeError, Refusal, Rewrite, rule
from cnngraph.passes.rules import MAX_SWEEPS, run_rules


@rule(anchor=lambda node: node.op == "ReLU")
def drop_relu(m):
    """relu(x) -> x (not exact: a driver test only)"""
    if m.node.name in m.graph.outputs:
        return m.refuse("it is a graph output")
    m.graph.replace_all_uses_with(m.node.name, m.node.inputs[0])
    m.graph.erase(m.node.name)
    return m.rewrote([m.node], [])


def test_rules_rewrite_in_one_sweep_and_record_before_and_after():
    graph = chain(cg.ReLU(), cg.ReLU(), cg.Sigmoid(), cg.ReLU(), names=["r1", "r2", "s", "r3"])
    result = run_rules(graph, [drop_relu], level=1)
    assert named_ops(graph) == [("s", "Sigmoid"), ("r3", "ReLU")]
    assert [str(r) for r in result.rewrites] == ["drop_relu: removed r1 (ReLU)", "drop_relu: removed r2 (ReLU)"]
    assert result.refusals == [Refusal("drop_relu", result.refusals[0].nodes, "it is a graph output")]
    assert [n.name for n in result.refusals[0].nodes] == ["r3"]


def test_a_node_erased_or_replaced_earlier_in_the_sweep_is_not_handed_to_a_rule():
    seen, done = [], []

    @rule(anchor=lambda node: node.op == "Conv2d")
    def edit_ahead(m):
        """at a, once: redefine b (same definition, new arrays) and erase the dead conv e"""
        seen.append(m.node.name)
        if m.node.name != "a" or done:
            return None
        done.append(True)
        b = m.graph.node("b")
        m.graph.replace("b", b.op, b.inputs, b.attrs, {k: v.copy() for k, v in b.params.items()})
        m.graph.erase("e")
        return m.rewrote([m.node, b], ["b"])

    graph = chain(cg.Conv2d(3, 3, 1), cg.Conv2d(3, 3, 1), cg.Conv2d(3, 3, 1), names=["a", "b", "c"])
    graph.apply(cg.Conv2d(3, 3, 1), graph.inputs[0], name="e")
    result = run_rules(graph, [edit_ahead], level=2)
    assert seen == ["a", "c", "a", "b", "c"]          # sweep 1 skips b (redefined) and e (erased); sweep 2 settles
    assert len(result.rewrites) == 1


def test_a_rule_above_the_level_does_not_run():
    high = rule(anchor=drop_relu.anchor, level=3)(drop_relu.function)
    graph = chain(cg.ReLU(), cg.Sigmoid())
    assert run_rules(graph, [high], level=2).rewrites == []
    assert run_rules(graph, [high], level=3).rewrites != []


def test_a_rule_that_never_settles_is_an_error_naming_it():
    @rule(anchor=lambda node: node.op == "Conv2d")
    def churn(m):
        """conv -> the same conv, forever"""
        node = m.node
        m.graph.replace(node.name, node.op, node.inputs, node.attrs, {k: v.copy() for k, v in node.params.items()})
        return m.rewrote([node], [node.name])

    with pytest.raises(OptimizeError, match=f"rules churn still rewrote after {MAX_SWEEPS} sweeps"):
        run_rules(chain(cg.Conv2d(3, 2, 1)), [churn], level=2)


def test_a_rule_returns_none_a_refusal_or_a_rewrite():
    @rule(anchor=lambda node: True)
    def chatty(m):
        """returns text"""
        return "did something"

    with pytest.raises(TypeError, match="rule chatty returned 'did something'"):
        run_rules(chain(cg.ReLU()), [chatty], level=1)


def test_records_render_in_one_place():
    from cnngraph.passes import NodeRef
    conv, relu = NodeRef("conv", "Conv2d"), NodeRef("relu", "ReLU")
    fused = NodeRef("relu", "Conv2d+ReLU", "3→4, 3×3")
    assert str(Rewrite("fuse", (conv, relu), (fused,))) == "fuse: conv (Conv2d) + relu (ReLU) -> relu (Conv2d+ReLU 3→4, 3×3)"
    assert str(Rewrite("drop", (relu,), (), "not needed")) == "drop: removed relu (ReLU): not needed"
    assert str(Rewrite("mine", (), (), "free text")) == "mine: free text"
    assert str(Refusal("fuse", (conv, relu), "conv has 2 readers")) == \
        "fuse: conv (Conv2d) + relu (ReLU) not rewritten: conv has 2 readers"
