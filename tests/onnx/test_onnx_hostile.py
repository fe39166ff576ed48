"""Malformed and hostile ONNX models: each is refused with a cnngraph error naming the problem (node, value,
path), fast and without a large allocation, never a crash deep inside, a hang or a huge array.

The checks of cnngraph/onnx/safety.py and external.py are tested directly; the same models also go end to end through
cg.load_onnx, which calls them before reading data, before onnx.checker and before every fold.

Every test runs under a memory watch (autouse fixture below), so a check that regresses into a big
allocation fails. There is no timer (an alarm fails under load): the cases that used to hang are refused by
construction, and their tests count the work instead — nothing opens a pipe the model names, nothing
evaluates a constant loop.
"""
from __future__ import annotations

import builtins
import os
import resource
import stat
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.errors import CnnGraphError, OnnxImportError
from cnngraph.onnx import importer as onnx_importer
from cnngraph.onnx import safety as onnx_safety
from cnngraph.onnx.external import load_external_data
from cnngraph.onnx.fold import FoldError, fold
from cnngraph.onnx.safety import check_elements, check_fold, check_model_file, check_structure

MEMORY_LIMIT = 64 * 2 ** 20          # bytes a test may allocate through Python/numpy (tracemalloc)
RSS_LIMIT = 256 * 2 ** 20            # growth of the process's peak resident size, for C-level allocations


@pytest.fixture(autouse=True)
def small():
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"the test allocated {peak} bytes"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < RSS_LIMIT, f"the process's resident peak grew by {grown} bytes"


# --- building models -------------------------------------------------------------------------------------------
def value(name, dims=(1, 4), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(dims))


def model_of(nodes, initializers=(), inputs=None, outputs=None, opset=18):
    graph = helper.make_graph(nodes, "hostile", [value("x")] if inputs is None else inputs,
                              [value("y")] if outputs is None else outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def add_model(*initializers, reads="w"):
    """y = x + <reads>: the smallest model computing with an initializer."""
    return model_of([helper.make_node("Add", ["x", reads], ["y"], name="add")], initializers)


def weight(name="w", array=None):
    return numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4) if array is None else array, name)


def bare_tensor(name, dims, dtype=TensorProto.FLOAT):
    """A tensor declaring ``dims`` and holding no data yet (never built as an array)."""
    tensor = TensorProto()
    tensor.name, tensor.data_type = name, dtype
    tensor.dims.extend(dims)
    return tensor


def external(name, dims, location, offset=None, length=None, dtype=TensorProto.FLOAT):
    tensor = bare_tensor(name, dims, dtype)
    tensor.data_location = TensorProto.EXTERNAL
    for key, text in (("location", location), ("offset", offset), ("length", length)):
        if text is not None:
            tensor.external_data.add(key=key, value=str(text))
    return tensor


def refused(call, *words, error=OnnxImportError) -> str:
    """Run ``call``, expect ``error`` on one line containing every word; return the message."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def check(model):
    return lambda: check_structure(model, "m.onnx")


def load(source):
    return lambda: cg.load_onnx(source)


W = np.arange(4, dtype=np.float32).reshape(1, 4)


@pytest.fixture
def folder(tmp_path):
    """The model's folder with a 16-byte weights.bin; tmp_path/secret.bin lies outside it."""
    inside = tmp_path / "model"
    inside.mkdir()
    (inside / "weights.bin").write_bytes(W.tobytes())
    (tmp_path / "secret.bin").write_bytes(b"top secret 16 b.")
    return inside


def save(model, folder, name="m.onnx"):
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


# --- a valid model passes every check --------------------------------------------------------------------------
def test_a_valid_model_passes_every_check():
    model = add_model(weight())
    check_structure(model, "m.onnx")
    assert load_external_data(model, None, "m.onnx") == 0
    assert cg.run(cg.load_onnx(model), np.ones((1, 4), np.float32)).tolist() == [[1, 2, 3, 4]]


def test_exported_models_pass_the_structure_checks():
    for name in ("lenet5", "squeezenet1_1"):
        check_structure(cg.export_onnx(cg.models.MODELS[name]()), name)


# --- not ONNX, truncated, not a file ---------------------------------------------------------------------------
def lenet_bytes() -> bytes:
    return cg.export_onnx(cg.models.MODELS["lenet5"]()).SerializeToString()


