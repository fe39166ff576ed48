"""Shape arithmetic on the symbolic batch at import (cnngraph/onnx/symbolic.py via fold.py): each form the
exporters write, built by hand, imports with the batch kept symbolic and computes what onnxruntime computes at
two batch sizes; a shape that depends on the batch's value is refused naming the node."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ort_outputs
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.errors import OnnxImportError
from cnngraph.onnx import symbolic
from cnngraph.tolerance import assert_close

C, H, W = 4, 3, 2


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def model_of(nodes, inits, out_shape, opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C, H, W])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    graph = helper.make_graph(nodes, "shapes", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def batch_of(source, out, prefix):
    """TorchScript's ``x.size(0)`` as a 1-element tensor: Shape -> Gather(0) -> Unsqueeze(0)."""
    return [helper.make_node("Shape", [source], [f"{prefix}shape"]),
            helper.make_node("Gather", [f"{prefix}shape", "zero"], [f"{prefix}n"], axis=0),
            helper.make_node("Unsqueeze", [f"{prefix}n", "axis0"], [out])]


COMMON = [ints("zero", 0), ints("axis0", [0])]


def channel_shuffle(groups=2):
    """ShuffleNetV2: view(b, g, c // g, h, w) -> transpose(1, 2) -> view(b, -1, h, w), c // g computed with Div."""
    nodes = [*batch_of("x", "b", "s1/"),
             helper.make_node("Gather", ["s1/shape", "one"], ["c"], axis=0),
             helper.make_node("Div", ["c", "groups"], ["cpg"]),
             helper.make_node("Unsqueeze", ["cpg", "axis0"], ["cpg1"]),
             helper.make_node("Concat", ["b", "g1", "cpg1", "hw"], ["target1"], axis=0),
             helper.make_node("Reshape", ["x", "target1"], ["grouped"]),
             helper.make_node("Transpose", ["grouped"], ["shuffled"], perm=[0, 2, 1, 3, 4]),
             *batch_of("shuffled", "b2", "s2/"),
             helper.make_node("Concat", ["b2", "minus1", "hw"], ["target2"], axis=0),
             helper.make_node("Reshape", ["shuffled", "target2"], ["y"])]
    inits = [*COMMON, ints("one", 1), ints("groups", groups), ints("g1", [groups]), ints("hw", [H, W]),
             ints("minus1", [-1])]
    return model_of(nodes, inits, ["batch", C, H, W])


