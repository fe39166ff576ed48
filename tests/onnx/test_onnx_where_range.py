"""Where with a constant condition (cnngraph/layers/select.py) and Range on constants (folded at import):
hand-built ONNX models against onnxruntime at two batch sizes, the export read back, and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, ort_outputs
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import OnnxImportError
from cnngraph.tolerance import assert_close

SHAPE = ("batch", 3, 4)


def model_of(nodes, inits, opset=17, inputs=("x",)):
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(SHAPE)) for name in inputs]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))
    return helper.make_model(helper.make_graph(nodes, "g", values, [y], inits),
                             opset_imports=[helper.make_opsetid("", opset)])


def check_against_onnxruntime(model, graph, inputs=1):
    for batch in (1, 3):
        rng = np.random.default_rng(batch)
        xs = [rng.normal(size=(batch, *SHAPE[1:])).astype(np.float32) for _ in range(inputs)]
        expected, = ort_outputs(model, *xs)
        assert_close(cg.run(graph, *xs), expected, f"NumPy backend at batch {batch}")
        assert_close(reference_run(graph, *xs), expected, f"reference at batch {batch}")
        assert_close(ort_outputs(cg.export_onnx(graph), *xs)[0], expected, f"our export at batch {batch}")


@st.composite
def masks(draw):
    """A mask that broadcasts against (batch, 3, 4): a suffix of the shape, each dim kept or 1."""
    rank = draw(st.integers(0, 3))
    shape = [draw(st.sampled_from([1, d])) for d in (1, 3, 4)[3 - rank:]]
    return np.array(draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
                    ).reshape(shape).astype(bool)


@examples(15)
@given(masks(), st.booleans())
def test_where_with_a_constant_mask_matches_onnxruntime(mask, other_is_constant):
    inits = [numpy_helper.from_array(mask, "mask")]
    if other_is_constant:                                   # masked_fill(mask, -inf)-style: a scalar other
        inits.append(numpy_helper.from_array(np.array(-2.5, np.float32), "x2"))
    model = model_of([helper.make_node("Where", ["mask", "x", "x2"], ["y"], name="select")], inits,
                     inputs=("x",) if other_is_constant else ("x", "x2"))
    graph = cg.load_onnx(model)
    uniform = mask.size and (mask.all() or not mask.any())
    ops = {n.op for n in graph.layers()} - {"Constant"}
    assert ops == ({"Identity"} if uniform and (mask.all() or not other_is_constant) else {"Where"})
    check_against_onnxruntime(model, graph, inputs=1 if other_is_constant else 2)


def test_a_computed_condition_is_refused_naming_the_node():
    """cnngraph's values are float32, so a bool condition is never one of them: its producer is refused."""
    nodes = [helper.make_node("Greater", ["x", "zero"], ["positive"]),
             helper.make_node("Where", ["positive", "x", "zero"], ["y"], name="relu_by_where")]
    model = model_of(nodes, [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    with pytest.raises(OnnxImportError, match="Greater at 'positive'"):
        cg.load_onnx(model)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_range_on_constants_folds_to_a_constant(dtype):
    """Range(0, 4, 1) added to the last axis (an integer one through a Cast, as TorchScript writes arange)."""
    inits = [numpy_helper.from_array(np.array(v, dtype), name) for v, name in ((0, "start"), (4, "limit"), (1, "delta"))]
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"])]
    if dtype == np.int64:
        nodes.append(helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Add", ["x", "rf" if dtype == np.int64 else "r"], ["y"]))
    model = model_of(nodes, inits, opset=13)
    graph = cg.load_onnx(model)
    assert sorted(n.op for n in graph.layers()) == ["Add", "Constant"]
    check_against_onnxruntime(model, graph)