@pytest.mark.parametrize("cut", [1, 0.5, -1])
def test_truncated_file_is_refused(tmp_path, cut):
    data = lenet_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * cut) if isinstance(cut, float) else cut])
    message = refused(load(path), str(path))
    assert "not an ONNX model" in message or "not a valid ONNX model" in message


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"hello, world\n", bytes(range(256)) * 4,
                                     b"\xff" * 64])
def test_a_file_that_is_not_onnx_is_refused(tmp_path, content):
    path = tmp_path / "not.onnx"
    path.write_bytes(content)
    refused(load(path), str(path), "ONNX model")


def test_bytes_that_are_not_onnx_are_refused():
    refused(load(b"\x08\x07\x12\x04junk" * 3), "<bytes>")


def test_a_directory_is_refused(tmp_path):
    refused(load(tmp_path), str(tmp_path))
    refused(lambda: check_model_file(tmp_path), str(tmp_path), "not a regular file")


def test_a_pipe_is_refused_without_blocking(tmp_path):
    pipe = tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    refused(lambda: check_model_file(pipe), "pipe.onnx", "not a regular file")


@pytest.fixture
def opened(monkeypatch):
    """(path, mode or flags) of every file the importer opens while the test runs. Opening a pipe without
    O_NONBLOCK would wait for a writer for ever: the spy fails the test at that point instead of opening."""
    seen = []
    real_os_open = os.open

    def blocking_pipe(path, nonblocking: bool) -> bool:
        return not nonblocking and os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode)

    def spy_open(file, mode="r", *args, **kwargs):
        seen.append((os.fspath(file), mode))
        assert not blocking_pipe(file, False), f"open() of the pipe {file} would block"
        return builtins.open(file, mode, *args, **kwargs)

    def spy_os_open(path, flags, *args, **kwargs):
        seen.append((os.fspath(path), flags))
        assert not blocking_pipe(path, flags & os.O_NONBLOCK), f"os.open() of the pipe {path} would block"
        return real_os_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(onnx_importer, "open", spy_open, raising=False)
    monkeypatch.setattr(os, "open", spy_os_open)
    return seen


def test_a_pipe_is_refused_end_to_end(tmp_path, opened):
    """open() on a FIFO blocks until a writer comes; the importer looks at the path first and never opens it."""
    pipe = tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    refused(load(pipe), "not a regular file")
    assert not [path for path, _ in opened if path == str(pipe)]
    cg.load_onnx(save(add_model(weight()), tmp_path))               # a regular file is opened, and seen
    assert [path for path, _ in opened if path.endswith(".onnx")]


