"""Small CNNs exported by PyTorch's own ONNX exporters (tests/data/pytorch): import, run, compare.

Each ``<model>_<variant>.onnx`` (TorchScript exporter at opsets 13 and 17, dynamo exporter at opset 18, and
for the models with BatchNorm a TorchScript export that keeps BatchNormalization nodes) comes with
``<model>.npz``: a batch-2 input ``x`` and PyTorch's output ``y`` for it. They were made by
tests/data/pytorch/make_models.py in a separate virtualenv (see the README there); this module needs no torch.
Every file is imported with ``cnngraph.load_onnx`` and run on the NumPy backend, against PyTorch's output at
batch 2 and against onnxruntime running the original file at batch 5 (the batch dimension is dynamic).
"""
from __future__ import annotations

import functools
import os

import numpy as np
import onnx
import pytest
from conftest import ort_outputs

import cnngraph as cg
from cnngraph.tolerance import assert_close

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pytorch")
FILES = sorted(name for name in os.listdir(DATA) if name.endswith(".onnx"))
BATCH = 5


def model_name(file: str) -> str:
    """lenet_ts13.onnx -> lenet; squeeze_inception_dynamo18.onnx -> squeeze_inception."""
    return file[:-len(".onnx")].rsplit("_", 1)[0]


@functools.cache
def reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(os.path.join(DATA, f"{name}.npz")) as data:
        return data["x"], data["y"]


@functools.cache
def onnx_model(file: str) -> onnx.ModelProto:
    return onnx.load(os.path.join(DATA, file))


def ort_run(file: str, x: np.ndarray) -> np.ndarray:
    """onnxruntime, graph optimizations off, on the original file."""
    return ort_outputs(os.path.join(DATA, file), x)[0]


def batch_input(file: str) -> np.ndarray:
    """The saved batch-2 input followed by three seeded random samples: batch 5."""
    x, _ = reference(model_name(file))
    rng = np.random.default_rng(sum(map(ord, file)))
    extra = rng.standard_normal((BATCH - x.shape[0], *x.shape[1:])).astype(np.float32)
    return np.concatenate([x, extra])


def test_data_complete():
    """Every model has its reference, every file its weights inside (no external .data files)."""
    assert len(FILES) >= 15, FILES
    names = {model_name(f) for f in FILES}
    for name in names:
        assert os.path.exists(os.path.join(DATA, f"{name}.npz")), name
        variants = {f[len(name) + 1:-len(".onnx")] for f in FILES if model_name(f) == name}
        assert {"ts13", "ts17", "dynamo18"} <= variants, (name, variants)
    assert not [f for f in os.listdir(DATA) if f.endswith(".data")]
    for file in FILES:
        external = [t.name for t in onnx_model(file).graph.initializer
                    if t.data_location == onnx.TensorProto.EXTERNAL]
        assert not external, (file, external)


@pytest.mark.parametrize("file", FILES)
def test_onnxruntime_reproduces_pytorch(file):
    """The data itself: onnxruntime on the file gives PyTorch's saved output (independent of cnngraph)."""
    x, y = reference(model_name(file))
    assert_close(ort_run(file, x), y, f"{file}: onnxruntime vs PyTorch")


@pytest.mark.parametrize("file", FILES)
def test_batch_stays_symbolic(file):
    graph = cg.load_onnx(os.path.join(DATA, file))
    (name,) = graph.inputs
    batch = graph.type_of(name).shape[0]
    assert isinstance(batch, str), f"{file}: input {name!r} has shape {graph.type_of(name)}"
    out = graph.type_of(graph.outputs[0]).shape[0]
    assert out == batch, f"{file}: output batch {out!r}, input batch {batch!r}"


@pytest.mark.parametrize("file", FILES)
def test_matches_pytorch(file):
    graph = cg.load_onnx(os.path.join(DATA, file))
    x, y = reference(model_name(file))
    assert_close(cg.run(graph, x), y, f"{file}: cnngraph (NumPy) vs PyTorch, batch {x.shape[0]}")


@pytest.mark.parametrize("file", FILES)
def test_batch5_matches_onnxruntime(file):
    graph = cg.load_onnx(os.path.join(DATA, file))
    x5 = batch_input(file)
    actual = cg.run(graph, x5)
    assert_close(actual, ort_run(file, x5), f"{file}: cnngraph (NumPy) vs onnxruntime, batch {BATCH}")
    x, y = reference(model_name(file))
    assert_close(actual[:len(x)], y, f"{file}: cnngraph (NumPy) at batch {BATCH}, first rows vs PyTorch")


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("file", FILES)
def test_optimized_matches_pytorch(file, level):
    """Optimizing keeps PyTorch's numbers, in the NumPy backend and in onnxruntime on what we export."""
    graph = cg.load_onnx(os.path.join(DATA, file))
    optimized = cg.optimize(graph, level=level)
    optimized.lint()
    x, y = reference(model_name(file))
    assert_close(cg.run(optimized, x), y, f"{file} optimized at level {level}: NumPy vs PyTorch")
    assert_close(cg.run(optimized, x, backend="onnxruntime"), y, f"{file} optimized at level {level}: ORT vs PyTorch")
    if level >= 2:
        assert not any(n.op == "BatchNorm2d" for n in optimized.layers()), "every BatchNorm here follows a conv"
