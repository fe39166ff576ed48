"""Pooling output sizes on small inputs, down to a window wider than the padded input (timm's VoVNet pools a
2×2 map with kernel 3, stride 2, ceil_mode: one window in PyTorch and in ONNX). cnngraph.shapes.pool_output_size
against a line-by-line transcription of PyTorch's formula and against onnxruntime's output shape (which, like
the ONNX spec since onnx PR #5741, drops a ceil_mode window starting in the right padding, pytorch #71549); the
importer takes these sizes and computes onnxruntime's numbers."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, ort_outputs
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import CnnGraphError
from cnngraph.shapes import pool_output_size
from cnngraph.tolerance import assert_close


def pytorch_pool_size(size, kernel, pad_l, pad_r, stride, dilation, ceil_mode):
    """aten/src/ATen/native/Pool.h, pooling_output_shape_pad_lr, transcribed (div_rtn is floor division)."""
    output_size = (size + pad_l + pad_r - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) \
        // stride + 1
    if ceil_mode and (output_size - 1) * stride >= size + pad_l:
        output_size -= 1
    return output_size


def onnx_max_pool(size, kernel, stride, padding, dilation, ceil):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "h", "w"])
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[kernel, kernel],
                            strides=[stride, stride], pads=[padding] * 4, dilations=[dilation, dilation],
                            ceil_mode=int(ceil))
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])


@st.composite
def windows(draw):
    kernel = draw(st.integers(1, 4))
    return (draw(st.integers(1, 6)), kernel, draw(st.integers(1, 3)), draw(st.integers(0, kernel // 2)),
            draw(st.integers(1, 2)), draw(st.booleans()))


@examples(60)
@given(windows())
def test_pool_output_size_is_pytorchs(window):
    size, kernel, stride, padding, dilation, ceil = window
    ours = pool_output_size(size, kernel, stride, padding, padding, dilation, ceil)
    assert ours == pytorch_pool_size(size, kernel, padding, padding, stride, dilation, ceil)


@examples(30)
@given(windows(), st.integers(0, 99))
def test_max_pool_import_matches_onnxruntime_or_is_refused(window, seed):
    size, kernel, stride, padding, dilation, ceil = window
    pytorch = pytorch_pool_size(size, kernel, padding, padding, stride, dilation, ceil)
    if pytorch < 1:                               # PyTorch refuses ("output size is too small"), so do we
        with pytest.raises(CnnGraphError):
            cg.load_onnx(onnx_max_pool(size, kernel, stride, padding, dilation, ceil))
        return
    model = onnx_max_pool(size, kernel, stride, padding, dilation, ceil)
    x = np.random.default_rng(seed).normal(size=(1, 2, size, size)).astype(np.float32)
    expected = ort_outputs(model, x)[0]
    assert expected.shape[2:] == (pytorch, pytorch)    # a window starting in the padding is dropped (#71549)
    graph = cg.load_onnx(model)
    assert graph.type_of(graph.outputs[0]).shape[2:] == (pytorch, pytorch)
    taps = np.arange(pytorch)[:, None] * stride - padding + np.arange(kernel) * dilation
    assume(((taps >= 0) & (taps < size)).any(axis=1).all())   # a window of padding only: -inf vs -FLT_MAX
    assert_close(cg.run(graph, x), expected, "NumPy backend vs onnxruntime")
    assert_close(reference_run(graph, x), expected, "reference vs onnxruntime")


@pytest.mark.parametrize("size", [2, 3, 4])
@pytest.mark.parametrize("layer", [cg.MaxPool2d(3, 2, ceil_mode=True), cg.AvgPool2d(3, 2, ceil_mode=True),
                                   cg.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)], ids=repr)
def test_ceil_window_wider_than_the_input_round_trips(layer, size):
    """VoVNet's last stage: MaxPool2d(3, 2, ceil_mode=True) on a map smaller than its kernel (and averages)."""
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", (None, 2, size, size))))
    padding = layer.attrs["pads"][0]
    out = pytorch_pool_size(size, 3, padding, padding, 2, 1, True)
    assert graph.type_of(graph.outputs[0]).shape[2:] == (out, out)
    assert size > 2 or padding or out == 1                       # VoVNet's 2×2 map: one window
    x = np.random.default_rng(size).normal(size=(2, 2, size, size)).astype(np.float32)
    ours = cg.run(graph, x)
    assert_close(ours, reference_run(graph, x), "NumPy backend vs reference")
    assert_close(ort_outputs(cg.export_onnx(graph), x)[0], ours, "onnxruntime on the export")
