"""canon_adaptive_pool: adaptive pools whose windows tile the input become plain or global pools (the form
PyTorch's exporters write); other output sizes keep the adaptive op, with the reason recorded."""
from __future__ import annotations

import pytest
from pass_helpers import assert_equivalent, chain, ops, refusals

import cnngraph as cg


@pytest.mark.parametrize("layer,shape,op,kernel", [
    (cg.AdaptiveAvgPool2d((2, 3)), (None, 3, 6, 6), "AvgPool2d", (3, 2)),
    (cg.AdaptiveAvgPool2d((None, 2)), (None, 3, 5, 6), "AvgPool2d", (1, 3)),
    (cg.AdaptiveMaxPool3d(2), (None, 2, 4, 2, 6), "MaxPool3d", (2, 1, 3)),
    (cg.AdaptiveAvgPool1d(3), (None, 2, 9), "AvgPool1d", (3,)),
    (cg.AdaptiveAvgPool2d(1), (None, 3, 5, 7), "GlobalAvgPool2d", None),
    (cg.AdaptiveMaxPool2d((1, 1)), (None, 3, 5, 7), "GlobalMaxPool2d", None),
])
def test_uniform_windows_become_a_plain_pool(layer, shape, op, kernel):
    graph = chain(layer, shape=shape)
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == [op]
    if kernel:
        assert optimized.node(graph.outputs[0]).attrs["kernel_size"] == kernel
    assert_equivalent(graph, optimized)


def test_uneven_windows_keep_the_adaptive_pool():
    graph = chain(cg.AdaptiveAvgPool2d((3, 4)), shape=(None, 3, 5, 6))
    optimized = cg.optimize(graph, level=2)
    assert ops(optimized) == ["AdaptiveAvgPool2d"]
    assert any("does not divide" in r for r in refusals(optimized))
    assert_equivalent(graph, optimized)


def test_a_python_model_with_adaptive_pooling_folds_like_the_imported_one():
    """Conv -> AdaptiveAvgPool2d(1) -> Flatten -> Linear ends as what the ONNX import of the same model gives."""
    graph = chain(cg.Conv2d(3, 4, 3), cg.AdaptiveAvgPool2d(1), cg.Flatten(), cg.Linear(4, 2), shape=(None, 3, 6, 6))
    imported = cg.load_onnx(cg.export_onnx(graph))
    assert ops(cg.optimize(graph, level=2)) == ops(cg.optimize(imported, level=2))
    assert_equivalent(graph, cg.optimize(graph, level=2))
