"""Weights without copies (issue 13): the importer views or reads each weight once, external data is
memory-mapped, and cg.export_onnx streams weights into the model file or, with external_data, beside it.

The > 2 GiB path is tested by lowering export.MAX_INLINE_BYTES, not by writing 2 GiB.
"""
from __future__ import annotations

import mmap
import os

import numpy as np
import onnx
import pytest
from conftest import ort_outputs
from onnx import TensorProto, helper, numpy_helper

import cnngraph as cg
from cnngraph.errors import ExportError, OnnxImportError
from cnngraph.onnx import export as onnx_export
from cnngraph.onnx.wire import strip_initializers
from cnngraph.onnx.writing import EXTERNAL_ALIGNMENT
from cnngraph.tolerance import assert_close


@pytest.fixture(scope="module")
def graph():
    graph = cg.Graph("weights")
    x = graph.input("images", (None, 3, 8, 8))
    y = graph.apply(cg.Conv2d(3, 8, 3, padding=1), x, name="stem")         # 864 bytes: stays inline
    y = graph.apply(cg.ReLU(), y, name="act")
    y = graph.apply(cg.Flatten(1, -1), y, name="flat")                       # an int64 shape: always inline
    graph.output(graph.apply(cg.Linear(512, 10), y, name="head"))           # 20 KB: external on request
    return graph


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 8, 8), np.float32)


def params(graph) -> dict:
    return {f"{n.name}.{k}": a for n in graph.layers() for k, a in n.params.items()}


def owner(array):
    """What an array's memory belongs to: None for an array owning it, else the buffer (bytes, mmap) it views."""
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


# --- import ----------------------------------------------------------------------------------------------------
def add_model(name: str, value, graph_name: str = "g") -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", name], ["y"], name="add")], graph_name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(np.asarray(value, np.float32), name)]))


def test_weights_are_views_of_the_bytes_where_aligned():
    """The graph name's length moves the raw_data: each offset modulo 4 is met, and only aligned data is viewed."""
    value = np.arange(4, dtype=np.float32).reshape(1, 4)
    seen, name = set(), "w"
    for extra in range(4):
        data = add_model(name, value, "g" * (1 + extra)).SerializeToString()
        offset = strip_initializers(data)[1][0][0]
        array = cg.load_onnx(data).node(name).params["value"]
        np.testing.assert_array_equal(array, value)
        assert not array.flags.writeable and array.flags.aligned
        assert np.shares_memory(array, np.frombuffer(data, np.uint8)) == (offset % 4 == 0), offset
        seen.add(offset % 4)
    assert seen == {0, 1, 2, 3}


def test_weights_read_from_a_file_are_their_own_read_only_arrays(graph, x, tmp_path):
    path = tmp_path / "m.onnx"
    cg.export_onnx(graph, path)
    back = cg.load_onnx(path)
    assert_close(cg.run(back, x), cg.run(graph, x), "imported from a file")
    for name, array in params(back).items():
        assert not array.flags.writeable and array.flags.aligned, name
        assert not isinstance(owner(array), (bytes, mmap.mmap)), name     # no file or buffer kept alive


def test_a_model_whose_graph_comes_in_two_pieces_is_merged_as_protobuf_does(graph, x):
    """Protobuf merges a message field given twice; the initializers found by walking the bytes must match."""
    model = cg.export_onnx(graph)
    weights = onnx.ModelProto()
    weights.graph.initializer.extend(model.graph.initializer)
    del model.graph.initializer[:]
    back = cg.load_onnx(model.SerializeToString() + weights.SerializeToString())
    assert_close(cg.run(back, x), cg.run(graph, x), "graph in two pieces")


def test_an_initializer_with_raw_data_and_float_data_is_refused():
    model = add_model("w", np.ones((1, 4)))
    model.graph.initializer[0].float_data.extend([1.0] * 4)
    with pytest.raises(OnnxImportError, match="initializer 'w'.*both raw_data and float_data"):
        cg.load_onnx(model.SerializeToString())


