"""ONNX import: Graph -> export_onnx -> load_onnx -> optimize(level=1) gives back the same graph (outputs,
parameters bit for bit, node, input and output names, symbolic batch), and bad files and unsupported ops are
refused clearly. The importer maps one ONNX node to one of ours; the level-1 canonicalization rules
(passes/canon_*.py) give back the layers the exporter wrote as several ONNX nodes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.errors import CnnGraphError, OnnxImportError
from cnngraph.layers.normalization import BATCHNORM_BY_RANK
from cnngraph.tolerance import assert_close

try:                                     # the export tests' random single-op graphs
    from test_onnx_export import BUILDERS, POOL_CASES, graph_of, random_inputs, random_network
except ImportError:                      # run from another folder
    from tests.onnx.test_onnx_export import BUILDERS, POOL_CASES, graph_of, random_inputs, random_network

OPSETS = (13, 18)


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def canonical(graph):
    """The imported graph in canonical form: the level-1 rules."""
    return cg.optimize(graph, level=1)


def round_trip(graph, opset: int, tmp_path=None):
    model = cg.export_onnx(graph, opset=opset)
    if tmp_path is None:
        return canonical(cg.load_onnx(model))
    path = tmp_path / f"{graph.name}.onnx"
    onnx.save(model, str(path))
    return canonical(cg.load_onnx(path))


def assert_same(graph, back, batches=(1, 3), seed=0):
    """Same outputs (within tolerance), same parameters bit for bit, same names, batch still symbolic."""
    back.lint()
    assert back.inputs == graph.inputs
    assert back.outputs == graph.outputs
    assert [back.type_of(n) for n in back.inputs] == [graph.type_of(n) for n in graph.inputs]
    assert [back.type_of(n) for n in back.outputs] == [graph.type_of(n) for n in graph.outputs]
    kept = [n for n in graph.layers() if n.op not in ("Dropout", "Identity")]     # Identity (inference) is removed
    assert {n.name for n in kept} <= {n.name for n in back.layers()} <= {n.name for n in graph.layers()}
    for node in kept:
        other = back.node(node.name)
        assert set(other.params) == set(node.params), node.label()
        for key, array in node.params.items():
            assert other.params[key].dtype == np.float32
            assert np.array_equal(other.params[key], array), f"{node.label()}.{key}"
    rng = np.random.default_rng(seed)
    for batch in batches:
        arrays = random_inputs(graph, batch, rng)
        for name, a, b in zip(graph.outputs, as_tuple(cg.run(back, *arrays)), as_tuple(cg.run(graph, *arrays))):
            assert_close(a, b, f"{graph.name} batch {batch} output {name!r}")


def ort_run(model, *arrays):
    """onnxruntime (optimizations off) on the original model: the oracle for models we did not write."""
    session = make_session(model)
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)})[0]


def assert_same_outputs(graph, back, batches=(1, 3), seed=0):
    back.lint()
    rng = np.random.default_rng(seed)
    for batch in batches:
        arrays = random_inputs(graph, batch, rng)
        for name, a, b in zip(graph.outputs, as_tuple(cg.run(back, *arrays)), as_tuple(cg.run(graph, *arrays))):
            assert_close(a, b, f"{graph.name} batch {batch} output {name!r}")


def model_graphs():
    for name, make in sorted(cg.models.MODELS.items()):
        if name == "vgg11":
            yield name, lambda make=make: make(input_shape=(None, 3, 32, 32), num_classes=10)
        else:
            yield name, make


# --- built-in models -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name,make", list(model_graphs()), ids=[n for n, _ in model_graphs()])
def test_builtin_models_round_trip(name, make, opset):
    graph = make()
    back = round_trip(graph, opset)
    assert_same(graph, back, batches=(1, 2))
    assert [n.op for n in back.layers() if n.op not in ("Dropout", "Identity")] == \
        [n.op for n in graph.layers() if n.op not in ("Dropout", "Identity")]


def test_round_trip_through_a_file(tmp_path):
    graph = cg.models.MODELS["lenet5"]()
    assert_same(graph, round_trip(graph, 18, tmp_path))


# --- every op, small random graphs -----------------------------------------------------------------------------
def canonical_op(graph, node) -> str:
    """The op ``node`` comes back as after import and the level-1 rules: a reshape that changes no shape is an
    Identity, a variadic op of one input too, a Reshape that merges axes a Flatten, a MatMul by a constant
    matrix a Linear; everything else comes back as itself (a BatchNorm as BatchNorm1d/2d/3d by its rank)."""
    if node.layer.reshape_like and tuple(graph.type_of(node.inputs[0]).shape) == tuple(node.type.shape):
        return "Identity"
    if node.op == "Reshape" and _merges_axes(graph.type_of(node.inputs[0]).shape, node.type.shape):
        return "Flatten"
    if node.op == "MatMul" and graph.node(node.inputs[1]).op == "Constant" and len(graph.node(node.inputs[1]).type.shape) == 2:
        return "Linear"
    if node.layer.arity[1] is None and len(node.inputs) == 1:   # a variadic op of one input (Concat, Max) is it
        return "Identity"
    if node.op.startswith("BatchNorm"):              # named after its input's rank, as PyTorch names them
        return BATCHNORM_BY_RANK.get(len(node.type.shape), "BatchNorm2d")
    return node.op


def _merges_axes(before, after) -> bool:
    from cnngraph.shapes import product
    return any(tuple(after) == (*before[:s], product(before[s:s + len(before) - len(after) + 1]),
                                *before[s + len(before) - len(after) + 1:]) for s in range(len(after)))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("op", sorted(BUILDERS))
def test_op_round_trips(op, seed, opset):
    if op == "LayerNorm" and opset < 17 and not {"Pow", "Sqrt"} <= set(cg.REGISTRY):
        pytest.skip("LayerNorm before opset 17 is written with Pow and Sqrt, which are not ops here yet")
    rng = np.random.default_rng([seed, sum(map(ord, op))])
    graph = BUILDERS[op](rng, seed)
    back = canonical(cg.load_onnx(cg.export_onnx(graph, opset=opset)))
    ours = graph.node(graph.outputs[0])
    expected = canonical_op(graph, ours)
    if expected == ours.op:
        assert_same(graph, back, seed=seed)
    else:                                            # canonicalised: same outputs, the constant became a weight
        assert_same_outputs(graph, back, seed=seed)
    if op not in ("Dropout", "Identity"):            # an op ONNX has no node for comes back as what it equals
        assert back.node(ours.name).op in (expected, *getattr(ours.layer, "exported_as", ()))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("seed", range(4))
def test_random_network_round_trips(seed, opset):
    graph = random_network(np.random.default_rng(100 + seed), f"net{seed}")
    assert_same(graph, round_trip(graph, opset), seed=seed)


@pytest.mark.parametrize("opset", [13, onnx.defs.onnx_opset_version()])
@pytest.mark.parametrize("kind", ["max", "avg_include_pad", "avg_exclude_pad"])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_ceil_mode_pooling_round_trips(case, kind, opset):
    """The exporter's extra Pad nodes and window-sum form come back as one pooling node with the same output."""
    h, w, k, s, p = case
    layer = (cg.MaxPool2d(k, s, p, ceil_mode=True) if kind == "max" else
             cg.AvgPool2d(k, s, p, ceil_mode=True, count_include_pad=kind == "avg_include_pad"))
    graph = graph_of(layer, (None, 2, h, w))
    back = round_trip(graph, opset)
    assert_same(graph, back)
    node = back.node(graph.outputs[0])
    assert node.op == graph.node(graph.outputs[0]).op
    assert len(back.layers()) == 1