def test_a_file_larger_than_protobuf_allows_is_refused_unread(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as handle:      # sparse: no disk used, and never read
        handle.truncate(3 * 2 ** 30)
    refused(lambda: check_model_file(path), "huge.onnx", "2 GiB")
    check_model_file(save(add_model(weight()), tmp_path))


def test_a_missing_file_is_refused(tmp_path):
    refused(lambda: check_model_file(tmp_path / "gone.onnx"), "gone.onnx", "cannot read")


# --- graph structure: dangling inputs, cycles, order -----------------------------------------------------------
def dangling_model():
    return model_of([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")])


def cycle_model():
    return model_of([helper.make_node("Add", ["x", "b"], ["a"], name="first"),
                     helper.make_node("Relu", ["a"], ["b"], name="second"),
                     helper.make_node("Identity", ["a"], ["y"], name="last")])


def test_dangling_input_names_the_node_and_the_value():
    refused(check(dangling_model()), "node 'add' (Add)", "'ghost'", "no node, graph input or initializer")


def test_dangling_input_end_to_end():
    refused(load(dangling_model()), "'add'", "'ghost'")


def test_a_cycle_is_named_node_by_node():
    message = refused(check(cycle_model()), "cycle")
    assert ("node 'first' (Add) -> node 'second' (Relu) -> node 'first' (Add)" in message
            or "node 'second' (Relu) -> node 'first' (Add) -> node 'second' (Relu)" in message), message
    assert "'last'" not in message


def test_a_node_reading_its_own_output_is_a_cycle():
    model = model_of([helper.make_node("Add", ["x", "y"], ["y"], name="loop")])
    refused(check(model), "cycle", "node 'loop' (Add) -> node 'loop' (Add)")


def test_a_long_chain_in_a_cycle_does_not_recurse():
    n = 5000                              # deeper than Python's recursion limit
    nodes = [helper.make_node("Relu", [f"v{i - 1}" if i else f"v{n - 1}"], [f"v{i}"], name=f"r{i}") for i in range(n)]
    nodes.append(helper.make_node("Add", ["x", "v0"], ["y"], name="out"))
    refused(check(model_of(nodes)), "cycle", "node 'r0' (Relu)")


def test_a_cycle_end_to_end():
    refused(load(cycle_model()), "cycle", "'first'", "'second'")


def test_acyclic_nodes_out_of_order_are_refused_clearly():
    """Not sorted for us: the spec requires sorted nodes and onnx.checker refuses them anyway (with the same
    words it uses for a cycle); our message says which node comes too late."""
    model = model_of([helper.make_node("Relu", ["a"], ["y"], name="second"),
                      helper.make_node("Relu", ["x"], ["a"], name="first")])
    message = refused(check(model), "not in topological order", "node 'second' (Relu) reads 'a'",
                      "node 'first' (Relu) computes after it")
    assert "cycle" not in message
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)


def test_a_value_computed_twice_is_refused():
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="one"),
                      helper.make_node("Neg", ["x"], ["y"], name="two")])
    refused(check(model), "'y' is computed twice", "node 'one' (Relu)", "node 'two' (Neg)")
    model = model_of([helper.make_node("Relu", ["x"], ["x"], name="again"),
                      helper.make_node("Relu", ["x"], ["y"], name="r")])
    refused(check(model), "'x' is computed twice", "by a graph input or initializer and by node 'again' (Relu)")


def test_a_graph_output_nobody_computes_is_refused():
    model = model_of([helper.make_node("Relu", ["x"], ["a"], name="r")])
    refused(check(model), "graph output 'y'")


# --- tensors: dims against data, and the element cap -----------------------------------------------------------
def test_an_initializer_declaring_a_huge_shape_and_no_data_is_refused_unbuilt():
    model = add_model(bare_tensor("w", [100000, 100000, 100000]))
    refused(check(model), "initializer 'w'", "1000000000000000 elements", "2**28")


def test_a_huge_initializer_end_to_end():
    """Refused today by onnx.checker (no data at all), named by the tensor; after wiring by our cap."""
    refused(load(add_model(bare_tensor("w", [100000, 100000, 100000]))), "w")


def huge_raw():
    tensor = bare_tensor("w", [100000, 100000])
    tensor.raw_data = b"\0" * 16
    return tensor


def few_values():
    tensor = bare_tensor("w", [2, 2])
    tensor.float_data.extend([1, 2, 3])
    return tensor


def many_values():
    tensor = bare_tensor("w", [2, 2])
    tensor.float_data.extend([1, 2, 3, 4, 5])
    return tensor


def long_raw():
    tensor = bare_tensor("w", [1, 4])
    tensor.raw_data = b"\0" * 20
    return tensor


def short_int64():
    tensor = bare_tensor("w", [1, 4], TensorProto.INT64)
    tensor.int64_data.extend([1])
    return tensor


def no_data():
    return bare_tensor("w", [1, 4])


@pytest.mark.parametrize("make,words", [
    (huge_raw, ["10000000000 elements"]),
    (few_values, ["dims [2, 2] need 4 values but float_data holds 3"]),
    (many_values, ["dims [2, 2] need 4 values but float_data holds 5"]),
    (long_raw, ["need 16 bytes but raw_data holds 20"]),
    (short_int64, ["need 4 values but int64_data holds 1"]),
    (no_data, ["need 4 values but float_data holds 0"]),
])
def test_an_initializer_whose_data_disagrees_with_its_dims_is_refused(make, words):
    refused(check(add_model(make())), "initializer 'w'", *words)


def test_more_data_than_dims_end_to_end_is_not_a_crash():
    """onnx.checker only checks "too small"; today numpy_helper.to_array fails on reshape (a bare ValueError)."""
    refused(load(add_model(many_values())), "'w'", "float_data holds 5")


def test_a_negative_dim_is_refused():
    tensor = bare_tensor("w", [-1, 4])
    tensor.raw_data = b"\0" * 16
    refused(check(add_model(tensor)), "initializer 'w'", "negative dimension")


