"""Write and register a pass of your own: drop an idempotent activation applied twice (ReLU after ReLU).

A pass takes the graph (the manager hands it a copy) and the level, and returns a PassResult listing what it
rewrote and what it refused and why: match -> check -> rewrite. Once registered, it runs under
cg.optimize like the built-in passes: linted after, verified with verify=True, reported, disabled by name.
"""
import numpy as np

import cnngraph as cg
from cnngraph import passes
from cnngraph.passes import Pass, PassResult

IDEMPOTENT = ("ReLU", "ReLU6", "Hardtanh")


def drop_double_activation(graph, level):
    result = PassResult(graph)
    for node in graph.layers():
        if node.name not in graph or node.op not in IDEMPOTENT:               # match: act(act(x))
            continue
        first = graph.node(node.inputs[0])
        if first.op != node.op or first.attrs != node.attrs:
            continue
        if node.name in graph.outputs:                                     # check: keep output names
            result.refusals.append(f"{node.name} kept: it is a graph output")
            continue
        graph.replace_all_uses_with(node.name, first.name)                 # rewrite
        graph.erase(node.name)
        result.rewrites.append(f"removed {node.name} ({node.op}): {first.name} already applied it")
    return result


graph = cg.Sequential(cg.Conv2d(3, 8, 3), cg.ReLU(), cg.ReLU(), cg.Flatten(), cg.Linear(8 * 30 * 30, 4)) \
    .to_graph(input_shape=(None, 3, 32, 32))
passes.register(Pass("drop_double_activation", 1, drop_double_activation), before="fuse_activation")
try:
    optimized = cg.optimize(graph, verify=True)
    print(optimized.report)
    assert "removed relu2 (ReLU): relu1 already applied it" in optimized.report.rewrites
    assert [n.op for n in optimized.layers()] == ["Conv2d", "Flatten", "Linear"]
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    assert np.allclose(cg.run(optimized, x), cg.run(graph, x), rtol=1e-4, atol=1e-5)
    untouched = cg.optimize(graph, disable=["drop_double_activation"])
    assert "ReLU" in [n.op for n in untouched.layers()]
    print("drop_double_activation ran under cg.optimize, verified; disabling it by name leaves relu2 in place")
finally:
    passes.unregister("drop_double_activation")
