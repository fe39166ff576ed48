"""Conv1d, Conv3d and ConvTranspose1d/2d/3d through ONNX: export with random attributes at opsets 13 to the
newest (full_check, onnxruntime against the naive reference), round trips that give the same layer back, and
import of the forms exporters write (1-D and 3-D kernels, asymmetric pads, auto_pad, output_padding,
output_shape, dilations, group) against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.errors import OnnxImportError
from cnngraph.tolerance import assert_close

try:
    from test_onnx_export import OPSETS, check_model_runs, graph_of
except ImportError:                      # run from another folder
    from tests.onnx.test_onnx_export import OPSETS, check_model_runs, graph_of


def random_conv(rng, dims: int, transposed: bool):
    groups = int(rng.choice([1, 2]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel, stride, dilation = (tuple(int(v) for v in rng.integers(1, 4, dims)) for _ in range(3))
    dilation = tuple(min(d, 2) for d in dilation)
    size = tuple(int(v) for v in rng.integers(2, 5, dims))
    if transposed:                                  # 3+ input pixels: the full output outlasts the pads
        size = tuple(max(3, s) for s in size)
        # below the stride: onnxruntime refuses output_padding >= stride, which PyTorch allows when it is
        # below the dilation
        output_padding = tuple(int(rng.integers(0, s)) for s in stride)
        pads = tuple(int(v) for v in rng.integers(0, 2, 2 * dims))
        layer = {1: cg.ConvTranspose1d, 2: cg.ConvTranspose2d, 3: cg.ConvTranspose3d}[dims](
            cin, cout, kernel, stride, pads, output_padding, groups, bool(rng.integers(2)), dilation)
    else:
        pads = tuple(int(v) for v in rng.integers(0, 3, 2 * dims))                    # asymmetric
        size = tuple(max(s, (k - 1) * d + 1) for s, k, d in zip(size, kernel, dilation))
        layer = {1: cg.Conv1d, 3: cg.Conv3d}[dims](cin, cout, kernel, stride, pads, dilation, groups,
                                                    bool(rng.integers(2)))
    return graph_of(layer, (None, cin, *size), name=layer.op)


CASES = [(1, False), (3, False), (1, True), (2, True), (3, True)]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dims, transposed", CASES)
def test_export_matches_onnxruntime(dims, transposed, opset):
    rng = np.random.default_rng([dims, transposed, opset])
    for _ in range(3):
        graph = random_conv(rng, dims, transposed)
        check_model_runs(graph, opset, rng)
        back = cg.load_onnx(cg.export_onnx(graph, opset=opset))
        (node,), (original,) = back.layers(), graph.layers()
        assert (node.op, dict(node.attrs)) == (original.op, dict(original.attrs))


# --- import ----------------------------------------------------------------------------------------------------
def onnx_model(op_type, x_shape, weight, bias=None, opset=17, **attrs):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(op_type, inputs, ["y"], name="the_node", **attrs)
    out_dims = ["N", *(f"d{i}" for i in range(len(x_shape)))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, rng.standard_normal((2, *x_shape)).astype(np.float32)


def imports_like_onnxruntime(model, x, op):
    graph = cg.load_onnx(model)
    assert [n.op for n in graph.layers()] == [op]
    expected = make_session(model).run(None, {"x": x})[0]
    assert_close(cg.run(graph, x), expected, op)


CONV_IMPORTS = [
    dict(),
    dict(pads=[1, 2], strides=[2]),
    dict(auto_pad="SAME_UPPER", strides=[2]),
    dict(auto_pad="SAME_LOWER", kernel_shape=[4]),
    dict(auto_pad="VALID", dilations=[2]),
]


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("attrs", CONV_IMPORTS)
def test_import_conv(dims, attrs):
    rng = np.random.default_rng(dims)
    k = attrs.get("kernel_shape", [3])[0]
    attrs = {key: value * dims if key != "auto_pad" else value for key, value in attrs.items()}
    if "pads" in attrs:                             # begins then ends
        attrs["pads"] = [1] * dims + [2] * dims
    weight = rng.standard_normal((4, 1, *[k] * dims))
    model, x = onnx_model("Conv", (2, *[5, 6, 5][:dims]), weight, rng.standard_normal(4), group=2, **attrs)
    imports_like_onnxruntime(model, x, {1: "Conv1d", 3: "Conv3d"}[dims])


TRANSPOSE_IMPORTS = [
    dict(),
    dict(strides=[2], pads=[1, 0], output_padding=[1]),
    dict(strides=[2], dilations=[2], pads=[0, 2]),
    dict(strides=[2], auto_pad="SAME_UPPER"),
    dict(strides=[2], auto_pad="SAME_LOWER", kernel_shape=[4]),
    dict(strides=[2], output_shape=[8]),
    dict(strides=[3], output_shape=[12], kernel_shape=[2]),
    dict(strides=[2], output_shape=[6]),
    dict(strides=[2], auto_pad="VALID"),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("attrs", TRANSPOSE_IMPORTS)
def test_import_conv_transpose(dims, attrs):
    rng = np.random.default_rng(dims)
    k = attrs.get("kernel_shape", [3])[0]
    attrs = {key: value if key == "auto_pad" else
             value[:len(value) // 2] * dims + value[len(value) // 2:] * dims if key == "pads" else value * dims
             for key, value in attrs.items()}
    weight = rng.standard_normal((4, 3, *[k] * dims))
    model, x = onnx_model("ConvTranspose", (4, *[4, 3, 2][:dims]), weight, rng.standard_normal(6), group=2,
                          **attrs)
    if "output_shape" in attrs:              # a 1-D output_shape for every axis, whatever the input size
        attrs["output_shape"] = [attrs["output_shape"][0] // 4 * s for s in [4, 3, 2][:dims]]
        model, x = onnx_model("ConvTranspose", (4, *[4, 3, 2][:dims]), weight, rng.standard_normal(6), group=2,
                              **attrs)
    imports_like_onnxruntime(model, x, f"ConvTranspose{dims}d")


@pytest.mark.parametrize("opset", [13, 18])
def test_import_keeps_the_weight_layout(opset):
    """ConvTranspose's weight is (in, out/groups, k...): out_channels is weight.shape[1]·group."""
    weight = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    model, _ = onnx_model("ConvTranspose", (4, 5), weight, opset=opset, group=2)
    node, = cg.load_onnx(model).layers()
    assert (node.attrs["in_channels"], node.attrs["out_channels"]) == (4, 6)
    assert np.array_equal(node.params["weight"], weight)