def test_same_auto_pad_is_made_explicit():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3, 3])
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(2, 1, 2, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c", auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("MaxPool", ["c"], ["y"], name="y", auto_pad="SAME_LOWER", kernel_shape=[2, 2])]
    model = helper.make_model(helper.make_graph(nodes, "same", [x], [y], [weight]),
                              opset_imports=[helper.make_opsetid("", 18)])
    graph = cg.load_onnx(model)
    conv, pool = graph.node("c"), graph.node("y")
    # Conv: H 5 -> out 3, total pad (3-1)*2 + 2 - 5 = 1 (at the end); W 6 -> 3, total (3-1)*2 + 3 - 6 = 1
    assert conv.attrs["pads"] == (0, 0, 1, 1) and conv.shape == ("N", 2, 3, 3)
    # MaxPool stride 1: total pad 1 on each axis, LOWER puts it at the beginning
    assert pool.attrs["pads"] == (1, 1, 0, 0) and pool.shape == ("N", 2, 3, 3)
    from onnx.reference import ReferenceEvaluator
    data = np.random.default_rng(1).normal(size=(2, 1, 5, 6)).astype(np.float32)
    assert_close(cg.run(graph, data), ReferenceEvaluator(model).run(None, {"x": data})[0])


# --- symbolic batch --------------------------------------------------------------------------------------------
def test_batch_stays_symbolic():
    graph = cg.models.MODELS["seed_m1"]()
    back = round_trip(graph, 18)
    assert back.type_of(back.inputs[0]).shape[0] == "N"
    assert back.type_of(back.outputs[0]).shape[0] == "N"
    for batch in (1, 3):
        data = np.random.default_rng(batch).normal(size=(batch, 3, 32, 32)).astype(np.float32)
        out = cg.run(back, data)
        assert out.shape[0] == batch
        assert_close(out, cg.run(graph, data))


# --- refusals --------------------------------------------------------------------------------------------------
def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    data = cg.export_onnx(cg.models.MODELS["lenet5"]()).SerializeToString()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CnnGraphError) as info:
        cg.load_onnx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\njust some text\n")
    with pytest.raises(CnnGraphError) as info:
        cg.load_onnx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CnnGraphError, match="missing.onnx"):
        cg.load_onnx(tmp_path / "missing.onnx")