def test_a_segmented_tensor_is_refused():
    tensor = weight()
    tensor.segment.begin, tensor.segment.end = 0, 2
    refused(check(add_model(tensor)), "initializer 'w'", "segmented")


def test_the_cap_applies_to_initializers_with_their_data(monkeypatch):
    monkeypatch.setattr(onnx_safety, "MAX_ELEMENTS", 1000)
    big = weight("w", np.zeros((1, 2000), np.float32))
    refused(check(add_model(big)), "initializer 'w'", "2000 elements", "1000")
    check_structure(add_model(weight("w", np.zeros((1, 1000), np.float32))), "m.onnx")


def test_a_constant_node_declaring_a_huge_value_is_refused():
    model = model_of([helper.make_node("Constant", [], ["w"], name="const", value=huge_raw()),
                      helper.make_node("Add", ["x", "w"], ["y"], name="add")])
    refused(check(model), "node 'const' (Constant) attribute 'value'", "10000000000 elements")


def test_a_constant_of_shape_fill_is_checked_too():
    fill = bare_tensor("fill", [3])       # a ConstantOfShape value must hold one element; this holds none
    model = model_of([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos", value=fill),
                      helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                     [numpy_helper.from_array(np.array([1, 4], np.int64), "s")])
    refused(check(model), "node 'cos' (ConstantOfShape) attribute 'value'", "float_data holds 0")


def test_a_sparse_initializer_is_refused():
    model = add_model(weight())
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0], np.float32), "s"), numpy_helper.from_array(np.array([0]), "si"), [4]))
    refused(check(model), "sparse initializers", "'s'")


# --- sizes chosen by the model: check_elements, ConstantOfShape, graph inputs ----------------------------------
def test_check_elements_counts_refuses_and_names():
    assert check_elements([2, "N", 3], "x") == 6
    assert check_elements([], "x") == 1
    assert check_elements([0, 10 ** 12], "x") == 0
    refused(lambda: check_elements([10 ** 6, 10 ** 6], "m.onnx: node 'x' (ConstantOfShape) output"),
            "m.onnx: node 'x' (ConstantOfShape) output: 1000000000000 elements", "more than the 2**28 cnngraph allows")
    refused(lambda: check_elements([3, -2], "here"), "here: negative dimension")


def constant_of_shape_model(shape):
    return model_of([helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos"),
                     helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                    [numpy_helper.from_array(np.array(shape, np.int64), "s")])


def test_a_huge_constant_of_shape_is_refused_before_it_is_built():
    node = constant_of_shape_model([10 ** 6, 10 ** 6]).graph.node[0]
    with pytest.raises(FoldError, match="'c' would have 1000000000000 elements"):
        check_fold(node, [np.array([10 ** 6, 10 ** 6])], 18)


def test_a_huge_constant_of_shape_end_to_end():
    refused(load(constant_of_shape_model([10 ** 6, 10 ** 6])), "'cos'", "1000000000000")


def test_a_graph_input_too_large_to_allocate_is_refused():
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     inputs=[value("x", ["N", 3, 10 ** 6, 10 ** 6])], outputs=[value("y", ["N", 3, 10 ** 6, 10 ** 6])])
    refused(check(model), "graph input 'x'", "3000000000000 elements")


def test_a_graph_input_too_large_end_to_end():
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     inputs=[value("x", ["N", 3, 10 ** 6, 10 ** 6])], outputs=[value("y", ["N", 3, 10 ** 6, 10 ** 6])])
    refused(load(model), "graph input 'x'", "elements")


# --- dtypes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,name", [(TensorProto.FLOAT16, "float16"), (TensorProto.DOUBLE, "double"),
                                        (TensorProto.INT64, "int64")])
def test_a_graph_input_of_another_dtype_is_refused(dtype, name):
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     inputs=[value("x", dtype=dtype)], outputs=[value("y", dtype=dtype)])
    refused(check(model), f"graph input 'x' is {name}", "float32 only")