@pytest.mark.parametrize("op_type, weight, attrs, message", [
    ("Conv", np.ones((1, 1, 1, 1, 1, 1)), {}, "rank 6"),
    ("Conv", np.ones((1, 1, 3)), dict(strides=[1, 1]), "one value per spatial axis"),
    ("ConvTranspose", np.ones((1, 1, 3)), dict(output_shape=[7], output_padding=[1], strides=[2]), "output_padding"),
    ("ConvTranspose", np.ones((1, 1, 2)), dict(strides=[3], auto_pad="SAME_UPPER"), "longer than the full"),
    ("ConvTranspose", np.ones((3, 1, 3)), dict(group=2), "does not divide"),
])
def test_import_refuses_cleanly(op_type, weight, attrs, message):
    x_shape = (weight.shape[0] if op_type == "ConvTranspose" else 1, *[5] * (weight.ndim - 2))
    model, _ = onnx_model(op_type, x_shape, weight, **attrs)
    with pytest.raises(OnnxImportError, match=f"the_node.*{message}|{message}.*the_node"):
        cg.load_onnx(model)


@pytest.mark.parametrize("opset", range(13, onnx.defs.onnx_opset_version() + 1))
def test_every_opset_passes_the_full_check(opset):
    """Every opset from 13 to the newest: each op's example exports and passes check_model(full_check=True)."""
    for op in ("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "BatchNorm1d",
               "BatchNorm3d"):
        layer, shapes = cg.REGISTRY[op].example()
        onnx.checker.check_model(cg.export_onnx(graph_of(layer, *shapes), opset=opset), full_check=True)
