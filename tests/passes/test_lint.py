"""cg.lint: findings a reviewer would point out, without changing the graph."""
from __future__ import annotations

import pytest
from pass_helpers import chain

import cnngraph as cg


def test_lint_names_the_linear_chain_plainly():
    graph = cg.Sequential(cg.Linear(4096, 64), cg.Dropout(0.1), cg.Linear(64, 10), cg.ReLU(), cg.ReLU()) \
        .to_graph(input_shape=(None, 4096))
    version = graph.version
    findings = cg.lint(graph)
    assert graph.version == version
    assert [f.kind for f in findings] == ["linear-chain", "dropout", "double-activation"]
    assert str(findings[0]) == ("fc1 (Linear 4096→64) → fc2 (Linear 64→10): no non-linearity between them; together "
                                "they are one linear map of rank ≤ 64, equivalent to a single Linear(4096→10)")


def test_lint_flags_seed_m2_and_not_m1():
    m2 = [str(f) for f in cg.lint(cg.models.seed_m2())]
    assert m2 == ["L1 (Conv2d 3→16, 3×3) → L2 (Conv2d 16→10, 3×3): no non-linearity between them; together they "
                  "are one linear map of rank ≤ 16, equivalent to a single Conv2d(3→10, 5×5)"]
    assert cg.lint(cg.models.seed_m1()) == []


@pytest.mark.parametrize("between,expected", [(cg.AvgPool2d(2), True), (cg.MaxPool2d(2), False),
                                              (cg.ReLU(), False), (cg.BatchNorm2d(4), True)])
def test_lint_follows_linear_ops_and_stops_at_nonlinear_ones(between, expected):
    graph = chain(cg.Conv2d(3, 4, 3), between, cg.Conv2d(4, 2, 1))
    assert bool([f for f in cg.lint(graph) if f.kind == "linear-chain"]) == expected
