"""The optimizer-time benchmark's synthetic graphs exercise what they claim (times are never asserted)."""
from __future__ import annotations

import cnngraph as cg
from cnngraph.passes.benchmark_time import FAMILIES, verdict

EXPECTED = {"chain": {"remove_identity", "fold_linear"},
            "wide": {"fold_batchnorm", "fuse_activation", "remove_identity"},
            "linear_reshape": {"commute_reshape", "fold_linear"}}


def test_each_family_has_its_size_and_the_rewrites_it_is_there_for():
    for family, make in FAMILIES.items():
        graph = make(60)
        assert 60 <= len(graph.layers()) < 60 + 24, family
        optimized = cg.optimize(graph, verify=True)
        optimized.lint()
        assert EXPECTED[family] <= {run.name for run in optimized.report.runs if run.changed}, family


def test_verdicts_read_plainly():
    assert (verdict(True), verdict(False)) == ("met", "NOT met")