def batch_times_groups():
    """view(b * g, c // g, h, w) -> view(b2 // g, -1): the batch multiplied, then divided back."""
    nodes = [*batch_of("x", "b", "s1/"),
             helper.make_node("Mul", ["b", "g1"], ["bg"]),
             helper.make_node("Concat", ["bg", "rest"], ["target1"], axis=0),
             helper.make_node("Reshape", ["x", "target1"], ["split"]),
             *batch_of("split", "b2", "s2/"),
             helper.make_node("Div", ["b2", "g1"], ["b3"]),
             helper.make_node("Concat", ["b3", "minus1"], ["target2"], axis=0),
             helper.make_node("Reshape", ["split", "target2"], ["y"])]
    inits = [*COMMON, ints("g1", [2]), ints("rest", [C // 2, H, W]), ints("minus1", [-1])]
    return model_of(nodes, inits, ["batch", C * H * W])


def add_sub_and_numel():
    """(b + b − b) and numel // b (ReduceProd of the shape divided by the batch): view(b, numel // b)."""
    nodes = [*batch_of("x", "b", "s1/"),
             helper.make_node("Add", ["b", "b"], ["b2"]),
             helper.make_node("Sub", ["b2", "b"], ["b1"]),
             helper.make_node("Add", ["b1", "nought"], ["b0"]),
             helper.make_node("ReduceProd", ["s1/shape"], ["numel"], keepdims=1),
             helper.make_node("Div", ["numel", "b"], ["features"]),
             helper.make_node("Concat", ["b0", "features"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    return model_of(nodes, [*COMMON, ints("nought", [0])], ["batch", C * H * W])


def dynamo_slice(opset):
    """The dynamo exporter: Shape(start=0, end=1) (opset 15+) or Shape -> Slice, then Concat -> Reshape."""
    if opset >= 15:
        nodes = [helper.make_node("Shape", ["x"], ["b"], start=0, end=1)]
    else:
        nodes = [helper.make_node("Shape", ["x"], ["shape"]),
                 helper.make_node("Slice", ["shape", "axis0", "one1"], ["b"])]
    nodes += [helper.make_node("Concat", ["b", "rest"], ["target"], axis=0),
              helper.make_node("Reshape", ["x", "target"], ["y"])]
    return model_of(nodes, [*COMMON, ints("one1", [1]), ints("rest", [C, H * W])], ["batch", C, H * W], opset)


def dynamo_sym_size():
    """dynamo's sym_size: Shape(start=0, end=1) -> Squeeze -> Mul by 2 -> Unsqueeze -> Concat -> Reshape."""
    nodes = [helper.make_node("Shape", ["x"], ["b1"], start=0, end=1),
             helper.make_node("Squeeze", ["b1", "axis0"], ["b"]),
             helper.make_node("Mul", ["b", "two"], ["b2"]),
             helper.make_node("Unsqueeze", ["b2", "axis0"], ["b2_1"]),
             helper.make_node("Concat", ["b2_1", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Shape", ["flat"], ["b3"], start=0, end=1),
             helper.make_node("Div", ["b3", "two1"], ["b4"]),
             helper.make_node("Concat", ["b4", "minus1"], ["target2"], axis=0),
             helper.make_node("Reshape", ["flat", "target2"], ["y"])]
    inits = [*COMMON, ints("two", 2), ints("two1", [2]), ints("rest", [C // 2, H * W]), ints("minus1", [-1])]
    return model_of(nodes, inits, ["batch", C * H * W], 18)


def where_equal():
    """A target passed through Where(Equal(t, 0), shape, t), as exporters write view's 0-means-copy."""
    nodes = [*batch_of("x", "b", "s1/"),
             helper.make_node("Concat", ["b", "minus1"], ["t"], axis=0),
             helper.make_node("Equal", ["t", "zeros"], ["is0"]),
             helper.make_node("Slice", ["s1/shape", "axis0", "two"], ["head"]),
             helper.make_node("Where", ["is0", "head", "t"], ["target"]),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    return model_of(nodes, [*COMMON, ints("minus1", [-1]), ints("zeros", [0, 0]), ints("two", [2])],
                    ["batch", C * H * W])


FORMS = {
    "channel_shuffle": channel_shuffle,
    "batch_times_groups": batch_times_groups,
    "add_sub_and_numel": add_sub_and_numel,
    "dynamo_shape_start_end": lambda: dynamo_slice(18),
    "dynamo_shape_slice": lambda: dynamo_slice(13),
    "dynamo_sym_size": dynamo_sym_size,
    "where_equal": where_equal,
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_form_keeps_the_batch_symbolic_and_matches_onnxruntime(form):
    model = FORMS[form]()
    graph = cg.load_onnx(model)
    assert graph.type_of(graph.outputs[0]).shape[0] == "batch"
    assert {n.op for n in graph.layers()} <= {"Reshape", "Transpose"}
    exported = cg.export_onnx(cg.optimize(graph, level=2))
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, C, H, W)).astype(np.float32)
        expected, = ort_outputs(model, x)
        assert_close(cg.run(graph, x), expected, f"{form} at batch {batch}")
        assert_close(ort_outputs(exported, x)[0], expected, f"{form} exported, at batch {batch}")


def test_channel_shuffle_target_is_written_with_a_symbolic_batch():
    graph = cg.load_onnx(channel_shuffle())
    assert [graph.node(n).attrs["shape"] for n in ("grouped", "y")] == [("batch", 2, 2, H, W), ("batch", -1, H, W)]


def test_a_target_that_depends_on_the_batch_value_is_refused_naming_the_node():
    nodes = [*batch_of("x", "b", "s1/"),
             helper.make_node("Add", ["b", "one1"], ["b_plus_1"], name="plus_one"),
             helper.make_node("Concat", ["b_plus_1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    model = model_of(nodes, [*COMMON, ints("one1", [1]), ints("minus1", [-1])], [None, None])
    with pytest.raises(OnnxImportError, match="plus_one.*not a product"):
        cg.load_onnx(model)


@pytest.mark.parametrize("a, b, op, expected", [
    ("N", 3, symbolic.multiply, "3*N"), ("3*N", 3, symbolic.floor_divide, "N"), ("N*N", "N", symbolic.floor_divide, "N"),
    ("N", "N", symbolic.add, "2*N"), ("2*N", "N", symbolic.subtract, "N"), ("N", "N", symbolic.subtract, 0),
    ("N", 0, symbolic.add, "N"), ("N", -1, symbolic.equal, False), ("N", "N", symbolic.equal, True),
])
def test_monomial_arithmetic(a, b, op, expected):
    assert op(a, b) == expected


@pytest.mark.parametrize("a, b, op", [("N", 2, symbolic.floor_divide), ("3*N", "M", symbolic.floor_divide),
                                      ("N", 1, symbolic.add), ("N", "M", symbolic.subtract), ("N", 1, symbolic.equal)])
def test_monomial_arithmetic_refuses_what_depends_on_the_value(a, b, op):
    with pytest.raises(symbolic.SymbolicError):
        op(a, b)
