"""The slicing and repeating families (cnngraph/layers/slicing.py, repeat.py): Slice over drawn
starts/ends/axes/steps, IndexSelect, Expand, Tile and PyTorch's split/chunk, against the naive reference
(tests/reference.py) and onnxruntime; ONNX Split, Gather, Expand and Tile as PyTorch's exporters write them;
the passes on them."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import as_tuple, examples, ort_outputs, randn
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from reference import reference_run

import cnngraph as cg
from cnngraph.errors import OnnxImportError, ShapeError
from cnngraph.layers.slicing import INT64_MAX, chunk, split
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
BOUND = st.one_of(st.integers(-7, 7), st.sampled_from([INT64_MAX, -INT64_MAX - 1]))


def one_layer(layer, shape):
    graph = cg.Graph("g")
    graph.output(graph.apply(layer, graph.input("x", shape)))
    return graph


def check(graph, opset=None, batch=2, seed=0):
    """NumPy backend == naive reference (and == onnxruntime on the export at ``opset``)."""
    rng = np.random.default_rng(seed)
    x = randn(rng, [batch if isinstance(d, str) else d for d in graph.type_of("x").shape])
    got = as_tuple(cg.run(graph, x))
    for name, a, r in zip(graph.outputs, got, as_tuple(reference_run(graph, x))):
        assert_close(a, r, f"{name} vs the reference")
    if opset is not None:
        for name, a, o in zip(graph.outputs, got, ort_outputs(cg.export_onnx(graph, opset=opset), x)):
            assert_close(a, o, f"{name} vs onnxruntime at opset {opset}")
    return got


@st.composite
def slices(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    axes = draw(st.lists(st.integers(1, len(shape)), min_size=1, max_size=len(shape), unique=True))
    axes = [a if draw(st.booleans()) else a - len(shape) - 1 for a in axes]      # positive or negative
    starts = [draw(BOUND) for _ in axes]
    ends = [draw(BOUND) for _ in axes]
    steps = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in axes]
    return (None, *shape), starts, ends, axes, steps


@examples(60)
@given(slices(), st.sampled_from([13, 18, NEWEST]))
def test_slice_matches_reference_and_onnxruntime(case, opset):
    shape, starts, ends, axes, steps = case
    graph = one_layer(cg.Slice(starts, ends, axes, steps), shape)
    expected_shape = np.zeros([2, *shape[1:]])[(slice(None),) * 0 + tuple(
        next((slice(s, e, t) for s, e, a, t in zip(starts, ends, axes, steps) if a % len(shape) == i), slice(None))
        for i in range(len(shape)))].shape
    assert graph.type_of(graph.outputs[0]).shape[1:] == expected_shape[1:]
    if 0 in expected_shape:
        return                                       # an empty tensor: inferred, not computed
    check(graph, opset)


def test_slice_of_the_symbolic_batch():
    assert one_layer(cg.Slice([0], [INT64_MAX], [0]), (None, 3)).type_of("x") .shape == ("N", 3)
    with pytest.raises(ShapeError, match="symbolic axis 0"):
        one_layer(cg.Slice([0], [1], [0]), (None, 3))
    with pytest.raises(ValueError, match="not be 0"):
        cg.Slice([0], [1], [1], [0])


@examples(40)
@given(st.integers(1, 3), st.one_of(st.integers(-3, 2), st.lists(st.integers(-3, 2), min_size=1, max_size=4)))
def test_index_select(dim, index):
    graph = one_layer(cg.IndexSelect(dim, index), (None, 3, 4, 3))
    removed = not isinstance(index, list)
    assert len(graph.type_of(graph.outputs[0]).shape) == 3 if removed else 4
    check(graph, 18)


def test_index_select_out_of_range():
    with pytest.raises(ShapeError, match="out of range"):
        one_layer(cg.IndexSelect(1, 3), (None, 3))


@examples(30)
@given(st.lists(st.sampled_from([1, 3]), min_size=3, max_size=3), st.integers(0, 2))
def test_expand_and_tile(spread, lead):
    shape = (None, *(1 if s == 3 else 2 for s in spread))
    target = ("N", *[s if s == 3 else 1 for s in spread])
    graph = one_layer(cg.Expand((1,) * lead + target), shape)
    assert graph.type_of(graph.outputs[0]).shape[lead] == "N"
    check(graph, 13)
    tiled = one_layer(cg.Tile(spread), shape)
    assert tiled.type_of(tiled.outputs[0]).shape[0] == "N"
    check(tiled, 17)


def test_split_and_chunk_follow_pytorch_and_export_as_one_split():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 7, 3))
    pieces = chunk(graph, x, 3, dim=1)                             # torch.chunk: 3, 3, 1
    assert [graph.type_of(p).shape[1] for p in pieces] == [3, 3, 1]
    assert [graph.type_of(p).shape[1] for p in split(graph, x, [2, 5], dim=1)] == [2, 5]
    assert [graph.type_of(p).shape[2] for p in split(graph, x, 2, dim=-1)] == [2, 1]
    with pytest.raises(ShapeError, match="do not add up"):
        split(graph, x, [2, 2], dim=1)
    graph = cg.Graph("g")
    graph.output(*chunk(graph, graph.input("x", (None, 7, 3)), 3, dim=1))
    for opset in (13, NEWEST):
        model = cg.export_onnx(graph, opset=opset)
        assert [n.op_type for n in model.graph.node] == ["Split"]
        check(graph, opset)
        back = cg.load_onnx(model)
        assert [n.op for n in back.layers()] == ["Slice"] * 3


def test_overlapping_slices_export_as_slices_and_pieces_with_gaps_as_one_split():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 4))
    graph.output(graph.apply(cg.Slice([0], [3], [1]), x), graph.apply(cg.Slice([2], [4], [1]), x))
    assert [n.op_type for n in cg.export_onnx(graph).graph.node] == ["Slice", "Slice"]
    graph = cg.Graph("g")
    x = graph.input("x", (None, 9, 2))
    graph.output(graph.apply(cg.Slice([-2], [INT64_MAX], [1]), x), graph.apply(cg.Slice([1], [3], [-2]), x))
    model = cg.export_onnx(graph, opset=13)
    assert [n.op_type for n in model.graph.node] == ["Split"] and len(model.graph.node[0].output) == 4
    check(graph, 13)


# --- ONNX import: the forms exporters write ----------------------------------------------------------------------
def model_of(nodes, opset, initializers=(), shape=("N", 6, 4), outputs=("y",)):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * len(shape)) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def matches_onnxruntime(model, batch=3):
    graph = cg.load_onnx(model)
    x = randn(np.random.default_rng(1), [batch, *[d for d in graph.type_of("x").shape[1:]]])
    for a, b in zip(as_tuple(cg.run(graph, x)), ort_outputs(model, x)):
        assert_close(a, b, "vs onnxruntime")
    return graph


@pytest.mark.parametrize("form", ["attribute11", "input13", "equal13", "num_outputs18_uneven"])
def test_split_imports_as_slices(form):
    outputs = ("a", "b", "c")
    if form == "attribute11":
        nodes, init, opset = [helper.make_node("Split", ["x"], outputs, axis=1, split=[1, 2, 3])], [], 11
    elif form == "input13":
        nodes, init, opset = [helper.make_node("Split", ["x", "s"], outputs, axis=-2)], [("s", np.int64([3, 2, 1]))], 13
    elif form == "equal13":
        nodes, init, opset = [helper.make_node("Split", ["x"], outputs, axis=1)], [], 13
    else:
        nodes, init, opset = [helper.make_node("Split", ["x"], outputs, axis=2, num_outputs=3)], [], 18
        model = model_of(nodes, opset, init, shape=("N", 6, 5), outputs=outputs)
        graph = matches_onnxruntime(model)
        assert [graph.type_of(o).shape[2] for o in outputs] == [2, 2, 1]
        return
    graph = matches_onnxruntime(model_of(nodes, opset, init, outputs=outputs))
    assert {n.op for n in graph.layers()} == {"Slice"} and list(graph.outputs) == list(outputs)


def test_slice_gather_expand_tile_import_with_a_dynamic_batch():
    """ReXNet's x[:, :C] written as Slice with constant inputs, a Gather of one channel, an Expand whose target
    comes from Shape (the batch stays symbolic), a Tile; then the constant-folded Slice of opset 9."""
    i64 = np.int64
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "s2", "s3"], ["sl"]),
        helper.make_node("Gather", ["sl", "g"], ["ga"], axis=1),                   # (N, 4): channel 2 removed
        helper.make_node("Unsqueeze", ["ga", "u"], ["un"]),                         # (N, 1, 4)
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Expand", ["un", "shape"], ["ex"]),                        # (N, 6, 4)
        helper.make_node("Tile", ["ex", "r"], ["y"]),                               # (N, 6, 8)
    ]
    init = [("s0", i64([4, 0])), ("s1", i64([-INT64_MAX, INT64_MAX])), ("s2", i64([1, 2])), ("s3", i64([-1, 1])),
            ("g", i64(2)), ("u", i64([1])), ("r", i64([1, 1, 2]))]
    graph = matches_onnxruntime(model_of(nodes, 13, init))
    assert graph.type_of("y").shape == ("N", 6, 8)
    assert {"Slice", "IndexSelect", "Expand", "Tile"} <= {n.op for n in graph.layers()}


def test_slice_with_attributes_before_opset_10():
    nodes = [helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[INT64_MAX, -1], axes=[1, 2])]
    graph = matches_onnxruntime(model_of(nodes, 9))
    assert graph.node("y").attrs["steps"] == (1, 1) and graph.type_of("y").shape == ("N", 5, 2)


def test_unsupported_forms_are_refused_by_name():
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)]
    with pytest.raises(OnnxImportError, match=r"Gather at 'y' \(indices of rank 2"):
        cg.load_onnx(model_of(nodes, 13, [("i", np.int64([[0, 1]]))], shape=("N", 6, 4)))
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=4)]
    with pytest.raises(OnnxImportError, match="num_outputs 4 but 2 outputs"):
        cg.load_onnx(model_of(nodes, 18, outputs=("a", "b")))
    nodes = [helper.make_node("Split", ["x", "s"], ["a", "b"], axis=1)]
    with pytest.raises(OnnxImportError, match="do not cut axis 1"):
        cg.load_onnx(model_of(nodes, 13, [("s", np.int64([2, 3]))], outputs=("a", "b")))


# --- passes -----------------------------------------------------------------------------------------------------
def test_passes_fold_and_merge_slices():
    """A Slice of a constant folds; two equal Slices merge (CSE); an unread one is dead code."""
    graph = cg.Graph("g")
    x = graph.input("x", (None, 4))
    const = graph.apply(cg.Constant(np.arange(8, dtype=np.float32).reshape(2, 4)))
    folded = graph.apply(cg.Slice([1], [2], [0]), const)
    a, b = graph.apply(cg.Slice([0], [2], [1]), x), graph.apply(cg.Slice([0], [2], [1]), x)
    graph.apply(cg.Slice([2], [4], [1]), x)                                     # read by no one
    first = graph.apply(cg.Add(broadcast=True), a, graph.apply(cg.Slice([0], [2], [1]), folded))
    graph.output(graph.apply(cg.Add(), first, b))
    optimized = cg.optimize(graph, level=1)
    assert [n.op for n in optimized.layers()].count("Slice") == 1
    arrays = [randn(np.random.default_rng(0), (3, 4))]
    assert_close(cg.run(optimized, *arrays), cg.run(graph, *arrays), "optimized")


def modern_blocks() -> cg.Graph:
    """ShuffleNetV2's chunk(2, dim=1) with one half convolved, GhostNet's out[:, :C], a ReXNet-style residual
    onto the first channels, an FCN-style bilinear upsampling."""
    cg.manual_seed(0)
    graph = cg.Graph("blocks")
    x = graph.input("x", (None, 4, 6, 6))
    y = graph.apply(cg.ReLU(), graph.apply(cg.Conv2d(4, 8, 3, padding=1), x))
    kept, branch = chunk(graph, y, 2, dim=1)
    branch = graph.apply(cg.ReLU(), graph.apply(cg.Conv2d(4, 4, 1), branch))
    y = graph.apply(cg.Concat(1), kept, branch)
    ghost = graph.apply(cg.Slice([0], [6], [1]), y)
    wide = graph.apply(cg.Conv2d(8, 10, 1), y)
    y = graph.apply(cg.Add(), graph.apply(cg.Slice([0], [6], [1]), wide), ghost)
    graph.output(graph.apply(cg.Upsample(scale_factor=2, mode="bilinear"), y))
    return graph


@pytest.mark.parametrize("level", [1, 2, 3])
def test_modern_blocks_optimize_and_export(level):
    graph = modern_blocks()
    optimized = cg.optimize(graph, level=level, verify=True)
    optimized.lint()
    x = randn(np.random.default_rng(3), (2, 4, 6, 6))
    expected = cg.run(graph, x)
    assert_close(reference_run(graph, x), expected, "reference")
    assert_close(cg.run(optimized, x), expected, f"level {level}")
    model = cg.export_onnx(optimized, opset=13)
    assert [n.op_type for n in model.graph.node].count("Split") == 1
    assert_close(ort_outputs(model, x)[0], expected, "onnxruntime")
