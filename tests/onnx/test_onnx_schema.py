"""What the importer checks node by node (cnngraph/onnx/schema.py, safety.check_node_sizes): the opset range,
input types against each op's type constraints, flags, sizes, axes; and the defects of issue 10 that mutated
real models found (each test here failed before its fix).

A refusal is an OnnxImportError on one line naming the node (or input), what was expected and what was found,
raised before anything of the refused size is allocated.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.errors import OnnxImportError
from cnngraph.onnx.schema import MIN_OPSET, newest_opset
from cnngraph.tolerance import assert_close

try:
    from test_onnx_fuzz import light_prefix, with_random_weights
except ImportError:                      # run from another folder
    from tests.onnx.test_onnx_fuzz import light_prefix, with_random_weights


def value(name, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def model_of(nodes, initializers=(), inputs=None, outputs=None, opset=18):
    """y = nodes(x), x of shape (N, 1, 5, 5) unless ``inputs`` says otherwise; y is declared 4-D."""
    graph = helper.make_graph(nodes, "m", inputs or [value("x", ["N", 1, 5, 5])],
                              outputs or [value("y", ["N", "c", "h", "w"])], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


WEIGHT = tensor("w", np.ones((2, 1, 3, 3), np.float32))


def conv_model(**attrs):
    return model_of([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)], [WEIGHT])


def refused(model, *words) -> str:
    """load_onnx raises OnnxImportError on one line holding every word, and allocates little doing so."""
    tracemalloc.start()
    try:
        with pytest.raises(OnnxImportError) as info:
            cg.load_onnx(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    assert peak < 16 * 2 ** 20, f"the refusal allocated {peak} bytes"
    return message


# --- opsets ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [1, 6, newest_opset() + 1, 99])
def test_opsets_outside_the_supported_range_are_refused(opset):
    """Opsets 1 and 99 were imported, read with the forms of other opsets."""
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="relu")], opset=opset)
    refused(model, f"opset {opset}", f"{MIN_OPSET} to {newest_opset()}")


@pytest.mark.parametrize("opset", [7, 8])
def test_the_oldest_supported_opsets_import_as_onnxruntime_runs_them(opset):
    """Light-zoo prefixes (opset 9: BatchNormalization, grouped Conv, the channel-shuffle Reshapes; LRN) converted
    down by onnx's version converter, with random weights in place of their ConstantOfShape placeholders."""
    rng = np.random.default_rng(opset)
    for name, output, size in (("shufflenet", "r9", 224), ("inception_v1", "r8", 32)):
        model = version_converter.convert_version(with_random_weights(light_prefix(name, output, size), rng), opset)
        graph = cg.load_onnx(model)
        x = rng.standard_normal(graph.type_of(graph.inputs[0]).shape).astype(np.float32)
        expected = make_session(model).run(None, {graph.inputs[0]: x})[0]
        assert_close(cg.run(graph, x), expected, f"{name} at opset {opset}")


