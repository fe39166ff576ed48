"""Reductions (cnngraph/layers/reductions.py): every axes/keepdims drawn by hypothesis, the NumPy backend against
the naive reference, the export at every opset from 13 (axes an attribute or an input, per op) checked with
full_check and run in onnxruntime, and the import of both ONNX forms of axes and of noop_with_empty_axes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import examples, ort_outputs
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import ShapeError
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
OPSETS = sorted({13, 17, 18, NEWEST})
OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2"]


@st.composite
def reductions(draw):
    op = draw(st.sampled_from(OPS))
    shape = (None, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rank = len(shape)
    axes = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    axes = [a - rank if draw(st.booleans()) else a for a in axes]          # negative axes too
    return op, shape, tuple(axes), draw(st.booleans()), draw(st.sampled_from(OPSETS))


def one_node(op, shape, axes, keepdims) -> cg.Graph:
    graph = cg.Graph("reduce")
    graph.output(graph.apply(cg.REGISTRY[op](axes, keepdims), graph.input("x", shape)))
    return graph


@examples(40)
@given(reductions(), st.integers(1, 3))
def test_reduction_matches_reference_and_onnxruntime(case, batch):
    op, shape, axes, keepdims, opset = case
    graph = one_node(op, shape, axes, keepdims)
    x = np.random.default_rng(batch).normal(size=(batch, *shape[1:])).astype(np.float32)
    expected = reference_run(graph, x)
    assert_close(cg.run(graph, x), expected, f"{op} axes {axes} keepdims {keepdims}: NumPy backend")
    model = cg.export_onnx(graph, opset=opset)                       # full_check inside
    node, = model.graph.node
    assert node.op_type == op
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    assert (len(node.input) == 2) == (as_input and bool(axes)), "axes in the form of this opset"
    got, = ort_outputs(model, x)
    assert_close(got, expected, f"{op} at opset {opset}: onnxruntime")
    back = cg.load_onnx(model)
    assert [n.op for n in back.layers()] == [op]
    assert_close(cg.run(back, x), expected, f"{op} read back")


def reduce_model(op, opset, axes, keepdims=1, noop=None, as_input=True):
    """A one-node model; its output's shape left to ONNX's shape inference (rank only)."""
    out_rank = 3 if keepdims or axes is None else 3 - len(axes)
    inputs, inits, attrs = ["x"], [], {"keepdims": keepdims}
    if axes is not None and as_input:
        inputs.append("axes")
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    elif axes is not None:
        attrs["axes"] = list(axes)
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    node = helper.make_node(op, inputs, ["y"], name="r", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * out_rank)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("opset", [13, 18])
def test_import_reads_the_axes_of_each_opset(op, opset):
    """ReduceSum takes axes as an input from 13, the others from 18; before that, an attribute."""
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    model = reduce_model(op, opset, [-1], keepdims=0, as_input=as_input)
    graph = cg.load_onnx(model)
    node, = graph.layers()
    assert (node.op, node.attrs["axes"], node.attrs["keepdims"]) == (op, (-1,), False)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0], f"{op}-{opset}")


@pytest.mark.parametrize("op", OPS)
def test_empty_axes_with_noop_is_an_identity(op):
    opset = 13 if op == "ReduceSum" else 18
    graph = cg.load_onnx(reduce_model(op, opset, None, noop=1))
    assert [n.op for n in graph.layers()] == ["Identity"]
    reduced = cg.load_onnx(reduce_model(op, opset, None, noop=0))
    assert [(n.op, n.attrs["axes"]) for n in reduced.layers()] == [(op, ())]
    assert reduced.type_of(reduced.outputs[0]).shape == (1, 1, 1)


@pytest.mark.parametrize("op", OPS)
def test_misfit_axes_raise_naming_the_shapes(op):
    graph = cg.Graph("bad")
    x = graph.input("x", (None, 3))
    with pytest.raises(ShapeError, match="out of range"):
        graph.apply(cg.REGISTRY[op]((2,)), x)
    with pytest.raises(ShapeError, match="twice"):
        graph.apply(cg.REGISTRY[op]((1, -1)), x)


def test_only_sum_and_mean_are_linear():
    assert {op for op in OPS if cg.REGISTRY[op].linear} == {"ReduceSum", "ReduceMean"}
