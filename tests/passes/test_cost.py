"""The cost model: each op's own MACs and parameter count, and what levels 2 and 3 allow."""
from __future__ import annotations

import cnngraph as cg
from cnngraph.passes import cost


def test_cost_of_a_node_is_the_op_s_own_and_a_proposed_node_costs_what_it_will():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 8, 8))
    conv = graph.apply(cg.Conv2d(3, 4, 3, padding=1), x)
    bn = graph.apply(cg.BatchNorm2d(4), conv)
    graph.output(bn)
    node = graph.node(conv)
    assert cost.of_nodes(graph, [node]) == cost.Cost(4 * 8 * 8 * 3 * 9, 4 * 3 * 9 + 4)
    assert cost.of_nodes(graph, [graph.node(bn)]).params == 8                  # running statistics are buffers
    assert cost.of_new(graph, "Conv2d", ["x"], node.attrs, node.type) == cost.of_nodes(graph, [node])
    assert sum((cost.of_nodes(graph, [n]) for n in graph.layers()), cost.Cost(0, 0)) == \
        cost.Cost(graph.macs(), graph.param_count())


def test_levels():
    same, smaller = cost.Cost(10, 10), cost.Cost(9, 9)
    cheaper_but_bigger, dearer = cost.Cost(9, 11), cost.Cost(11, 9)
    assert cost.allows(1, same, smaller)
    for level in (2, 3):
        assert cost.allows(level, same, same) is None and cost.allows(level, same, smaller) is None
        assert cost.allows(level, same, dearer)
    assert "level 3" in cost.allows(2, same, cheaper_but_bigger)
    assert cost.allows(3, same, cheaper_but_bigger) is None
    assert "MACs would not fall" in cost.allows(3, same, dearer)