def test_a_float16_graph_input_end_to_end():
    model = model_of([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     inputs=[value("x", dtype=TensorProto.FLOAT16)], outputs=[value("y", dtype=TensorProto.FLOAT16)])
    refused(load(model), "'x'", "float16")


@pytest.mark.parametrize("dtype,name", [(np.float16, "float16"), (np.float64, "double")])
def test_a_float16_or_double_initializer_the_model_computes_with_is_refused(dtype, name):
    model = add_model(weight("w", W.astype(dtype)))
    refused(check(model), "node 'add' (Add) computes with 'w'", f"a {name} constant", "float32 only")


def test_a_double_initializer_end_to_end():
    refused(load(add_model(weight("w", W.astype(np.float64)))), "'w'", "double")


def test_a_float16_initializer_cast_to_float_is_accepted():
    model = model_of([helper.make_node("Cast", ["h"], ["w"], name="cast", to=TensorProto.FLOAT),
                      helper.make_node("Add", ["x", "w"], ["y"], name="add")], [weight("h", W.astype(np.float16))])
    check_structure(model, "m.onnx")
    assert cg.run(cg.load_onnx(model), np.zeros((1, 4), np.float32)).tolist() == W.tolist()


def test_a_double_constant_node_the_model_computes_with_is_refused():
    model = model_of([helper.make_node("Constant", [], ["w"], name="const", value=weight("v", W.astype(np.float64))),
                      helper.make_node("Add", ["x", "w"], ["y"], name="add")])
    refused(check(model), "node 'add' (Add) computes with 'w'", "double")


@pytest.mark.parametrize("tensor,name", [
    (helper.make_tensor("w", TensorProto.STRING, [1], [b"N"]), "string"),
    (helper.make_tensor("w", TensorProto.COMPLEX64, [1], [1 + 2j]), "complex64"),
    (helper.make_tensor("w", TensorProto.BFLOAT16, [1], [1]), "bfloat16"),
])
def test_an_initializer_of_a_dtype_cnngraph_does_not_compute_with_is_refused(tensor, name):
    refused(check(add_model(tensor)), "initializer 'w'", f"dtype {name}")


# --- external data ---------------------------------------------------------------------------------------------
def test_external_data_is_read_into_the_model(folder):
    (folder / "weights.bin").write_bytes(b"head" + W.tobytes() + (2 * W).tobytes())
    model = model_of([helper.make_node("Add", ["x", "w"], ["s"], name="add"),
                      helper.make_node("Add", ["s", "v"], ["y"], name="add2")],
                     [external("w", [1, 4], "weights.bin", 4, 16), external("v", [1, 4], "./weights.bin", 20, 16)])
    assert load_external_data(model, folder, "m.onnx") == 32
    for tensor, expected in zip(model.graph.initializer, (W, 2 * W)):
        assert tensor.data_location == TensorProto.DEFAULT and not tensor.external_data
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), expected)
    check_structure(model, "m.onnx")
    onnx.checker.check_model(model)


def test_external_data_without_offset_or_length_is_the_whole_file(folder):
    model = add_model(external("w", [1, 4], "weights.bin"))
    load_external_data(model, str(folder), "m.onnx")
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), W)


def test_a_symlink_that_stays_inside_the_folder_is_followed(folder):
    (folder / "sub").mkdir()
    os.symlink("../weights.bin", folder / "sub" / "link.bin")
    model = add_model(external("w", [1, 4], "sub/link.bin"))
    load_external_data(model, folder, "m.onnx")
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), W)


def test_external_data_end_to_end(folder):
    graph = cg.load_onnx(save(add_model(external("w", [1, 4], "weights.bin")), folder))
    assert cg.run(graph, np.zeros((1, 4), np.float32)).tolist() == W.tolist()


@pytest.mark.parametrize("location", ["/etc/passwd", "C:\\weights.bin", "\\\\server\\share\\weights.bin",
                                      "\\weights.bin", "ABSOLUTE"])
def test_an_absolute_location_is_refused(folder, location):
    location = str(folder / "weights.bin") if location == "ABSOLUTE" else location   # absolute even if inside
    refused(lambda: load_external_data(add_model(external("w", [1, 4], location)), folder, "m.onnx"),
            "initializer 'w'", repr(location), "absolute path")


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "sub/../weights.bin",
                                      "..\\secret.bin", "sub\\..\\..\\secret.bin", ".."])
