"""Upsample (cnngraph/layers/resample.py): PyTorch's nn.Upsample values, every coordinate transformation and
nearest rounding against the naive reference and onnxruntime (the oracle for ONNX Resize), and the Resize /
Upsample forms exporters write, with constant or Shape-computed sizes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import examples, ort_outputs, randn
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import OnnxImportError, ShapeError
from cnngraph.layers.resample import NEAREST_MODES, TRANSFORMS, interpolate
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()


def one_layer(layer, shape):
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", shape)))
    return graph


def check(graph, opset, batch=2, seed=0):
    x = randn(np.random.default_rng(seed), [batch if isinstance(d, str) else d for d in graph.type_of("x").shape])
    got = cg.run(graph, x)
    assert_close(got, reference_run(graph, x), "vs the reference")
    assert_close(got, ort_outputs(cg.export_onnx(graph, opset=opset), x)[0], f"vs onnxruntime at opset {opset}")
    return got


# --- PyTorch's values (computed by hand from F.interpolate's definitions) -------------------------------------
SQUARE = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)


@pytest.mark.parametrize("layer, expected", [
    (cg.Upsample(scale_factor=2), np.kron([[1.0, 2.0], [3.0, 4.0]], np.ones((2, 2)))),
    (cg.Upsample(scale_factor=2, mode="bilinear"),                   # align_corners=False
     [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]]),
    (cg.Upsample(size=3, mode="bilinear", align_corners=True),
     [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]),
    (cg.Upsample(size=(1, 3), mode="bilinear"),                      # output length 1: PyTorch's half_pixel
     [[2.0, 2.5, 3.0]]),
    (cg.Upsample(scale_factor=1.5, mode="nearest-exact"), [[1.0, 2.0, 2.0], [3.0, 4.0, 4.0], [3.0, 4.0, 4.0]]),
    (cg.Upsample(size=(1, 3), mode="bicubic", align_corners=True),   # t = 0.5: Keys' weights -1/16, 9/16, 9/16, -1/16
     [[1.0, 1.5, 2.0]]),
])
def test_pytorch_values(layer, expected):
    graph = one_layer(layer, (None, 1, 2, 2))
    assert_close(cg.run(graph, SQUARE)[0, 0], np.asarray(expected, np.float32), repr(layer))
    check(graph, 18, batch=1)


def test_pytorch_arguments():
    graph = cg.Graph("g")
    y = interpolate(graph, graph.input("x", (None, 1, 2, 2)), size=(3, 3), mode="bilinear", align_corners=True)
    assert graph.node(y.name).attrs == cg.Upsample(size=3, mode="bilinear", align_corners=True).attrs | {"size": (3, 3)}
    assert cg.Upsample(scale_factor=2).attrs["coordinate_transformation_mode"] == "asymmetric"
    assert cg.Upsample(scale_factor=2, mode="bilinear", align_corners=True).attrs[
        "coordinate_transformation_mode"] == "align_corners"
    with pytest.raises(ValueError, match="exactly one"):
        cg.Upsample()
    with pytest.raises(ValueError, match="linear modes only"):
        cg.Upsample(scale_factor=2, align_corners=True)
    with pytest.raises(ShapeError, match="rank 4"):
        one_layer(cg.Upsample(scale_factor=2, mode="bilinear"), (None, 3, 4))
    with pytest.raises(ShapeError, match=">= 1"):
        one_layer(cg.Upsample(scale_factor=0.1), (None, 3, 4, 4))


# --- every mode against the reference and onnxruntime ----------------------------------------------------------
@st.composite
def resizes(draw):
    spatial = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["nearest", {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]]
                                + (["bicubic"] if spatial == 2 else [])))
    shape = (None, 2, *draw(st.lists(st.integers(1, 5), min_size=spatial, max_size=spatial)))
    if draw(st.booleans()):
        how = dict(size=tuple(draw(st.lists(st.integers(1, 7), min_size=spatial, max_size=spatial))))
    else:
        scales = draw(st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]), min_size=spatial, max_size=spatial))
        how = dict(scale_factor=tuple(max(s, 1.0 / d) for s, d in zip(scales, shape[2:])))     # no empty output
    transform = draw(st.sampled_from(TRANSFORMS))
    if transform == "half_pixel_symmetric":
        # its nearest coordinates land on exact integers, where onnxruntime and ONNX's reference round apart
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
    opset = draw(st.sampled_from([13, 18, NEWEST] if transform != "half_pixel_symmetric" else [19, NEWEST]))
    return shape, mode, how, transform, draw(st.sampled_from(NEAREST_MODES)), opset


@examples(80)
@given(resizes())
def test_resize_matches_reference_and_onnxruntime(case):
    shape, mode, how, transform, nearest_mode, opset = case
    layer = cg.Upsample(**how, mode=mode, coordinate_transformation_mode=transform, nearest_mode=nearest_mode)
    check(one_layer(layer, shape), opset)


# --- ONNX import: what PyTorch's exporters write ---------------------------------------------------------------
def resize_model(inputs, init, opset, shape=("N", 3, 4, 5), op="Resize", extra_nodes=(), **attrs):
    nodes = [*extra_nodes, helper.make_node(op, ["x", *inputs], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(shape))],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in init])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def matches_onnxruntime(model, batch=3):
    graph = cg.load_onnx(model)
    x = randn(np.random.default_rng(2), [batch, *graph.type_of("x").shape[1:]])
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0], "vs onnxruntime")
    assert graph.type_of("y").shape[0] == "N"
    return graph


F32, I64 = np.float32, np.int64
SHAPE_SIZES = [helper.make_node("Shape", ["x"], ["shape"]),
               helper.make_node("Slice", ["shape", "zero", "two"], ["head"]),
               helper.make_node("Concat", ["head", "hw"], ["sizes"], axis=0)]
SHAPE_INIT = [("zero", I64([0])), ("two", I64([2])), ("hw", I64([7, 9]))]
LINEAR = dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")


@pytest.mark.parametrize("name, model", [
    ("torchscript13 nearest scales", resize_model(["roi", "scales"], [("roi", F32([])), ("scales", F32([1, 1, 2, 2]))],
                                                  13, mode="nearest", coordinate_transformation_mode="asymmetric",
                                                  nearest_mode="floor")),
    ("opset11 roi and scales", resize_model(["roi", "scales"], [("roi", F32([])), ("scales", F32([1, 1, 3, 2]))],
                                            11, mode="nearest", coordinate_transformation_mode="half_pixel",
                                            nearest_mode="round_prefer_ceil")),
    ("torchscript17 bilinear sizes from Shape", resize_model(["roi", "", "sizes"], [("roi", F32([])), *SHAPE_INIT],
                                                            17, extra_nodes=SHAPE_SIZES, **LINEAR)),
    ("torchscript13 align_corners", resize_model(["", "scales"], [("scales", F32([1, 1, 1.5, 2]))], 13,
                                                 mode="linear", coordinate_transformation_mode="align_corners")),
    ("dynamo18 sizes with axes", resize_model(["", "", "sizes"], [("sizes", I64([6, 3]))], 18, axes=[2, 3],
                                              antialias=0, keep_aspect_ratio_policy="stretch", **LINEAR)),
    ("dynamo19 half_pixel_symmetric", resize_model(["", "scales"], [("scales", F32([1, 1, 1.5, 0.6]))], 19,
                                                   mode="linear", coordinate_transformation_mode="half_pixel_symmetric")),
    ("default attributes", resize_model(["", "scales"], [("scales", F32([1, 1, 2, 1.5]))], 13)),
    ("resize10", resize_model(["scales"], [("scales", F32([1, 1, 2, 3]))], 10)),
    ("torchscript17 bicubic", resize_model(["roi", "scales"], [("roi", F32([])), ("scales", F32([1, 1, 2, 1.5]))],
                                           17, mode="cubic", cubic_coeff_a=-0.75,
                                           coordinate_transformation_mode="pytorch_half_pixel")),
    ("upsample9 nearest", resize_model(["scales"], [("scales", F32([1, 1, 2, 3]))], 9, op="Upsample")),
    ("upsample9 linear", resize_model(["scales"], [("scales", F32([1, 1, 2, 2]))], 9, op="Upsample", mode="linear")),
])
def test_resize_imports(name, model):
    graph = matches_onnxruntime(model)
    assert [n.op for n in graph.layers()] == ["Upsample"]
    opset = NEWEST if "symmetric" in name else 13                           # exported with a symbolic N
    back = cg.load_onnx(cg.export_onnx(graph, opset=opset))
    assert [n.op for n in back.layers()] == ["Upsample"] and back.node("y").attrs == graph.node("y").attrs


@pytest.mark.parametrize("attrs, inputs, init, reason", [
    (dict(mode="cubic", cubic_coeff_a=-0.5), ["", "scales"], [("scales", F32([1, 1, 2, 2]))], "cubic kernel"),
    (dict(coordinate_transformation_mode="tf_crop_and_resize"), ["roi", "scales"],
     [("roi", F32([0, 0, 0, 0, 1, 1, 1, 1])), ("scales", F32([1, 1, 2, 2]))], "tf_crop_and_resize"),
    (dict(), ["", "scales"], [("scales", F32([1, 2, 2, 2]))], "batch or channel"),
    (dict(), ["", "scales"], [("scales", F32([1, 1, np.nan, 2]))], "positive and finite"),
    (dict(), ["", "scales"], [("scales", F32([1, 1, 2 ** 30, 2]))], "more than"),
    (dict(), ["", "scales"], [("scales", F32([1, 1, 2]))], "3 scales"),
])
def test_resize_refusals_name_the_node(attrs, inputs, init, reason):
    with pytest.raises(OnnxImportError, match=f"'y'.*{reason}"):
        cg.load_onnx(resize_model(inputs, init, 13, **attrs))
    with pytest.raises(OnnxImportError, match="repeat an axis"):
        cg.load_onnx(resize_model(["", "", "sizes"], [("sizes", I64([2, 3]))], 18, axes=[2, -2]))


def test_size_export_at_opset_13_keeps_the_batch_symbolic():
    graph = one_layer(cg.Upsample(size=(3, 7), mode="bilinear"), (None, 2, 4, 4))
    model = cg.export_onnx(graph, opset=13)
    assert [n.op_type for n in model.graph.node] == ["Shape", "Slice", "Concat", "Resize"]
    for batch in (1, 3):
        check(graph, 13, batch=batch)


def test_fcn_form_resizes_back_to_the_input_size():
    """FCN/LR-ASPP: F.interpolate(features, size=x.shape[-2:], mode="bilinear"), sizes built from two Shapes."""
    nodes = [helper.make_node("AveragePool", ["x"], ["f"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "two", "four"], ["hw"]),
             helper.make_node("Shape", ["f"], ["fs"]), helper.make_node("Slice", ["fs", "zero", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
             helper.make_node("Resize", ["f", "", "", "sizes"], ["y"], **LINEAR)]
    model = resize_model([], [("zero", I64([0])), ("two", I64([2])), ("four", I64([4]))], 17, shape=("N", 3, 8, 6))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    graph = matches_onnxruntime(model)
    assert graph.type_of("y").shape == ("N", 3, 8, 6)


def test_a_linear_chain_through_slice_and_upsample_collapses():
    """Slice and Upsample are affine per sample (``linear``): Conv -> Slice -> Upsample -> Flatten -> Linear is
    one Linear at level 2 (fold_conv_linear runs the chain on the identity basis)."""
    cg.manual_seed(0)
    graph = cg.Graph("g")
    y = graph.apply(cg.Conv2d(2, 4, 3, padding=1), graph.input("x", (None, 2, 4, 4)))
    y = graph.apply(cg.Upsample(scale_factor=2, mode="bilinear"), graph.apply(cg.Slice([0], [2], [1]), y))
    graph.output(graph.apply(cg.Linear(2 * 8 * 8, 3), graph.apply(cg.Flatten(), y)))
    optimized = cg.optimize(graph, level=2, verify=True)
    assert [n.op for n in optimized.layers()] == ["Flatten", "Linear"]
    x = randn(np.random.default_rng(4), (3, 2, 4, 4))
    assert_close(cg.run(optimized, x), reference_run(graph, x), "collapsed vs the reference")
