"""The IR cannot go stale (issue 10, item 5): nodes are frozen, parameter arrays read-only, every edit goes through
a Graph method that bumps ``Graph.version``, and no compiled plan outlives an edit. Also the layer docstrings.

Each defect of the issue is a test here: a copy that shared writable arrays, a refused ReLU6 that gave the next
ReLU the name relu0, new weights after a first run that the NumPy backend did not see."""
from __future__ import annotations

import dataclasses
import gc
import inspect
import re
import tracemalloc
import weakref

import numpy as np
import pytest

import cnngraph as cg
from cnngraph.backends.numpy_backend import compile_graph
from cnngraph.layers import __all__ as LAYER_NAMES
from cnngraph.tolerance import assert_close


def small_net():
    """conv1 -> relu1 -> fc1 (flattened): weights of every kind a pass or a backend reads."""
    g = cg.Graph("small")
    x = g.input("x", (None, 2, 5, 5))
    h = g.apply(cg.ReLU(), g.apply(cg.Conv2d(2, 3, 3, padding=1), x))
    g.output(g.apply(cg.Linear(75, 4), g.apply(cg.Flatten(), h)))
    return g


def images(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 2, 5, 5)).astype(np.float32)


# --- nodes are frozen ---------------------------------------------------------------------------------------
def test_a_node_cannot_be_changed_behind_the_graphs_back():
    g = small_net()
    node, version = g.node("conv1"), g.version
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.type = cg.graph.TensorType(("N", 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.inputs = ("x", "x")
    with pytest.raises(TypeError, match="read-only"):
        node.attrs["stride"] = (2, 2)
    with pytest.raises(TypeError, match="read-only"):
        node.params["weight"] = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="read-only"):
        del node.params["bias"]
    with pytest.raises(TypeError, match="read-only"):
        node.attrs.update(groups=2)
    with pytest.raises(ValueError, match="read-only"):
        node.params["weight"][0] = 0.0                   # the array itself
    assert g.version == version
    g.lint()


def test_reading_node_attributes_works_as_on_a_dict():
    node = small_net().node("conv1")
    assert node.attrs["kernel_size"] == (3, 3) and node.params["weight"].shape == (3, 2, 3, 3)
    changed = dict(node.attrs, stride=(2, 2))
    changed["groups"] = 1                                # a plain dict: the caller's to edit
    assert type(changed) is dict and changed["stride"] == (2, 2) and node.attrs["stride"] == (1, 1)
    assert (node.attrs | {"bias": False})["bias"] is False and node.attrs["bias"] is True
    assert node.attrs == {**node.attrs} and sorted(node.params) == ["bias", "weight"]


def test_a_fused_activations_nested_attributes_are_frozen_too():
    g = small_net()
    fused = cg.optimize(g)
    host = next(n for n in fused.layers() if n.attrs.get("activation"))
    with pytest.raises(TypeError, match="read-only"):
        host.attrs["activation"]["attrs"]["x"] = 1
    assert isinstance(host.attrs["activation"], dict)    # still reads as a dict (require_activation checks it)


# --- parameter arrays are read-only -------------------------------------------------------------------------
def test_the_graph_keeps_a_read_only_copy_of_a_writable_array_and_leaves_the_callers_alone():
    g = small_net()
    weight = np.ones((3, 2, 3, 3), np.float64)
    g.set_params("conv1", weight=weight)
    stored = g.node("conv1").params["weight"]
    assert stored.dtype == np.float32 and not stored.flags.writeable and stored.flags.c_contiguous
    assert weight.flags.writeable                        # the caller's flags are not flipped
    weight[...] = 5.0                                    # later writes by the caller do not reach the graph
    assert np.all(stored == 1.0)


def test_a_read_only_float32_array_is_kept_without_a_copy():
    big = np.arange(3 * 2 * 3 * 3, dtype=np.float32).reshape(3, 2, 3, 3).copy()      # owns its memory
    big.flags.writeable = False
    g = small_net()
    g.set_params("conv1", weight=big)
    assert g.node("conv1").params["weight"] is big
    layer = cg.Conv2d(2, 3, 3)
    layer.weight = big
    assert layer.weight is big
    h = cg.Graph("h")
    h.output(h.apply(layer, h.input("x", (None, 2, 5, 5))))
    assert h.node("conv1").params["weight"] is big       # from the layer object to the graph: still no copy


def test_a_read_only_view_of_writable_memory_is_copied():
    memory = np.zeros((3, 2, 3, 3), np.float32)
    view = memory.view()
    view.flags.writeable = False
    g = small_net()
    g.set_params("conv1", weight=view)
    memory[...] = 7.0
    assert np.all(g.node("conv1").params["weight"] == 0.0)


def test_layer_objects_take_weights_as_attributes_and_keep_them_read_only():
    conv = cg.Conv2d(2, 3, 3, padding=1)
    weight = np.full((3, 2, 3, 3), 0.5, np.float32)
    conv.weight = weight
    weight[...] = 9.0
    assert np.all(conv.weight == 0.5) and not conv.weight.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        conv.weight[0] = 1.0
    with pytest.raises(TypeError, match="read-only"):
        conv.params["weight"] = weight
    with pytest.raises(cg.ParameterError, match=r"weight must have shape \(3, 2, 3, 3\)"):
        conv.weight = np.zeros((3, 2, 2, 2))
    with pytest.raises(cg.ParameterError, match="bias"):
        cg.Conv2d(2, 3, 3, bias=False).bias = np.zeros(3)


def test_a_copy_shares_arrays_safely():
    """Defect: g.copy() shared writable weight arrays, so writing into the copy changed the original."""
    g = small_net()
    h = g.copy()
    original = np.array(g.node("conv1").params["weight"])
    assert h.node("conv1").params["weight"] is g.node("conv1").params["weight"]     # shared, no memory cost
    with pytest.raises(ValueError, match="read-only"):
        h.node("conv1").params["weight"][...] = 0.0
    h.set_params("conv1", weight=np.zeros((3, 2, 3, 3)))
    assert np.array_equal(g.node("conv1").params["weight"], original)
    assert not np.any(h.node("conv1").params["weight"])
    x = images()
    assert not np.allclose(cg.run(g, x), cg.run(h, x))


def test_an_imported_models_weights_are_not_copied_twice():
    """The graph keeps the importer's read-only float32 arrays without a copy: those over the initializers' bytes
    and the constants it folded (weights built by ConstantOfShape, as in the ONNX light zoo); a weight the importer
    must transpose (Gemm with transB=0) is copied once. Measured as the peak of Python and NumPy allocations during
    load_onnx, in units of the weights: 1.27 (the weights, one transposed copy, an initializer's bytes read once
    more while checking), against 1.67 when the folded weights are copied once more, 1.87 with the importer as it
    was (np.ascontiguousarray, astype) and 2.87 when the graph copies every weight."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    arrays = {f"w{i}": rng.standard_normal((512, 512, 1, 1), dtype=np.float32) for i in range(2)}   # 1 MB each
    arrays["fc"] = rng.standard_normal((512 * 4, 128), dtype=np.float32)                            # 1 MB, (in, out)
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]
    inits.append(numpy_helper.from_array(np.array([512, 512, 1, 1], np.int64), "wshape"))
    nodes = [helper.make_node("ConstantOfShape", ["wshape"], [f"w{i}"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.01 * i])) for i in (2, 3)]
    nodes += [helper.make_node("Conv", [f"c{i}", f"w{i}"], [f"c{i + 1}"], kernel_shape=[1, 1]) for i in range(4)]
    nodes += [helper.make_node("Flatten", ["c4"], ["f"]), helper.make_node("Gemm", ["f", "fc"], ["y"], transB=0)]
    model = helper.make_model(helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("c0", TensorProto.FLOAT, ["N", 512, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 128])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    weights = 5 * 2**20
    tracemalloc.start()
    try:
        g = cg.load_onnx(model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(a.nbytes for n in g.layers() for a in n.params.values()) == weights
    assert peak < 1.4 * weights, f"peak {peak / weights:.2f}× the weights"


# --- every change goes through the graph and bumps its version ----------------------------------------------
def test_every_edit_bumps_the_version():
    g = small_net()
    seen = [g.version]

    def bumped():
        assert g.version > seen[-1]
        seen.append(g.version)

    g.set_params("fc1", bias=np.ones(4))
    bumped()
    t = g.apply(cg.Tanh(), "x")
    bumped()
    g.set_inputs("conv1", [t])
    bumped()
    g.replace("relu1", "Sigmoid", ["conv1"])
    bumped()
    other = g.apply(cg.ReLU(), "conv1")
    bumped()
    g.replace_all_uses_with("relu1", other)
    bumped()
    g.erase("relu1")
    bumped()
    g.output("conv1")
    bumped()
    g.lint()


def test_set_params_refuses_wrong_names_and_shapes_and_changes_nothing():
    g = small_net()
    version, weight = g.version, g.node("conv1").params["weight"]
    with pytest.raises(cg.ParameterError) as info:
        g.set_params("conv1", weight=np.zeros((3, 2, 2, 2)))
    assert all(part in str(info.value) for part in ("conv1 (Conv2d)", "weight", "(3, 2, 3, 3)", "(3, 2, 2, 2)"))
    with pytest.raises(cg.ShapeError, match=r"conv1 \(Conv2d\): unexpected parameters \['wieght'\]"):
        g.set_params("conv1", wieght=np.zeros((3, 2, 3, 3)))
    with pytest.raises(cg.ParameterError, match="numeric"):
        g.set_params("conv1", weight=np.full((3, 2, 3, 3), "a"))
    with pytest.raises(cg.GraphError, match="graph input"):
        g.set_params("x", weight=np.zeros(1))
    with pytest.raises(cg.GraphError, match="no value named 'conv9'"):
        g.set_params("conv9", weight=np.zeros(1))
    assert g.version == version and g.node("conv1").params["weight"] is weight


def test_a_refused_layer_leaves_the_automatic_names_as_they_were():
    """Defect: a refused ReLU6 (prefix "relu6", name "relu61") decremented the "relu" counter, so the next ReLU
    was named relu0."""
    g = cg.Graph("names")
    x = g.input("x", (None, 3))
    with pytest.raises(cg.ShapeError, match="relu61"):
        g.apply(cg.ReLU6(), x, x)                        # two inputs: refused
    assert g.apply(cg.ReLU(), x).name == "relu1"
    assert g.apply(cg.ReLU6(), x).name == "relu61"
    with pytest.raises(cg.ShapeError):
        g.apply(cg.Linear(4, 2), x)
    assert g.apply(cg.Linear(3, 2), x).name == "fc1"


# --- no compiled plan outlives an edit ----------------------------------------------------------------------
def test_new_weights_after_a_first_run_reach_the_numpy_backend():
    """Defect: replacing node.params["weight"] after a first cg.run left the NumPy backend on the old numbers
    (onnxruntime used the new ones). Writing into the node is now refused; set_params reaches both backends."""
    g = small_net()
    x = images()
    before = cg.run(g, x)
    with pytest.raises(TypeError, match="read-only"):
        g.node("conv1").params["weight"] = np.zeros((3, 2, 3, 3), np.float32)
    rng = np.random.default_rng(1)
    g.set_params("conv1", weight=rng.standard_normal((3, 2, 3, 3)), bias=rng.standard_normal(3))
    after = cg.run(g, x)
    assert not np.allclose(before, after)
    assert_close(after, cg.run(g, x, backend="onnxruntime"))
    g.set_params("fc1", weight=rng.standard_normal((4, 75)))       # and again, after the second run
    assert_close(cg.run(g, x), cg.run(g, x, backend="onnxruntime"))


def test_a_structural_edit_after_a_run_reaches_the_numpy_backend():
    g = small_net()
    x = images()
    cg.run(g, x)
    g.replace("relu1", "Sigmoid", ["conv1"])
    assert_close(cg.run(g, x), cg.run(g, x, backend="onnxruntime"))


def test_a_compiled_executor_is_a_snapshot_of_the_graph_it_compiled():
    g = small_net()
    x = images()
    executor = compile_graph(g)
    before = executor(x)
    shift = 100.0 - g.node("fc1").params["bias"]
    g.set_params("fc1", bias=np.full(4, 100.0))
    assert compile_graph(g) is not executor
    assert np.array_equal(executor(x), before)           # the old executor is the old graph, consistently
    assert np.allclose(cg.run(g, x), before + shift, atol=1e-3)
    assert compile_graph(g) is compile_graph(g)          # unchanged graph: compiled once


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_a_backends_cache_does_not_keep_a_graph_alive(backend):
    """The compiled plan held the graph, so the cache kept every graph ever run (and its weights) alive."""
    g = small_net()
    cg.run(g, images(), backend=backend)
    alive = weakref.ref(g)
    del g
    gc.collect()
    assert alive() is None


# --- docstrings on every public layer -----------------------------------------------------------------------
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_exported_layer_documents_each_constructor_argument(name):
    layer = getattr(cg, name)
    doc = layer.__dict__.get("__doc__") or ""
    assert len(doc.strip()) > 20, f"{name} has no docstring of its own"
    for argument in inspect.signature(layer.__init__).parameters:
        if argument != "self":
            assert re.search(rf"\b{argument}\b", doc), f"{name}'s docstring does not mention {argument!r}"


def test_help_shows_pytorch_layouts():
    assert "(out_channels, in_channels / groups, kh, kw)" in cg.Conv2d.__doc__
    assert "(out_features, in_features)" in cg.Linear.__doc__
    assert all(p in cg.BatchNorm2d.__doc__ for p in ("running_mean", "running_var", "weight", "bias"))