def test_a_location_with_dot_dot_is_refused(folder, location):
    """CVE-2022-25882 ('../') and CVE-2024-27318 ('sub/../../'), and '..' even when it comes back inside."""
    refused(lambda: load_external_data(add_model(external("w", [1, 4], location)), folder, "m.onnx"),
            "initializer 'w'", repr(location), "'..'")


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin"])
def test_an_escaping_location_end_to_end(folder, location):
    """Refused today too (by onnx.checker, or the importer's blanket refusal); the path is named either way."""
    message = refused(load(save(add_model(external("w", [1, 4], location)), folder)))
    assert location in message or "external data" in message


@pytest.mark.parametrize("target", ["file", "folder", "dangling"])
def test_a_symlink_escaping_the_folder_is_refused(folder, target):
    outside = folder.parent
    if target == "file":
        os.symlink(outside / "secret.bin", folder / "link.bin")
        location = "link.bin"
    elif target == "folder":
        os.symlink(outside, folder / "up")
        location = "up/secret.bin"
    else:
        os.symlink(outside / "nothing.bin", folder / "link.bin")
        location = "link.bin"
    refused(lambda: load_external_data(add_model(external("w", [1, 4], location)), folder, "m.onnx"),
            "initializer 'w'", repr(location), "outside the model's folder")


def test_a_symlink_escaping_the_folder_end_to_end(folder):
    os.symlink(folder.parent / "secret.bin", folder / "link.bin")
    refused(load(save(add_model(external("w", [1, 4], "link.bin")), folder)), "link.bin", "outside")


def test_a_hard_link_is_refused(folder):
    os.link(folder.parent / "secret.bin", folder / "hard.bin")
    refused(lambda: load_external_data(add_model(external("w", [1, 4], "hard.bin")), folder, "m.onnx"),
            "'hard.bin'", "2 hard links")


def test_a_missing_external_file_is_refused(folder):
    refused(lambda: load_external_data(add_model(external("w", [1, 4], "gone.bin")), folder, "m.onnx"),
            "initializer 'w'", "'gone.bin'", "does not exist")


def test_a_missing_external_file_end_to_end(folder):
    refused(load(save(add_model(external("w", [1, 4], "gone.bin")), folder)), "gone.bin", "does not exist")


@pytest.mark.parametrize("make", [lambda f: f.mkdir(), os.mkfifo])
def test_an_external_location_that_is_not_a_regular_file_is_refused(folder, make, opened):
    make(folder / "odd.bin")              # a FIFO must not block the open
    refused(lambda: load_external_data(add_model(external("w", [1, 4], "odd.bin")), folder, "m.onnx"),
            "'odd.bin'", "not a regular file")
    assert all(flags & os.O_NONBLOCK for path, flags in opened if path.endswith("odd.bin"))


@pytest.mark.parametrize("offset,length,words", [
    (100, None, ["offset 100 is past the end of the file (16 bytes)"]),
    (0, 100, ["bytes 0..100 go past the end of the file (16 bytes)"]),
    (8, 16, ["bytes 8..24 go past the end"]),
    (8, None, ["8 bytes from offset 8, but dims [1, 4] of float need 16"]),
    (0, 8, ["8 bytes from offset 0, but dims [1, 4] of float need 16"]),
    (-1, None, ["offset '-1' is not a non-negative whole number"]),
    ("1e3", None, ["offset '1e3' is not a non-negative whole number"]),
    (0, " 16", ["length ' 16' is not"]),
    (0, 10 ** 30, ["length '1000000000000000000000000000000' is not"]),
])
def test_an_offset_or_length_outside_the_file_is_refused(folder, offset, length, words):
    model = add_model(external("w", [1, 4], "weights.bin", offset, length))
    refused(lambda: load_external_data(model, folder, "m.onnx"), "initializer 'w'", "'weights.bin'", *words)


def test_an_offset_outside_the_file_end_to_end(folder):
    refused(load(save(add_model(external("w", [1, 4], "weights.bin", 100)), folder)), "offset 100")


def test_external_data_declaring_a_huge_shape_is_refused_unread(folder):
    (folder / "big.bin").write_bytes(b"\0" * 1024)
    model = add_model(external("w", [100000, 100000, 100000], "big.bin"))
    refused(lambda: load_external_data(model, folder, "m.onnx"), "initializer 'w'", "1000000000000000 elements")