# --- types -----------------------------------------------------------------------------------------------------
def test_a_float_initializer_relabelled_int32_is_refused():
    """Its bytes were read as integers: a bias of about ±1e9."""
    bias = tensor("b", np.array([0.5, -0.25], np.float32))
    bias.data_type = TensorProto.INT32                           # same four bytes per value, another type
    model = model_of([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")], [WEIGHT, bias])
    refused(model, "node 'conv' (Conv)", "input 2 ('b') is int32", "float")


def test_inputs_sharing_a_type_variable_must_agree():
    model = model_of([helper.make_node("Range", ["a", "b", "c"], ["r"], name="range"),
                      helper.make_node("Cast", ["r"], ["rf"], name="cast", to=TensorProto.FLOAT),
                      helper.make_node("Add", ["x", "rf"], ["y"], name="add")],
                     [tensor("a", np.int64(0)), tensor("b", np.float32(5)), tensor("c", np.int64(1))],
                     inputs=[value("x", ["N", 5])], outputs=[value("y", ["N", 5])])
    refused(model, "node 'range' (Range)", "input 1 ('b') is float but input 0 ('a') is int64")


def test_a_shape_is_int64_never_float32():
    """Shape gave a float32 constant where ONNX says int64: as a graph output and as an Add operand."""
    shape = helper.make_node("Shape", ["x"], ["s"], name="shape")
    as_output = model_of([shape], outputs=[value("s", [4], TensorProto.INT64)])
    refused(as_output, "graph output 's'", "int64")
    added = model_of([shape, helper.make_node("Add", ["x", "s"], ["y"], name="add")], inputs=[value("x", [4, 2])],
                     outputs=[value("y", [4, 2])])
    refused(added, "node 'add' (Add)", "input 1 ('s') is int64 but input 0 ('x') is float")
    cast = helper.make_node("Cast", ["s"], ["f"], name="cast", to=TensorProto.FLOAT)    # the valid form imports
    graph = cg.load_onnx(model_of([shape, cast, helper.make_node("Add", ["x", "f"], ["y"], name="add")],
                                  inputs=[value("x", [4, 2])], outputs=[value("y", [4, 2])]))
    assert np.array_equal(cg.run(graph, np.zeros((4, 2), np.float32)), np.full((4, 2), [4, 2], np.float32))


# --- sizes -----------------------------------------------------------------------------------------------------
def test_a_static_batch_of_zero_is_refused():
    """It reached NumPy's reshape (ValueError) or a wrapped ZeroDivisionError."""
    model = conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    refused(model, "graph input 'x'", "[0, 1, 5, 5]", "dimension of 0")


def test_an_empty_constant_in_the_graph_is_refused():
    empty = tensor("e", np.zeros((2, 0), np.float32))
    model = model_of([helper.make_node("Concat", ["x", "e"], ["y"], name="concat", axis=1)], [empty],
                     inputs=[value("x", [2, 4])], outputs=[value("y", [2, 4])])
    refused(model, "node 'concat' (Concat)", "[2, 0]", "dimension of 0")


@pytest.mark.parametrize("attrs,words", [
    (dict(pads=[2 ** 31] * 4), ["pads", "2147483648", "2**28"]),
    (dict(pads=[2 ** 27, 0, 2 ** 27, 0], strides=[2 ** 27, 1]), ["padded input", "elements per sample"]),
    (dict(kernel_shape=[3, 3], pads=[0, 0, 2 ** 14, 2 ** 14]), ["its output", "elements per sample"]),
])
def test_huge_pads_are_refused_before_anything_is_allocated(attrs, words):
    """Pads of 2**31 imported and then tried to allocate 39 TiB; padding under the attribute cap still makes
    a padded copy (or an output) too large for any plan."""
    model = conv_model(**attrs)
    model.graph.initializer[0].CopyFrom(tensor("w", np.ones((64, 1, 3, 3), np.float32)))
    refused(model, "node 'conv' (Conv)", *words)


def test_a_stride_of_zero_is_refused_before_dividing():
    """A pooling stride of 0 raised ZeroDivisionError in the ceil_mode arithmetic."""
    model = model_of([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[0, 1])])
    refused(model, "node 'pool' (MaxPool)", "strides = [0, 1]", "at least 1")


# --- flags, attributes, axes -----------------------------------------------------------------------------------
def gemm_model(b, **attrs):
    return model_of([helper.make_node("Gemm", ["x", "b"], ["y"], name="gemm", **attrs)], [tensor("b", b)],
                    inputs=[value("x", ["N", 4])], outputs=[value("y", ["N", 3])])


def test_a_gemm_whose_weight_is_not_a_matrix_is_refused():
    """A Gemm whose weight lost a dimension raised IndexError."""
    refused(gemm_model(np.ones(4, np.float32)), "node 'gemm' (Gemm)", "B ('b') has shape [4]", "matrix")
    missing = gemm_model(np.ones((3, 4), np.float32))
    del missing.graph.node[0].input[1]
    refused(missing, "Node(gemm)", "input size 1")


def test_a_flag_must_be_zero_or_one():
    """transB = 2**62 is true for Python, false for onnxruntime (a 32-bit cast): neither is guessed."""
    refused(gemm_model(np.ones((3, 4), np.float32), transB=2 ** 62), "'gemm'", "transB = 4611686018427387904",
            "0 or 1")


def test_an_infinite_gemm_alpha_is_refused():
    """Folding alpha into the weight is exact for finite alpha only: inf gave nan where onnxruntime gives inf."""
    refused(gemm_model(np.ones((3, 4), np.float32), alpha=float("inf")), "'gemm'", "alpha = inf", "finite")


def test_non_finite_coefficients_are_refused_values_are_not():
    """LRN with beta = inf computes 1**inf or (1 + 1e-9)**inf depending on rounding: no answer is right."""
    lrn = model_of([helper.make_node("LRN", ["x"], ["y"], name="lrn", size=3, beta=float("inf"))])
    refused(lrn, "node 'lrn' (LRN)", "beta = inf", "finite")
    clip = model_of([helper.make_node("Clip", ["x"], ["y"], name="clip", min=0.0, max=float("inf"))], opset=10)
    assert cg.load_onnx(clip).node("y").op == "ReLU"


def test_auto_pad_with_explicit_pads_is_refused():
    refused(conv_model(auto_pad="VALID", pads=[1, 1, 1, 1]), "'conv'", "auto_pad VALID and explicit pads")
    refused(conv_model(auto_pad="MIDDLE"), "'conv'", "auto_pad = 'MIDDLE'")


def test_an_axis_out_of_range_is_refused_not_wrapped():
    """Gather's axis -2**31 was wrapped by NumPy into range and folded."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i"], ["n"], name="gather", axis=-2 ** 31),
             helper.make_node("Reshape", ["x", "n"], ["y"], name="reshape")]
    refused(model_of(nodes, [tensor("i", np.array([1], np.int64))]), "node 'gather' (Gather)", "-2147483648",
            "out of range")
    unsqueeze = [helper.make_node("Unsqueeze", ["x", "a"], ["y"], name="unsqueeze")]
    refused(model_of(unsqueeze, [tensor("a", np.array([7], np.int64))]), "'unsqueeze'", "axis 7 is out of range")


def test_a_range_on_a_symbolic_dimension_is_refused_in_words():
    """The refusal printed Python's raw TypeError ("unsupported operand type(s) for -: 'str' and 'int'"). A Range
    over the batch is now held as an index counting the batch (cnngraph/onnx/batch_index.py); this one is cast
    to float and added to the data, which depends on the batch's value: refused in words at the Cast."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Range", ["start", "n", "one"], ["r"], name="range"),
             helper.make_node("Cast", ["r"], ["f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "f"], ["y"], name="add")]
    constants = [tensor("zero", np.int64(0)), tensor("start", np.int64(0)), tensor("one", np.int64(1))]
    message = refused(model_of(nodes, constants, inputs=[value("x", ["N", 4])], outputs=[value("y", ["N", 4])]),
                      "Cast at 'cast'",
                      "counting the batch")
    assert "operand" not in message and "str" not in message


# --- max pooling over padding only ----------------------------------------------------------------------------
def test_a_max_pool_window_entirely_in_the_padding_matches_onnxruntime():
    """Dilation 3 with one cell of padding: the only window reads positions -1 and 2 of a 2×2 input. It gave
    -inf; onnxruntime gives the lowest float32."""
    model = model_of([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                                       dilations=[3, 3])], inputs=[value("x", ["N", 2, 2, 2])],
                     outputs=[value("y", ["N", 2, 1, 1])])
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32)
    expected = make_session(model).run(None, {"x": x})[0]
    assert np.all(expected == np.finfo(np.float32).min)
    assert np.array_equal(cg.run(cg.load_onnx(model), x), expected)


def test_the_checks_pass_every_model_our_exporter_writes():
    for name in ("lenet5", "resnet18", "mobilenet_v2", "squeezenet1_1"):
        graph = cg.models.MODELS[name]()
        assert len(cg.load_onnx(cg.export_onnx(graph)).layers()) == len(graph.layers())


def test_the_refusals_keep_no_half_read_model():
    """A refusal leaves the caller's ModelProto untouched (the importer reads a copy)."""
    model = conv_model(pads=[2 ** 31] * 4)
    before = model.SerializeToString()
    refused(model, "pads")
    assert model.SerializeToString() == before
    assert isinstance(onnx.ModelProto.FromString(before), onnx.ModelProto)
