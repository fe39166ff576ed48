"""The real architectures the onnx package ships (onnx/backend/test/data/light): import, run, export again.

These models are opset 9, list their initializers as graph inputs too, and build most weights at run time
with ConstantOfShape(0.02). Such placeholders make every channel equal and hide bugs, so each test first
replaces every ConstantOfShape by a random initializer of its shape (He-scaled weights, positive variances
and scales), and also exposes the logits before the final Softmax, which would otherwise saturate.
"""
from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.tolerance import assert_close

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = sorted(name[len("light_"):-len(".onnx")] for name in os.listdir(LIGHT) if name.endswith(".onnx"))


def randomized(model: onnx.ModelProto, rng) -> onnx.ModelProto:
    """The model with random constants in place of its ConstantOfShape placeholders, logits exposed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    role = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            role.setdefault(name, (node.op_type, index))
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = tuple(int(d) for d in constants[node.input[0]])
        op_type, index = role.get(node.output[0], ("", 0))
        if len(shape) >= 2:                                          # a Conv or Gemm weight: He scaling
            fan_in = int(np.prod(shape[1:])) if op_type == "Conv" else min(shape)
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        elif op_type == "BatchNormalization" and index in (2, 3):    # shift and mean
            value = rng.normal(0.0, 0.1, size=shape)
        else:                                                        # scales, variances, biases
            value = rng.uniform(0.5, 1.5, size=shape)
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    model.ir_version = max(model.ir_version, 4)                      # initializers need not be inputs from IR 4
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    probabilities = next((o for o in graph.output if softmax and o.name == softmax[-1].output[0]), None)
    if probabilities is not None:                                    # the logits have the same type
        logits = graph.output.add()
        logits.CopyFrom(probabilities)
        logits.name = softmax[-1].input[0]
    return model


def ort_run(model, arrays):
    session = make_session(model)
    feeds = dict(zip([i.name for i in session.get_inputs()], arrays))
    return session.run([o.name for o in model.graph.output], feeds)


def model_input(model, rng):
    initializers = {t.name for t in model.graph.initializer}
    value = next(v for v in model.graph.input if v.name not in initializers)
    shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


@pytest.fixture(scope="module", params=MODELS)
def zoo_case(request):
    rng = np.random.default_rng(sum(map(ord, request.param)))
    model = randomized(onnx.load(os.path.join(LIGHT, f"light_{request.param}.onnx")), rng)
    return request.param, model, [model_input(model, rng)]


def test_zoo_model_imports_and_matches_onnxruntime(zoo_case):
    name, model, arrays = zoo_case
    start = time.perf_counter()
    graph = cg.load_onnx(model)
    seconds = time.perf_counter() - start
    graph.lint()
    assert seconds < 20, f"importing {name} took {seconds:.1f} s"
    assert not any(n.op == "Constant" and n.type.shape and np.prod(n.type.shape) > 4096 for n in graph.layers()), \
        "weights should be layer parameters, not free constants"
    ours = cg.run(graph, *arrays)
    ours = ours if isinstance(ours, tuple) else (ours,)
    expected = ort_run(model, arrays)
    assert len(ours) == len(expected)
    for output, a, b in zip(model.graph.output, ours, expected):
        assert_close(a, b, f"{name}: output {output.name!r}")


def test_zoo_model_exports_back_and_runs_the_same_in_onnxruntime(zoo_case):
    """ONNX -> Graph -> ONNX: the model we write (opset 13) gives onnxruntime the original's outputs."""
    name, model, arrays = zoo_case
    exported = cg.export_onnx(cg.load_onnx(model), opset=13)
    for output, a, b in zip(model.graph.output, ort_run(exported, arrays), ort_run(model, arrays)):
        assert_close(a, b, f"{name}: output {output.name!r} after export")


def test_light_models_are_all_found():
    assert {"bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
            "vgg19", "zfnet512"} <= set(MODELS)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_zoo_model_optimizes_to_the_same_outputs(zoo_case, level):
    name, model, arrays = zoo_case
    graph = cg.load_onnx(model)
    optimized = cg.optimize(graph, level=level)
    optimized.lint()
    assert len(optimized.layers()) <= len(graph.layers())
    if level >= 2:
        assert not any(n.op == "BatchNorm2d" and optimized.node(n.inputs[0]).op == "Conv2d"
                       and optimized.use_count(n.inputs[0]) == 1 for n in optimized.layers()), "a BatchNorm left unfolded"
    expected = ort_run(model, arrays)
    for output, a, b in zip(model.graph.output, _as_tuple(cg.run(optimized, *arrays)), expected):
        assert_close(a, b, f"{name} optimized at level {level}: output {output.name!r}")
    for output, a, b in zip(model.graph.output, ort_run(cg.export_onnx(optimized), arrays), expected):
        assert_close(a, b, f"{name} optimized at level {level}, exported: output {output.name!r}")


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)
