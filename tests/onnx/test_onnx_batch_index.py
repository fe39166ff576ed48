"""Index arithmetic on a Range over the symbolic batch (cnngraph/onnx/batch_index.py): the dynamo exporter's
``as_strided`` (Reshape [-1] -> Gather at Range(0, N, 1) * stride + offsets), built by hand, imports with the
batch kept symbolic and computes what onnxruntime computes at two batch sizes; indices whose reach depends on
the batch's value are refused naming the node."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import ort_outputs
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.errors import OnnxImportError
from cnngraph.tolerance import assert_close

C, H, W = 3, 2, 4
SAMPLE = C * H * W


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def as_strided(offsets, out_shape, *, stride=SAMPLE, name="gather", limit_factor=1, delta=1, start=0, extra=()):
    """as_strided(x, (N, *offsets.shape), (stride, ...)) as dynamo writes it: Shape -> Squeeze (sym_size),
    Range(start, limit_factor * N, delta) -> Mul -> Unsqueeze -> Add offsets -> Add 0 -> Gather of x flattened."""
    offsets = np.asarray(offsets, np.int64)
    rank = offsets.ndim
    nodes = [helper.make_node("Shape", ["x"], ["n1"], start=0, end=1),
             helper.make_node("Squeeze", ["n1"], ["n"]),
             helper.make_node("Mul", ["n", "factor"], ["limit"]),
             helper.make_node("Range", ["start", "limit", "delta"], ["iota"], name="range"),
             helper.make_node("Mul", ["iota", "stride"], ["rows"]),
             helper.make_node("Unsqueeze", ["rows", "axes"], ["rows1"]),
             helper.make_node("Add", ["rows1", "offsets"], ["index0"]),
             *extra,
             helper.make_node("Add", ["index0" if not extra else extra[-1].output[0], "nought"], ["index"]),
             helper.make_node("Reshape", ["x", "flat"], ["xflat"]),
             helper.make_node("Gather", ["xflat", "index"], ["y"], axis=0, name=name)]
    inits = [ints("factor", limit_factor), ints("start", start), ints("delta", delta),
             ints("stride", stride // delta if stride % delta == 0 else stride), ints("axes", list(range(1, rank + 1))),
             ints("offsets", offsets.reshape(1, *offsets.shape)), ints("nought", np.zeros((1,) * (rank + 1))),
             ints("flat", [-1])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C, H, W])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    graph = helper.make_graph(nodes, "as_strided", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def check_against_onnxruntime(model, what):
    graph = cg.load_onnx(model)
    assert graph.type_of(graph.outputs[0]).shape[0] == "batch"
    exported = cg.export_onnx(cg.optimize(graph, level=2))
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, C, H, W)).astype(np.float32)
        expected, = ort_outputs(model, x)
        assert_close(cg.run(graph, x), expected, f"{what} at batch {batch}")
        assert_close(ort_outputs(exported, x)[0], expected, f"{what} exported, at batch {batch}")
    return graph


def test_the_whole_sample_in_order_is_a_reshape():
    """ConvNeXt's head: as_strided(x, x.shape, x.stride()) is x: two Reshapes at import, after level 1 only the
    Identity that keeps the output's name."""
    model = as_strided(np.arange(SAMPLE).reshape(C, H, W), ["batch", C, H, W])
    graph = check_against_onnxruntime(model, "identity")
    assert [n.op for n in graph.layers()] == ["Reshape", "Reshape"]
    assert [n.op for n in cg.optimize(graph, level=1).layers()] == ["Identity"]


@given(channel=st.integers(0, C - 1), transposed=st.booleans(), delta=st.sampled_from([1, 2]))
def test_a_selection_within_each_sample_matches_onnxruntime(channel, transposed, delta):
    """x[:, channel] (transposed or not) through as_strided, with the Range counting by 1 or by 2 up to 2N
    (then a Cast and a Sub of 0 on the way): Reshape -> IndexSelect -> Reshape."""
    h, w = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    offsets = channel * H * W + h * W + w
    offsets = offsets.T if transposed else offsets
    extra = [helper.make_node("Cast", ["index0"], ["cast"], to=TensorProto.INT64),
             helper.make_node("Sub", ["cast", "nought"], ["sub"])]
    model = as_strided(offsets, ["batch", *offsets.shape], limit_factor=delta, delta=delta, extra=extra)
    check_against_onnxruntime(model, f"channel {channel}, transposed {transposed}, delta {delta}")


def test_a_range_to_a_static_dim_of_a_shape_holding_the_batch_is_folded():
    """Range(0, x.shape[1], 1): the shape holds the batch (an object array) but the limit is a number."""
    nodes = [helper.make_node("Shape", ["x"], ["c1"], start=1, end=2),
             helper.make_node("Squeeze", ["c1"], ["c"]),
             helper.make_node("Range", ["start", "c", "delta"], ["channels"]),
             helper.make_node("Gather", ["x", "channels"], ["y"], axis=1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C, H, W])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", C, H, W])
    graph = helper.make_graph(nodes, "range", [x], [y], [ints("start", 0), ints("delta", 1)])
    graph = check_against_onnxruntime(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]),
                                      "Range to a static dim")
    assert graph.node("y").attrs["index"] == tuple(range(C))


@pytest.mark.parametrize("kwargs, reason", [
    (dict(offsets=np.arange(SAMPLE // 2), stride=SAMPLE // 2), "depends on the batch"),       # mixes samples
    (dict(offsets=np.arange(SAMPLE) + 1), "reach outside"),                                  # into the next one
    (dict(offsets=np.arange(SAMPLE) - 1), "reach outside"),                                  # wraps to the end
])
def test_indices_that_read_across_samples_are_refused_naming_the_gather(kwargs, reason):
    model = as_strided(out_shape=["batch", None], **kwargs)
    with pytest.raises(OnnxImportError, match=f"'gather' \\([^)]*{reason}"):
        cg.load_onnx(model)


@pytest.mark.parametrize("kwargs", [dict(start=1), dict(limit_factor=-1), dict(limit_factor=3, delta=2)])
def test_a_range_whose_length_is_not_a_multiple_of_the_batch_is_refused_naming_it(kwargs):
    """Range(1, N), Range(0, -N) (empty), Range(0, 3N, 2) (N + N // 2 entries, rounded up)."""
    model = as_strided(np.arange(SAMPLE), ["batch", SAMPLE], **kwargs)
    with pytest.raises(OnnxImportError, match="'range' \\(its length"):
        cg.load_onnx(model)


def test_an_index_counting_the_batch_used_as_a_shape_is_refused():
    model = as_strided(np.arange(SAMPLE), ["batch", SAMPLE])
    model.graph.node[-1].CopyFrom(helper.make_node("Reshape", ["xflat", "index"], ["y"], name="gather"))
    with pytest.raises(OnnxImportError, match="'gather'"):
        cg.load_onnx(model)
