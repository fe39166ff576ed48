"""Write and register a pass of your own: drop an idempotent activation applied twice (ReLU after ReLU).

A pass is a list of rules run by the shared driver: a rule is match -> check -> rewrite, a function of a Match
that returns None (no match), m.refuse(reason) (its check said no) or, after editing the graph through Graph
methods, m.rewrote(before, after). Once registered, the pass runs under cg.optimize like the built-in ones:
linted after, held to the pass contract (what it records must be what it changed), verified with
verify=True, reported, disabled by name. (Any function run(graph, level) -> PassResult can be a Pass too.)
"""
import numpy as np

import cnngraph as cg
from cnngraph import passes
from cnngraph.passes import rule, rule_pass


@rule(anchor=lambda node: node.layer.idempotent)
def drop_double_activation(m):
    """act(act(x)) -> act(x) for an idempotent act (ReLU(ReLU(x)) = ReLU(x))"""
    node, first = m.node, m.input()
    if first.op != node.op or first.attrs != node.attrs:                    # match
        return None
    if node.name in m.graph.outputs:                                       # check: keep output names
        return m.refuse("it is a graph output")
    m.graph.replace_all_uses_with(node.name, first.name)                   # rewrite
    m.graph.erase(node.name)
    return m.rewrote([node], [], f"{first.name} already applied it")


graph = cg.Sequential(cg.Conv2d(3, 8, 3), cg.ReLU(), cg.ReLU(), cg.Flatten(), cg.Linear(8 * 30 * 30, 4)) \
    .to_graph(input_shape=(None, 3, 32, 32))
passes.register(rule_pass("drop_double_activation", 1, [drop_double_activation]), before="fuse_activation")
try:
    optimized = cg.optimize(graph, verify=True)
    print(optimized.report)
    record = optimized.report.rewrites[0]
    assert (record.rule, [n.name for n in record.before]) == ("drop_double_activation", ["relu2"])
    assert str(record) == "drop_double_activation: removed relu2 (ReLU): relu1 already applied it"
    assert [n.op for n in optimized.layers()] == ["Conv2d", "Flatten", "Linear"]
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    assert np.allclose(cg.run(optimized, x), cg.run(graph, x), rtol=1e-4, atol=1e-5)
    untouched = cg.optimize(graph, disable="drop_double_activation")
    assert "ReLU" in [n.op for n in untouched.layers()]
    print("drop_double_activation ran under cg.optimize, verified; disabling it by name leaves relu2 in place")
finally:
    passes.unregister("drop_double_activation")