def _model(nodes, initializers=(), opset=18, shape=("N", 3)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    return helper.make_model(helper.make_graph(nodes, "m", [x], [y], list(initializers)),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_every_unsupported_op_is_listed_with_its_node():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu1"),
             helper.make_node("Sin", ["a"], ["b"], name="sin_node"),
             helper.make_node("Cos", ["b"], ["c"], name="cos_node"),
             helper.make_node("Tan", ["c"], ["y"], name="tan_node")]
    with pytest.raises(OnnxImportError) as info:
        cg.load_onnx(_model(nodes))
    message = str(info.value)
    for text in ("Sin", "sin_node", "Cos", "cos_node", "Tan", "tan_node"):
        assert text in message
    assert "relu1" not in message


@pytest.mark.parametrize("low,high,op", [(-1.0, 1.0, "Hardtanh"), (0.0, 6.0, "ReLU6"), (0.0, None, "ReLU"),
                                         (None, 0.5, "Hardtanh"), (2.0, 2.0, "Hardtanh")])
def test_clip_maps_to_the_layer_its_bounds_make(low, high, op):
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", low), ("hi", high))
              if v is not None]
    nodes = [helper.make_node("Clip", ["x", "lo" if low is not None else "", "hi" if high is not None else ""],
                              ["y"], name="clip")]
    model = _model(nodes, bounds, shape=("N", 3, 4, 5))
    graph = cg.load_onnx(model)
    assert graph.node("y").op == op
    x = np.random.default_rng(0).uniform(-8, 8, size=(2, 3, 4, 5)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_run(model, x))


@pytest.mark.parametrize("axis", [None, 0, 1, 2, 3, -1])
def test_softmax_before_opset_13_normalizes_the_flattened_tail(axis):
    """Softmax-1/11 flattens the axes from ``axis`` on (default 1) and normalizes over all of them."""
    attrs = {} if axis is None else {"axis": axis}
    model = _model([helper.make_node("Softmax", ["x"], ["y"], name="sm", **attrs)], opset=11, shape=("N", 3, 4, 5))
    graph = cg.load_onnx(model)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    assert_close(cg.run(graph, x), ort_run(model, x))


