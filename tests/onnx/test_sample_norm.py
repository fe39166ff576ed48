"""LayerNorm, GroupNorm, InstanceNorm1d/2d/3d: the NumPy kernel against the naive reference and onnxruntime at
every opset form (LayerNormalization from 17, GroupNormalization from 21, the exporters' expressions below),
over hypothesis-drawn shapes, eps and affine; the ONNX forms PyTorch's exporters write, imported."""
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
from cnngraph.errors import OnnxImportError, ShapeError
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
OPSETS = sorted({13, 17, 18, 21, NEWEST})
EPS = st.sampled_from([1e-5, 1e-3, 0.1])


def one_layer(layer, shape):
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", (None, *shape))))
    return graph


def randomize(layer, rng):
    for key, value in layer.params.items():
        setattr(layer, key, rng.normal(size=value.shape).astype(np.float32))
    return layer


def check_everywhere(graph, rng, opsets, batch=2):
    """NumPy backend = naive reference on an offset input (mean 3, so that a kernel that skipped centring
    would fail); onnxruntime on the export at each opset = NumPy backend on a centred input: onnxruntime's
    GroupNormalization-21 computes E[x²] − E[x]², which loses digits to cancellation on the offset input
    (2 elements per group, mean 3: 0.3% off the float64 reference)."""
    shape = [d if isinstance(d, int) else batch for d in graph.type_of("x").shape]
    x = (rng.normal(size=shape) * 2 + 3).astype(np.float32)
    assert_close(cg.run(graph, x), reference_run(graph, x), "NumPy backend vs reference")
    centred = (rng.normal(size=shape) * 2).astype(np.float32)
    ours = cg.run(graph, centred)
    for opset in opsets:
        assert_close(ort_outputs(cg.export_onnx(graph, opset=opset), centred)[0], ours, f"onnxruntime at opset {opset}")


@examples(10)
@given(dims=st.lists(st.integers(1, 4), min_size=2, max_size=3), tail=st.integers(1, 2), eps=EPS,
       affine=st.booleans(), bias=st.booleans(), seed=st.integers(0, 99), opset=st.sampled_from(OPSETS))
def test_layer_norm(dims, tail, eps, affine, bias, seed, opset):
    rng = np.random.default_rng(seed)
    layer = randomize(cg.LayerNorm(tuple(dims[-tail:]), eps, affine, bias), rng)
    check_everywhere(one_layer(layer, dims), rng, [opset])


@examples(10)
@given(groups=st.integers(1, 3), per_group=st.integers(1, 3), spatial=st.lists(st.integers(1, 4), max_size=2),
       eps=EPS, affine=st.booleans(), seed=st.integers(0, 99), opset=st.sampled_from(OPSETS))
def test_group_norm(groups, per_group, spatial, eps, affine, seed, opset):
    rng = np.random.default_rng(seed)
    layer = randomize(cg.GroupNorm(groups, groups * per_group, eps, affine), rng)
    graph = one_layer(layer, (groups * per_group, *spatial))
    check_everywhere(graph, rng, [opset])
    back = cg.optimize(cg.load_onnx(cg.export_onnx(graph, opset=18)), level=1)   # the Reshape/Instance form
    assert [n.op for n in back.layers()] == ["GroupNorm"]
    x = rng.normal(size=(3, groups * per_group, *spatial)).astype(np.float32)
    assert_close(cg.run(back, x), cg.run(graph, x))


@examples(10)
@given(rank=st.integers(1, 3), channels=st.integers(1, 4), size=st.integers(1, 4), eps=EPS, affine=st.booleans(),
       seed=st.integers(0, 99), opset=st.sampled_from([13, NEWEST]))
def test_instance_norm(rank, channels, size, eps, affine, seed, opset):
    rng = np.random.default_rng(seed)
    cls = (cg.InstanceNorm1d, cg.InstanceNorm2d, cg.InstanceNorm3d)[rank - 1]
    layer = randomize(cls(channels, eps, affine=affine), rng)
    check_everywhere(one_layer(layer, (channels, *[size + i for i in range(rank)])), rng, [opset])