def test_two_tensors_reading_the_same_bytes_are_refused(folder):
    """One region read by many tensors would multiply memory without a larger file."""
    model = model_of([helper.make_node("Add", ["x", "w"], ["s"], name="add"),
                      helper.make_node("Add", ["s", "v"], ["y"], name="add2")],
                     [external("w", [1, 4], "weights.bin"), external("v", [1, 2], "weights.bin", 8, 8)])
    refused(lambda: load_external_data(model, folder, "m.onnx"), "'w' and 'v'", "overlapping", "'weights.bin'")


def test_a_model_given_as_bytes_cannot_have_external_data(folder):
    model = add_model(external("w", [1, 4], "weights.bin"))
    refused(lambda: load_external_data(model, None, "<bytes>"), "<bytes>", "['w']", "loaded from its file")


def test_an_external_location_that_is_empty_or_has_a_nul_is_refused(folder):
    refused(lambda: load_external_data(add_model(external("w", [1, 4], "")), folder, "m"), "without a location")
    refused(lambda: load_external_data(add_model(external("w", [1, 4], "w\0.bin")), folder, "m"), "NUL byte")


def test_external_data_of_a_constant_node_and_a_subgraph_is_checked_too(folder):
    model = model_of([helper.make_node("Constant", [], ["w"], name="const", value=external("v", [1, 4], "../secret.bin")),
                      helper.make_node("Add", ["x", "w"], ["y"], name="add")])
    refused(lambda: load_external_data(model, folder, "m.onnx"), "node 'const' (Constant) attribute 'value'", "'..'")
    body = helper.make_graph([helper.make_node("Identity", ["b"], ["o"])], "body", [], [value("o")],
                             [external("b", [1, 4], "/etc/passwd")])
    model = model_of([helper.make_node("If", ["c"], ["y"], name="if", then_branch=body, else_branch=body)],
                     [numpy_helper.from_array(np.array(True), "c")], inputs=[])
    message = refused(lambda: load_external_data(model, folder, "m.onnx"), "node 'if' (If) subgraph", "absolute")
    assert "'then_branch'" in message or "'else_branch'" in message