def test_softmax_default_axis_is_last():
    graph = cg.load_onnx(_model([helper.make_node("Softmax", ["x"], ["y"], name="sm")], opset=13))
    assert graph.node("y").attrs["axis"] == -1


def test_dynamic_flatten_shape_arithmetic_folds_back_to_a_flatten():
    """Too many symbolic dims: the exporter computes the shape (Shape/Slice/ReduceProd/Concat); the importer
    folds that arithmetic on symbolic dims and finds the Flatten again."""
    graph = graph_of(cg.Flatten(0, 1), (None, None, None), name="dyn")
    model = cg.export_onnx(graph)
    assert {"Shape", "Slice", "ReduceProd"} <= {n.op_type for n in model.graph.node}
    imported = cg.load_onnx(model)
    assert [n.op for n in imported.layers()] == ["Reshape"]                   # one ONNX node, one of ours
    back = canonical(imported)
    assert [n.op for n in back.layers()] == ["Flatten"]
    assert_same(graph, back)


def test_reshape_that_merges_axes_becomes_flatten():
    graph = graph_of(cg.Flatten(2, 3), (None, None, 3, 4))
    model = cg.export_onnx(graph)
    assert [n.op_type for n in model.graph.node] == ["Reshape"]
    assert cg.load_onnx(model).node(graph.outputs[0]).op == "Reshape"
    back = canonical(cg.load_onnx(model))
    assert back.node(graph.outputs[0]).op == "Flatten"
    assert_same(graph, back)


def test_external_data_is_refused(tmp_path):
    weight = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../etc/passwd")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [weight])
    with pytest.raises(CnnGraphError):
        cg.load_onnx(model)


def test_inputs_with_an_initializer_are_constants_unless_asked_otherwise():
    """Old exporters list every initializer as a graph input too: by default those are constants (here the
    scale of a Mul); initializers_as_inputs=True keeps them as inputs the caller feeds."""
    scale = numpy_helper.from_array(np.array([2.0, 3.0, 4.0], np.float32), "scale")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    s = helper.make_tensor_value_info("scale", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Mul", ["x", "scale"], ["y"], name="mul")],
                                                "m", [x, s], [y], [scale]),
                              opset_imports=[helper.make_opsetid("", 13)])
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = cg.load_onnx(model)
    assert graph.inputs == ["x"] and graph.node("scale").op == "Constant"
    np.testing.assert_array_equal(cg.run(graph, data), data * [2, 3, 4])
    fed = cg.load_onnx(model, initializers_as_inputs=True)
    assert fed.inputs == ["x", "scale"]
    np.testing.assert_array_equal(cg.run(fed, data, np.ones(3, np.float32)), data)


# --- where the mapping lives -----------------------------------------------------------------------------------
def test_each_layer_family_declares_how_its_onnx_ops_are_read():
    """An op's import handler is next to the op (cnngraph/layers/*.py); cnngraph/onnx keeps ONNX's own machinery."""
    from cnngraph.onnx.importer import HANDLERS
    from cnngraph.onnx.mapping import IMPORTERS
    family = {"Conv": "conv", "Gemm": "linear", "Softmax": "activations", "Clip": "activations",
              "BatchNormalization": "normalization", "MaxPool": "pooling", "AveragePool": "pooling", "Add": "structure",
              "Flatten": "structure", "Transpose": "tensor_ops", "Pad": "padding", "Reshape": "tensor_ops"}
    for op_type, module in family.items():
        assert IMPORTERS[op_type].__module__ == f"cnngraph.layers.{module}", op_type
    assert {"Constant", "Shape", "Cast", "Identity", "Dropout"} <= set(HANDLERS) - set(IMPORTERS)


def test_importing_cnngraph_does_not_import_onnx():
    import subprocess
    import sys
    code = "import sys, cnngraph; assert 'cnngraph.layers.conv' in sys.modules; print('onnx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
