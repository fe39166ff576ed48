"""Never larger: after optimize(level=2) and export, a model has no more ONNX nodes than the file it came from.

Counted without Constant and ConstantOfShape nodes on both sides (the exporter writes constants as
initializers; the light zoo builds its weights with ConstantOfShape, which would flatter us). The PyTorch
exports (tests/data/pytorch) are checked here; the light zoo, whose models are big, in tests/onnx/test_onnx_zoo.py
on the graph that module optimizes anyway. Also here: the opset-9/11 Softmax over a block of axes that is one
axis wide imports as one Softmax (it was Flatten + Softmax + Reshape: the light-zoo SqueezeNet grew by a node).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from conftest import ort_outputs
from onnx import TensorProto, helper

import cnngraph as cg
from cnngraph.tolerance import assert_close

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pytorch")
FILES = sorted(name for name in os.listdir(DATA) if name.endswith(".onnx"))
NOT_COUNTED = {"Constant", "ConstantOfShape"}


def node_count(model: onnx.ModelProto) -> int:
    return sum(node.op_type not in NOT_COUNTED for node in model.graph.node)


@pytest.mark.parametrize("file", FILES)
def test_pytorch_export_is_never_larger_after_optimizing(file):
    original = onnx.load(os.path.join(DATA, file))
    optimized = cg.export_onnx(cg.optimize(cg.load_onnx(original), level=2))
    assert node_count(optimized) <= node_count(original), \
        f"{file}: {node_count(original)} nodes before, {node_count(optimized)} after optimize + export"


def softmax_model(shape, axis, opset):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("shape, axis, ours", [
    (("N", 5, 1, 1), 1, 1),            # SqueezeNet's classifier: GlobalAveragePool then Softmax
    (("N", 1, 1, 5), 1, 3),            # the wide axis last
    (("N", 1, 1, 1), 2, 2),            # nothing wide: a softmax of one element
    (("N", 1, 1), 0, 0),               # only the batch is wide
])
@pytest.mark.parametrize("opset", [9, 11])
def test_old_softmax_over_a_block_one_axis_wide_is_one_softmax(shape, axis, ours, opset):
    model = softmax_model(shape, axis, opset)
    graph = cg.load_onnx(model)
    assert [(n.op, n.attrs["axis"]) for n in graph.layers()] == [("Softmax", ours)]
    exported = cg.export_onnx(graph, opset=13)
    assert [n.op_type for n in exported.graph.node] == ["Softmax"]
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, *shape[1:])).astype(np.float32)
        expected, = ort_outputs(model, x)
        assert_close(cg.run(graph, x), expected, f"batch {batch}")
        assert_close(ort_outputs(exported, x)[0], expected, f"exported, batch {batch}")


def test_old_softmax_over_a_wide_block_still_flattens():
    graph = cg.load_onnx(softmax_model(("N", 2, 3), 1, 11))
    assert [n.op for n in graph.layers()] == ["Flatten", "Softmax", "Reshape"]


def test_a_linear_with_a_zero_bias_exports_without_its_add():
    """x·Wᵀ + 0 is x·Wᵀ: timm's ConvNeXt MLPs (zero-initialized biases) on channels-last maps lose one Add each."""
    rng = np.random.default_rng(0)
    for bias, wanted in [(np.zeros(4), ["MatMul"]), (rng.normal(size=4), ["MatMul", "Add"])]:
        graph = cg.Graph("g")
        linear = cg.Linear(3, 4)
        linear.bias = bias
        graph.output(graph.apply(linear, graph.input("x", (None, 2, 3))))
        exported = cg.export_onnx(graph)
        assert [n.op_type for n in exported.graph.node] == wanted
        onnx.checker.check_model(exported, full_check=True)
        x = rng.normal(size=(2, 2, 3)).astype(np.float32)
        assert_close(ort_outputs(exported, x)[0], cg.run(graph, x), "zero-bias Linear: onnxruntime vs NumPy")