# --- folding constants: no hang, no huge array -----------------------------------------------------------------
def loop_model(trips=10 ** 12):
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
                             [value("i", [], TensorProto.INT64), value("cond_in", [], TensorProto.BOOL), value("v_in")],
                             [value("cond_out", [], TensorProto.BOOL), value("v_out")])
    constants = [numpy_helper.from_array(np.array(trips, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond"),
                 weight("v")]
    return model_of([helper.make_node("Loop", ["M", "cond", "v"], ["c"], name="spin", body=body),
                     helper.make_node("Add", ["x", "c"], ["y"], name="add")], constants)


def test_a_constant_loop_is_not_folded():
    node = loop_model().graph.node[0]
    with pytest.raises(FoldError, match="subgraph"):
        check_fold(node, [np.array(10 ** 12), np.array(True), W], 18)


def test_a_constant_loop_end_to_end(monkeypatch):
    """Folding it with onnx's reference evaluator would run 10**12 iterations: the evaluator is never called."""
    from onnx.reference import ReferenceEvaluator
    runs = []
    monkeypatch.setattr(ReferenceEvaluator, "run", lambda self, *args, **kwargs: runs.append(args))
    refused(load(loop_model()), "'spin'", "subgraph")
    assert runs == []


def lazy(shape):
    """A float32 array of ``shape`` that takes no memory (check_fold only reads shapes of large inputs)."""
    return np.broadcast_to(np.float32(0), shape)


@pytest.mark.parametrize("op,inputs,attrs,words", [
    ("Add", [lazy((1, 100000)), lazy((100000, 1))], {}, ["10000000000 elements", "[100000, 100000]"]),
    ("Pad", [W, np.array([0, 0, 100000, 100000])], {}, ["[100001, 100004]"]),
    ("Resize", [lazy((1, 1, 4, 4)), None, np.array([1, 1, 1e5, 1e5], np.float32)], {}, ["[1, 1, 400000, 400000]"]),
    ("Expand", [W, np.array([100000, 100000, 1])], {}, ["[100000, 100000, 4]"]),
    ("Gather", [lazy((1, 100000)), np.broadcast_to(np.int64(0), (100000,))],
     {"axis": 0}, ["[100000, 100000]"]),
    ("OneHot", [np.broadcast_to(np.int64(0), (100000,)), np.array(100000), np.array([0.0, 1.0], np.float32)], {},
     ["[100000, 100000]"]),
])
def test_a_fold_with_a_huge_output_is_refused_before_it_runs(op, inputs, attrs, words):
    names = [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)]
    node = helper.make_node(op, names, ["big"], name="n", **attrs)
    with pytest.raises(FoldError) as info:
        check_fold(node, inputs, 18)
    for word in ["'big' would have", *words]:
        assert word in str(info.value), str(info.value)


def test_a_huge_range_is_refused_by_the_fold_itself():
    """Shape inference cannot size Range; the fold computes its length and refuses before allocating."""
    node = helper.make_node("Range", ["a", "b", "c"], ["big"], name="n")
    with pytest.raises(FoldError, match="1000000000000 elements"):
        fold(node, [np.array(0), np.array(10 ** 12), np.array(1)], 18)


def test_a_fold_of_too_much_work_is_refused():
    node = helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")
    with pytest.raises(FoldError, match="multiply-adds"):
        check_fold(node, [lazy((4096, 1024)), lazy((1024, 4096))], 18)
    node = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    with pytest.raises(FoldError, match="multiply-adds"):
        check_fold(node, [lazy((1, 256, 128, 128)), lazy((256, 256, 3, 3))], 18)
    assert check_fold(helper.make_node("MatMul", ["a", "b"], ["c"]), [lazy((64, 64)), lazy((64, 64))], 18) == 4096


def test_folding_stays_within_one_budget_per_import():
    node = helper.make_node("Add", ["a", "b"], ["c"], name="add")
    spent = check_fold(node, [W, W], 18)
    assert spent == 4
    assert check_fold(node, [W, W], 18, spent) == 8
    with pytest.raises(FoldError, match="constants folded at import would reach"):
        check_fold(node, [lazy((1, 2 ** 27)), lazy((1, 2 ** 27))], 18, onnx_safety.MAX_FOLDED_ELEMENTS - 2 ** 26)


def test_a_constant_of_shape_is_predicted_from_its_shape_input():
    """Its output shape is read from its input (no model built for onnx's shape inference): same count, same
    refusals; a negative dim goes to onnx's inference, and to the fold's own refusal."""
    node = helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos")
    assert check_fold(node, [np.array([2, 3], np.int64)], 18) == 6
    with pytest.raises(FoldError, match="1000000000000 elements"):
        check_fold(node, [np.array([10 ** 6, 10 ** 6], np.int64)], 18)
    with pytest.raises(FoldError, match="negative"):
        fold(node, [np.array([2, -3], np.int64)], 18)


def test_check_fold_accepts_what_it_cannot_predict():
    """Symbolic shapes, unknown ops and nodes shape inference cannot read are left to fold itself."""
    shape = np.array(["N", 3], dtype=object)
    assert check_fold(helper.make_node("Concat", ["a", "b"], ["c"], axis=0), [shape, np.array([4])], 18) == 3
    assert check_fold(helper.make_node("Mystery", ["a"], ["c"], domain="custom.x"), [W], 18) == 0
    assert check_fold(helper.make_node("Reshape", ["a", "s"], ["c"]), [W, shape], 18) == 0
    assert check_fold(helper.make_node("Add", ["a", "b"], ["c"]), [W, np.zeros((3, 5), np.float32)], 18) == 0


def test_a_broadcast_fold_beyond_the_cap_end_to_end(monkeypatch):
    """Add of [1, n] and [n, 1] constants: today folded whatever n (here small, with the cap lowered)."""
    monkeypatch.setattr(onnx_safety, "MAX_ELEMENTS", 10000)
    model = model_of([helper.make_node("Add", ["a", "b"], ["c"], name="outer"),
                      helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                     [weight("a", np.zeros((1, 200), np.float32)), weight("b", np.zeros((200, 1), np.float32))],
                     outputs=[value("y", [200, 200])])
    refused(load(model), "'outer'", "40000 elements")


# --- one error class -------------------------------------------------------------------------------------------
def test_errors_are_cnngraph_errors_and_value_errors():
    assert issubclass(OnnxImportError, CnnGraphError) and issubclass(OnnxImportError, ValueError)


def test_the_error_class_lives_with_the_others():
    assert cg.OnnxImportError is OnnxImportError
