"""MaxPool1d/3d and AvgPool1d/3d over hypothesis-drawn attributes (kernel, stride, padding, dilation,
ceil_mode, count_include_pad): the NumPy kernel against the naive reference and onnxruntime on the export;
ONNX pools with asymmetric pads, imported, against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import examples, ort_outputs
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import OnnxImportError
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()


@st.composite
def pool_case(draw, maximum: bool):
    dims = draw(st.sampled_from([1, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims)) if maximum else (1,) * dims
    padding = tuple(draw(st.integers(0, ((k - 1) * d + 1) // 2)) for k, d in zip(kernel, dilation))
    size = tuple(draw(st.integers((k - 1) * d + 1, (k - 1) * d + (6 if dims == 1 else 3)))
                 for k, d in zip(kernel, dilation))
    return dims, kernel, stride, padding, dilation, size, draw(st.booleans())


def build(maximum, dims, kernel, stride, padding, dilation, ceil, include, channels=2):
    layer = ((cg.MaxPool1d, cg.MaxPool3d)[dims // 2](kernel, stride, padding, dilation, ceil) if maximum else
             (cg.AvgPool1d, cg.AvgPool3d)[dims // 2](kernel, stride, padding, ceil, include))
    return layer


def check(graph, x, opset):
    ours = cg.run(graph, x)
    assert_close(ours, reference_run(graph, x), "NumPy backend vs reference")
    assert_close(ort_outputs(cg.export_onnx(graph, opset=opset), x)[0], ours, f"onnxruntime at opset {opset}")


@examples(25)
@given(case=pool_case(True), opset=st.sampled_from([13, 18, NEWEST]), seed=st.integers(0, 99))
def test_max_pool_nd(case, opset, seed):
    dims, kernel, stride, padding, dilation, size, ceil = case
    graph = cg.Graph("g")
    graph.output(graph.apply(build(True, dims, kernel, stride, padding, dilation, ceil, True),
                             graph.input("x", (None, 2, *size))))
    check(graph, np.random.default_rng(seed).normal(size=(2, 2, *size)).astype(np.float32), opset)


@examples(25)
@given(case=pool_case(False), include=st.booleans(), opset=st.sampled_from([13, 18, NEWEST]), seed=st.integers(0, 99))
def test_avg_pool_nd(case, include, opset, seed):
    dims, kernel, stride, padding, dilation, size, ceil = case
    graph = cg.Graph("g")
    graph.output(graph.apply(build(False, dims, kernel, stride, padding, dilation, ceil, include),
                             graph.input("x", (None, 2, *size))))
    check(graph, np.random.default_rng(seed).normal(size=(2, 2, *size)).astype(np.float32), opset)


def onnx_pool(op_type, shape, **attrs):
    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    opsets = [helper.make_opsetid("", 13)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return onnx.shape_inference.infer_shapes(model)


@examples(25)
@given(dims=st.sampled_from([1, 3]), data=st.data(), maximum=st.booleans(), include=st.booleans(),
       ceil=st.booleans(), seed=st.integers(0, 99))
def test_onnx_pools_with_asymmetric_pads(dims, data, maximum, include, ceil, seed):
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    pads = [data.draw(st.integers(0, k - 1)) for k in kernel * 2]         # ONNX: pads below the kernel
    size = [data.draw(st.integers(k, k + 3)) for k in kernel]
    attrs = dict(kernel_shape=kernel, strides=stride, pads=pads, ceil_mode=int(ceil))
    if not maximum:
        attrs["count_include_pad"] = int(include)
    model = onnx_pool("MaxPool" if maximum else "AveragePool", ["N", 2, *size], **attrs)
    try:
        graph = cg.load_onnx(model)
    except OnnxImportError as error:                 # the ceil_mode forms PyTorch's semantics cannot say
        assert "ceil_mode" in str(error)
        assume(False)
    assert graph.node("y").op == f"{'Max' if maximum else 'Avg'}Pool{dims}d"
    x = np.random.default_rng(seed).normal(size=(2, 2, *size)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0])
    assert_close(cg.run(graph, x), reference_run(graph, x), "reference")


def test_auto_pad_same_upper_in_3d():
    model = onnx_pool("MaxPool", ["N", 1, 5, 4, 3], kernel_shape=[2, 3, 2], strides=[2, 1, 2], auto_pad="SAME_UPPER")
    graph = cg.load_onnx(model)
    assert graph.node("y").attrs["pads"] == (0, 1, 0, 1, 1, 1)
    x = np.random.default_rng(0).normal(size=(2, 1, 5, 4, 3)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0])


def test_misfits_are_clean_errors():
    with pytest.raises(ValueError, match="tuple of 3"):
        cg.MaxPool3d((2, 2))
    with pytest.raises(ValueError, match="at most half"):
        cg.AvgPool1d(2, padding=2)
    graph = cg.Graph("g")
    with pytest.raises(cg.CnnGraphError, match="3-D input"):
        graph.apply(cg.MaxPool1d(2), graph.input("x", (None, 2, 4, 4)))
    with pytest.raises(OnnxImportError, match="one value per spatial axis"):
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])
        g = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])])
        cg.load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


@pytest.mark.parametrize("maximum", [True, False])
@pytest.mark.parametrize("include", [True, False])
def test_3d_ceil_mode_that_no_onnx_ceil_mode_says(maximum, include):
    """kernel 2, stride 3 over (3, 4, 3): ceil adds a window on the second axis, and PyTorch drops the one
    ONNX's ceil formula keeps on the first ("mixed"): exported as Pad(−inf) + MaxPool or as window sums."""
    graph = cg.Graph("g")
    graph.output(graph.apply(build(maximum, 3, 2, 3, 0, 1, True, include), graph.input("x", (None, 2, 3, 4, 3))))
    x = np.random.default_rng(0).normal(size=(2, 2, 3, 4, 3)).astype(np.float32)
    for opset in (13, NEWEST):
        check(graph, x, opset)
        ops = {n.op_type for n in cg.export_onnx(graph, opset=opset).graph.node}
        assert ops == ({"Pad", "MaxPool"} if maximum else {"Conv", "Mul"})