# --- export ----------------------------------------------------------------------------------------------------
def test_external_data_on_request_round_trips(graph, x, tmp_path):
    path = tmp_path / "model.onnx"
    model = cg.export_onnx(graph, path, external_data=True)
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.data"]
    outside = {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer
               if t.data_location == TensorProto.EXTERNAL}
    assert set(outside) == {"head.weight"}                                  # small tensors and shapes stay inline
    assert outside["head.weight"]["location"] == "model.onnx.data"
    assert int(outside["head.weight"]["offset"]) % EXTERNAL_ALIGNMENT == 0
    onnx.checker.check_model(str(path), full_check=True)
    expected = cg.run(graph, x)
    assert_close(ort_outputs(str(path), x)[0], expected, "onnxruntime on the external-data file")
    back = cg.load_onnx(path)
    assert_close(cg.run(back, x), expected, "cg.load_onnx of the external-data file")
    weight = params(back)["head.weight"]
    assert isinstance(owner(weight), mmap.mmap) and not weight.flags.writeable     # memory-mapped, not read
    np.testing.assert_array_equal(weight, params(graph)["head.weight"])


def test_auto_puts_weights_beside_a_model_over_the_limit(graph, x, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "MAX_INLINE_BYTES", 4096)           # stands in for protobuf's 2 GiB
    cg.export_onnx(graph, tmp_path / "auto.onnx")
    assert sorted(os.listdir(tmp_path)) == ["auto.onnx", "auto.onnx.data"]
    assert_close(cg.run(cg.load_onnx(tmp_path / "auto.onnx"), x), cg.run(graph, x), "auto, over the limit")
    with pytest.raises(ExportError, match=r"would be \d+ bytes, more than the 2 GiB"):
        cg.export_onnx(graph, tmp_path / "inline.onnx", external_data=False)
    with pytest.raises(ExportError, match="give a path"):
        cg.export_onnx(graph)
    assert sorted(os.listdir(tmp_path)) == ["auto.onnx", "auto.onnx.data"]


def test_auto_keeps_a_small_model_in_one_file(graph, tmp_path):
    model = cg.export_onnx(graph, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == ["m.onnx"]
    assert onnx.load(str(tmp_path / "m.onnx")) == model
    assert all(t.data_location != TensorProto.EXTERNAL for t in model.graph.initializer)


def test_external_data_needs_a_path_and_a_known_setting(graph):
    with pytest.raises(ExportError, match="give a path"):
        cg.export_onnx(graph, external_data=True)
    with pytest.raises(ExportError, match="external_data must be"):
        cg.export_onnx(graph, external_data="yes")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_external_write_leaves_the_old_files(graph, tmp_path, monkeypatch, failing):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the old model")
    (tmp_path / "model.onnx.data").write_bytes(b"the old data")

    def fail(*args, **kwargs):
        raise OSError(f"simulated failure in os.{failing}")
    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="simulated"):
        cg.export_onnx(graph, path, external_data=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old model"
    assert (tmp_path / "model.onnx.data").read_bytes() == b"the old data"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.data"]


def test_export_over_the_file_a_graph_was_loaded_from(graph, x, tmp_path):
    """The loaded graph's weights stay valid when its own file is replaced (the export renames a new file in)."""
    path = tmp_path / "model.onnx"
    cg.export_onnx(graph, path, external_data=True)
    back = cg.load_onnx(path)
    cg.export_onnx(cg.optimize(back, level=2), path, external_data=True)
    assert_close(cg.run(back, x), cg.run(graph, x), "the graph loaded before the file was replaced")
    assert_close(cg.run(cg.load_onnx(path), x), cg.run(graph, x), "the new file")


def test_an_inline_export_over_an_external_one_removes_its_data_file(graph, x, tmp_path):
    path = tmp_path / "model.onnx"
    cg.export_onnx(graph, path, external_data=True)
    cg.export_onnx(graph, path)
    assert os.listdir(tmp_path) == ["model.onnx"]
    assert_close(cg.run(cg.load_onnx(path), x), cg.run(graph, x), "the inline model")


def test_a_data_file_the_old_model_did_not_use_is_left_alone(graph, tmp_path):
    path = tmp_path / "model.onnx"
    cg.export_onnx(graph, path)
    (tmp_path / "model.onnx.data").write_bytes(b"someone else's file")
    cg.export_onnx(graph, path)
    assert (tmp_path / "model.onnx.data").read_bytes() == b"someone else's file"


def test_a_0_d_initializer_stays_0_d(tmp_path):
    """Gather with a scalar index (IndexSelect of one index) needs a 0-d initializer, inline or beside."""
    graph = cg.Graph("scalar")
    graph.output(graph.apply(cg.IndexSelect(1, 2), graph.input("x", (None, 3, 4))))
    assert any(not t.dims for t in cg.export_onnx(graph).graph.initializer)
    cg.export_onnx(graph, tmp_path / "m.onnx", external_data=True)