def test_constructor_and_shape_errors():
    with pytest.raises(ValueError, match="divide"):
        cg.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="track_running_stats"):
        cg.InstanceNorm2d(3, track_running_stats=True)
    with pytest.raises(ShapeError, match="trailing"):
        one_layer(cg.LayerNorm((4, 5)), (3, 5, 4))
    with pytest.raises(ShapeError, match="4-D"):
        one_layer(cg.InstanceNorm2d(3), (3, 5))
    assert "bias" not in cg.LayerNorm(4, bias=False).params and not cg.LayerNorm(4, elementwise_affine=False).params


# --- what PyTorch's exporters write -------------------------------------------------------------------------------
def onnx_model(nodes, x_shape, initializers, opset):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def check_import(model, shape, op):
    graph = cg.optimize(cg.load_onnx(model), level=1)
    assert op in [n.op for n in graph.layers()]
    x = (np.random.default_rng(1).normal(size=shape) + 1).astype(np.float32)
    assert_close(cg.run(graph, x), ort_outputs(model, x)[0])
    return graph


@pytest.mark.parametrize("axis", [-1, -2, 2])
def test_layer_normalization_with_axis_and_broadcast_scale(axis):
    rng = np.random.default_rng(0)
    scale = rng.normal(size=(4, 5) if axis != -1 else (5,)).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=axis, epsilon=1e-3)
    graph = check_import(onnx_model([node], ["N", 3, 4, 5], {"s": scale, "b": np.float32([0.5])}, 17),
                         (2, 3, 4, 5), "LayerNorm")
    assert graph.node("y").attrs["normalized_shape"] == ((4, 5) if axis != -1 else (5,))


def test_group_normalization_21_scales_per_channel_and_18_is_refused():
    rng = np.random.default_rng(0)
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-5)
    inits = {"s": rng.normal(size=6).astype(np.float32), "b": rng.normal(size=6).astype(np.float32)}
    check_import(onnx_model([node], ["N", 6, 3, 2], inits, 21), (2, 6, 3, 2), "GroupNorm")
    with pytest.raises(OnnxImportError, match="deprecated"):              # opset 18's per-group scale
        cg.load_onnx(onnx_model([node], ["N", 6, 3, 2], {k: v[:2] for k, v in inits.items()}, 18))


def test_torchscript_group_norm_form_with_shape_arithmetic():
    """torch.onnx (TorchScript) at opset 13: Reshape(x, [0, G, -1]), InstanceNormalization(ones, zeros),
    Reshape(., Shape(x)), Mul(., weight (C,1,1)), Add(., bias (C,1,1))."""
    rng = np.random.default_rng(0)
    c = 4
    nodes = [helper.make_node("Reshape", ["x", "g_shape"], ["r"]),
             helper.make_node("InstanceNormalization", ["r", "ones", "zeros"], ["n"], epsilon=1e-5),
             helper.make_node("Shape", ["x"], ["x_shape"]),
             helper.make_node("Reshape", ["n", "x_shape"], ["back"]),
             helper.make_node("Mul", ["back", "w"], ["scaled"]),
             helper.make_node("Add", ["scaled", "b"], ["y"])]
    inits = {"g_shape": np.int64([0, 2, -1]), "ones": np.ones(2, np.float32), "zeros": np.zeros(2, np.float32),
             "w": rng.normal(size=(c, 1, 1)).astype(np.float32), "b": rng.normal(size=(c, 1, 1)).astype(np.float32)}
    graph = check_import(onnx_model(nodes, ["N", c, 3, 3], inits, 13), (2, c, 3, 3), "GroupNorm")
    assert [n.op for n in graph.layers()] == ["GroupNorm"]


def test_instance_normalization_picks_the_rank_and_drops_a_trivial_affine():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)
    inits = {"s": np.ones(3, np.float32), "b": np.zeros(3, np.float32)}
    graph = check_import(onnx_model([node], ["N", 3, 7], inits, 13), (2, 3, 7), "InstanceNorm1d")
    assert not graph.node("y").attrs["affine"]
    inits["s"] = np.float32([1, 2, 3])
    check_import(onnx_model([node], ["N", 3, 2, 2, 2], inits, 13), (2, 3, 2, 2, 2), "InstanceNorm3d")


def test_misfit_scale_is_a_clean_error():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])
    model = onnx_model([node], ["N", 3, 4, 4], {"s": np.ones(2, np.float32), "b": np.zeros(2, np.float32)}, 13)
    with pytest.raises(OnnxImportError, match="one value per channel"):
        cg.load_onnx(model)
