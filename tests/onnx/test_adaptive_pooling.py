"""Adaptive pooling with any output size: the NumPy kernel against the naive reference (PyTorch's windows
[floor(i·n/m), ceil((i+1)·n/m))) and onnxruntime on the export in each of its forms (global pool, plain pool
when the sizes divide, the exact Gather form otherwise), over hypothesis-drawn sizes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import examples, ort_outputs
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.layers.adaptive_pooling import adaptive_windows
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
CLASSES = {(False, 1): cg.AdaptiveAvgPool1d, (False, 2): cg.AdaptiveAvgPool2d, (False, 3): cg.AdaptiveAvgPool3d,
           (True, 1): cg.AdaptiveMaxPool1d, (True, 2): cg.AdaptiveMaxPool2d, (True, 3): cg.AdaptiveMaxPool3d}


def pooled(maximum, sizes, output_size):
    graph = cg.Graph("g")
    graph.output(graph.apply(CLASSES[maximum, len(sizes)](output_size), graph.input("x", (None, 3, *sizes))))
    return graph


@examples(30)
@given(maximum=st.booleans(), data=st.data(), opset=st.sampled_from([13, 18, NEWEST]), seed=st.integers(0, 99))
def test_any_output_size(maximum, data, opset, seed):
    dims = data.draw(st.integers(1, 3))
    sizes = [data.draw(st.integers(1, 7 if dims < 3 else 4)) for _ in range(dims)]
    output_size = tuple(data.draw(st.one_of(st.none(), st.integers(1, 5))) for _ in range(dims))
    graph = pooled(maximum, sizes, output_size)
    assert graph.type_of(graph.outputs[0]).shape[2:] == tuple(s if o is None else o for s, o in zip(sizes, output_size))
    x = np.random.default_rng(seed).normal(size=(2, 3, *sizes)).astype(np.float32)
    ours = cg.run(graph, x)
    assert_close(ours, reference_run(graph, x), "NumPy backend vs reference")
    assert_close(ort_outputs(cg.export_onnx(graph, opset=opset), x)[0], ours, f"onnxruntime at opset {opset}")


def test_windows_are_pytorchs():
    start, end = adaptive_windows(5, 3)          # torch: [0, 2), [1, 4), [3, 5)
    assert start.tolist() == [0, 1, 3] and end.tolist() == [2, 4, 5]
    start, end = adaptive_windows(3, 5)          # more outputs than cells: windows share cells
    assert start.tolist() == [0, 0, 1, 1, 2] and end.tolist() == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("maximum", [False, True])
@pytest.mark.parametrize("output_size,form", [(1, "Global"), ((2, 3), "Pool"), ((3, 4), "Gather")])
def test_export_forms_and_reading_them_back(maximum, output_size, form):
    graph = pooled(maximum, (6, 6), output_size)
    model = cg.export_onnx(graph)
    assert any(form in node.op_type for node in model.graph.node)
    if form != "Gather":                           # what PyTorch's exporters write: a plain or a global pool
        back = cg.load_onnx(model)
        assert back.node(graph.outputs[0]).op in CLASSES[maximum, 2].exported_as
        x = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
        assert_close(cg.run(back, x), cg.run(graph, x))


def test_misfits_are_clean_errors():
    with pytest.raises(ValueError, match="output_size"):
        cg.AdaptiveAvgPool2d((2, 2, 2))
    with pytest.raises(ValueError, match="output_size"):
        cg.AdaptiveMaxPool1d(0)
    graph = cg.Graph("g")
    with pytest.raises(cg.CnnGraphError, match="4-D input"):
        graph.apply(cg.AdaptiveAvgPool2d(2), graph.input("x", (None, 3, 4)))
