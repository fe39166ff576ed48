"""The bugs other optimizers and ONNX tools shipped (../shared/PITFALLS.md), each a test.

Pitfalls tested elsewhere, by the test that covers them:
  single consumer / graph output (onnxruntime #4110)  tests/passes: *_not_folded_across_*, *_not_fused_when_*, *_read_*
  BatchNorm formula, a bias gained (ncnn #1339)       passes/test_fold_batchnorm: *_folds_and_a_missing_bias_appears
  shared weight, two BatchNorms (TNN #808)            passes/test_fold_batchnorm: test_shared_weight_with_two_batchnorms_*
  groups = 4 (onnxruntime #12498)                     passes/test_fold_batchnorm, test_fold_conv, test_fold_branches: groups
  constant folding cap (onnxsim #178)                 passes/test_constant_folding: *_refuses_large_ones
  dilated parallel branches (cnngraph)                passes/test_fold_branches: *_at_tap_offsets_not_pixel_offsets
  a verifier fooled by a silent pass (cnngraph)       passes/test_contract: test_a_silent_pass_*
  ceil_mode, count_include_pad (pytorch #71549, #183528, onnxruntime #15446)
                                                      test_onnx_export/test_onnx_import: test_ceil_mode_pooling*
  auto_pad SAME (onnxruntime #495)                    test_onnx_import: test_same_auto_pad_is_made_explicit
  asymmetric pads, MaxPool dilation                   test_onnx_export: build_conv, build_maxpool (random pads, dilations)
  Softmax at opset 13 (onnx PR #2879)                 test_onnx_import: test_softmax_before_opset_13_*,
                                                      test_softmax_default_axis_is_last
  attributes that became inputs                       test_onnx_node_cases (every opset form ONNX ships),
                                                      test_onnx_export (opsets 13..newest)
  hard-coded batch (pytorch #41893, onnxsim #101)     test_pytorch_models: test_batch_stays_symbolic; test_onnx_export
  stale value_info (onnx #4367)                       every export is checked with full_check (shape inference against ours)
  names (onnx/optimizer PR #11, onnx PR #3258)        passes/pass_helpers: assert_equivalent checks output names;
                                                      test_onnx_import: names kept
  hostile files (CVE-2022-25882, CVE-2024-27318, onnx PR #8321) test_onnx_hostile
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.tolerance import assert_close


def ort_run(model, x):
    session = make_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def model_of(nodes, initializers, shape, out_shape, opset=13, inputs_with_initializers=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    inputs = [x]
    if inputs_with_initializers:          # old exporters list every initializer as a graph input too
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    graph = helper.make_graph(nodes, "pitfall", inputs, [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_folding_works_when_weights_are_initializers_listed_as_inputs_and_names_stay_unique():
    """onnx/optimizer #133 (folding broke on such models) and #174 (duplicate initializer names)."""
    rng = np.random.default_rng(0)
    tensors = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.normal(size=(4, 3, 3, 3))), ("scale", rng.uniform(0.5, 2, 4)), ("shift", rng.normal(size=4)),
        ("mean", rng.normal(size=4)), ("var", rng.uniform(0.5, 2, 4))]]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["y"], name="bn")]
    model = model_of(nodes, tensors, ("N", 3, 6, 6), ("N", 4, 6, 6), opset=9, inputs_with_initializers=True)
    model.ir_version = 3
    optimized = cg.optimize(cg.load_onnx(model))
    assert [n.op for n in optimized.layers()] == ["Conv2d"]
    exported = cg.export_onnx(optimized)
    names = [t.name for t in exported.graph.initializer]
    assert len(names) == len(set(names))
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    assert_close(ort_run(exported, x), ort_run(model, x))


@pytest.mark.parametrize("pool_pads,include", [((0, 0, 0, 0), 0), ((1, 1, 1, 1), 0), ((1, 1, 1, 1), 1)])
def test_pad_before_average_pool_is_merged_only_where_exact(pool_pads, include):
    """onnx/optimizer PR #108, onnxruntime PR #23190: a Pad merged into AveragePool must count the padding,
    and cannot be merged when the pool already pads without counting it."""
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("AveragePool", ["p"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              pads=list(pool_pads), count_include_pad=include)]
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    size = 7 + 2 + pool_pads[0] + pool_pads[2]
    model = model_of(nodes, [pads], ("N", 2, 7, 7), ("N", 2, (size - 3) // 2 + 1, (size - 3) // 2 + 1))
    graph = cg.load_onnx(model)
    x = np.random.default_rng(1).normal(size=(2, 2, 7, 7)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_run(model, x))
    assert_close(cg.run(cg.optimize(graph), x), ort_run(model, x))


def test_clip_with_computed_bounds_is_refused_not_fused():
    """onnxruntime PR #2059: from opset 11 Clip's bounds are inputs; only constant ones make a ReLU6/Hardtanh."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["low"], name="low", keepdims=0),
             helper.make_node("Clip", ["x", "low"], ["y"], name="clip")]
    model = model_of(nodes, [], ("N", 3), ("N", 3), opset=13)
    with pytest.raises(cg.CnnGraphError, match="Clip.*clip.*constant"):
        cg.load_onnx(model)


def test_two_consecutive_gemms_become_one():
    """onnxsim #258 (open): no peer fuses two Gemms; we do, exactly and only where it does not grow the model."""
    rng = np.random.default_rng(2)
    tensors = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
               for n, s in [("w1", (8, 16)), ("b1", (8,)), ("w2", (4, 8)), ("b2", (4,))]]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="fc2", transB=1)]
    model = model_of(nodes, tensors, ("N", 16), ("N", 4))
    optimized = cg.optimize(cg.load_onnx(model))
    assert [n.op for n in optimized.layers()] == ["Linear"]
    x = rng.normal(size=(3, 16)).astype(np.float32)
    exported = cg.export_onnx(optimized)
    assert [n.op_type for n in exported.graph.node] == ["Gemm"]
    assert_close(ort_run(exported, x), ort_run(model, x))


def test_a_drift_of_a_few_ulps_after_folding_is_within_the_stated_tolerance():
    """onnx/optimizer #255 filed a 3.8e-6 drift as a bug: folding reassociates float32 sums, so outputs of
    magnitude ~1 move by a few 1e-7..1e-6. cnngraph.tolerance states the bound once: rtol 1e-4 and
    atol 1e-4 × max|expected|; a real error (1e-3 relative) is still caught."""
    expected = np.linspace(-1, 1, 101, dtype=np.float32)
    assert_close(expected + np.float32(3.8e-6), expected)
    with pytest.raises(AssertionError):
        assert_close(expected * np.float32(1.001) + np.float32(1e-3), expected)


def test_a_graph_whose_nodes_are_not_in_topological_order_is_refused_clearly():
    """finn #61: executing an unsorted graph silently gave wrong results; we refuse it with the checker's reason."""
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="second"),
             helper.make_node("Relu", ["x"], ["h"], name="first")]
    model = model_of(nodes, [], ("N", 3), ("N", 3))
    with pytest.raises(cg.CnnGraphError, match="topolog|not a valid ONNX model"):
        cg.load_onnx(model)
