"""dead_code: what no output depends on is erased; graph inputs stay."""
from __future__ import annotations

import cnngraph as cg


def test_dead_code_is_erased_and_inputs_stay():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    graph.input("unused", (None, 2))
    dead = graph.apply(cg.Linear(3, 5), x, name="dead")
    graph.apply(cg.ReLU(), dead, name="deader")
    graph.output(graph.apply(cg.ReLU(), x, name="relu"))
    optimized = cg.optimize(graph, level=1)
    assert optimized.inputs == ["x", "unused"] and [n.op for n in optimized.layers()] == ["ReLU"]
    assert [(r.rule, r.before[0].name, r.after) for r in optimized.report.rewrites] == \
        [("dead_code", "deader", ()), ("dead_code", "dead", ())]
