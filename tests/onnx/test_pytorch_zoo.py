"""torchvision's and timm's architectures, narrow, exported by PyTorch (tests/data/pytorch_zoo): end to end.

Each ``<model>_ts17.onnx`` (TorchScript exporter, opset 17) and ``<model>_dynamo18.onnx`` (dynamo exporter,
opset 18) comes with ``<model>.npz``: a batch-2 input ``x`` and PyTorch's output ``y``. They were made by
tests/data/pytorch_zoo/make_zoo.py in a separate virtualenv (README.md there); this module needs no torch.

For every file, in one test (the model is loaded once and dropped after): cg.load_onnx, the NumPy backend
against PyTorch's output, the batch still symbolic, batch 3 against onnxruntime on the file; then cg.optimize
at levels 1, 2 and 3, each optimized graph against PyTorch in the NumPy backend and, exported with
cg.export_onnx, in onnxruntime; and after level 2 the exported model has no more nodes than the file
PyTorch wrote, nor than onnx-simplifier leaves of it (its counts are data: onnxsim_counts.json beside the files,
made by onnxsim_counts.py there; nodes are counted without Constant and ConstantOfShape, as
tests/onnx/test_never_larger.py does).

A file that fails today is in KNOWN_GAPS with its reason, an xfail(strict=True): closing the gap makes the
xfail fail, and the entry must go. A reason starting "refused:" accepts only a clean CnnGraphError (the
importer names the op); "larger:" only the node-count assertion. Wrong numbers are never listed here. A file
that imports but stays larger than onnx-simplifier's result is in LARGER_THAN_ONNXSIM with its reason, also a
strict xfail.
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

import cnngraph as cg
from cnngraph.errors import CnnGraphError
from cnngraph.tolerance import assert_close

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pytorch_zoo")
FILES = sorted(name for name in os.listdir(DATA) if name.endswith(".onnx"))
LEVELS = (1, 2, 3)
NOT_COUNTED = {"Constant", "ConstantOfShape"}
with open(os.path.join(DATA, "onnxsim_counts.json")) as _file:
    ONNXSIM = json.load(_file)["counts"]         # file: {"original", "onnxsim", "checked"}

KNOWN_GAPS: dict[str, str] = {  # file: why it fails today
}

LARGER_THAN_ONNXSIM: dict[str, str] = {}  # file: why our level-2 export keeps more nodes than onnx-simplifier's


def node_count(model: onnx.ModelProto) -> int:
    return sum(node.op_type not in NOT_COUNTED for node in model.graph.node)


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime, graph optimizations off (conftest.ort_outputs, inlined: this module also runs as a script)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def model_name(file: str) -> str:
    """tv_mobilenet_v3_small_ts17.onnx -> tv_mobilenet_v3_small."""
    return file[:-len(".onnx")].rsplit("_", 1)[0]


def reference(file: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(os.path.join(DATA, f"{model_name(file)}.npz")) as data:
        return data["x"], data["y"]


def params():
    for file in FILES:
        reason = KNOWN_GAPS.get(file) or LARGER_THAN_ONNXSIM.get(file)
        marks = () if reason is None else pytest.mark.xfail(
            strict=True, reason=reason, raises=CnnGraphError if reason.startswith("refused") else AssertionError)
        yield pytest.param(file, marks=marks, id=file[:-len(".onnx")])


def test_data_complete():
    """Both exporters' files for most models, a reference for each, weights inside, each file small."""
    assert len(FILES) >= 40, FILES
    names = {model_name(f) for f in FILES}
    assert len(names) >= 24, sorted(names)
    for name in names:
        assert os.path.exists(os.path.join(DATA, f"{name}.npz")), name
    assert not [f for f in os.listdir(DATA) if f.endswith(".data")]
    for file in FILES:
        assert os.path.getsize(os.path.join(DATA, file)) < 1 << 20, file
    assert set(KNOWN_GAPS) | set(LARGER_THAN_ONNXSIM) <= set(FILES), sorted(set(KNOWN_GAPS) - set(FILES))
    assert sorted(ONNXSIM) == FILES, "onnxsim_counts.json is stale: run onnxsim_counts.py beside the files"
    for file in FILES:
        assert ONNXSIM[file]["original"] == node_count(onnx.load(os.path.join(DATA, file))), file


@pytest.mark.parametrize("file", list(params()))
def test_zoo_model(file):
    path = os.path.join(DATA, file)
    x, y = reference(file)
    graph = cg.load_onnx(path)
    assert_close(cg.run(graph, x), y, f"{file}: cnngraph (NumPy) vs PyTorch")
    assert isinstance(graph.type_of(graph.inputs[0]).shape[0], str), f"{file}: the batch was made static"
    x3 = np.concatenate([x, x[:1] * np.float32(-0.5)])          # another batch size, against ORT on the file
    assert_close(cg.run(graph, x3), ort_run(onnx.load(path), x3), f"{file}: cnngraph vs onnxruntime at batch 3")
    original_nodes = node_count(onnx.load(path, load_external_data=False))
    for level in LEVELS:
        optimized = cg.optimize(graph, level=level)
        optimized.lint()
        assert_close(cg.run(optimized, x), y, f"{file} optimized at level {level}: NumPy vs PyTorch")
        exported = cg.export_onnx(optimized)
        assert_close(ort_run(exported, x), y, f"{file} optimized at level {level}: exported, onnxruntime vs PyTorch")
        if level == 2:
            ours = node_count(exported)
            assert ours <= original_nodes, \
                f"{file}: {ours} ONNX nodes after level 2 and export, {original_nodes} in the original"
            level2 = ours
    assert level2 <= ONNXSIM[file]["onnxsim"], \
        f"{file}: {level2} ONNX nodes after level 2 and export, {ONNXSIM[file]['onnxsim']} after onnx-simplifier"


def latency_ratio(file: str, optimized: cg.Graph, x: np.ndarray) -> float:
    """onnxruntime on our level-2 export over onnxruntime on the original file: both ORT_ENABLE_ALL, 2 threads,
    spinning off, timed in alternating blocks (shared/BENCHMARKING.md), median of the pair ratios."""
    import statistics

    from cnngraph.backends.benchmark import alternate, ort_session

    ours = ort_session(cg.export_onnx(optimized), spinning=False)
    original = ort_session(onnx.load(os.path.join(DATA, file)), spinning=False)
    a, b = alternate(lambda: ours.run(None, {"x": x}), lambda: original.run(None, {"x": x}), pairs=6, repeats=20)
    return statistics.median(p / q for p, q in zip(a, b))


def report(latency: bool = False) -> None:
    """A markdown table, one row per file: its nodes, ours after level 2 and export, onnx-simplifier's (all three
    without Constant nodes), imported or why not, the test's result; with ``latency``, onnxruntime's time on our
    level-2 export over its time on the original, at batch 8."""
    import re

    print("| file | ONNX nodes | ours: level 2 + export | onnx-simplifier | imports | matches PyTorch (NumPy, ORT, "
          "levels 0-3) |" + (" ORT latency, ours / original |" if latency else ""))
    print("|---|---:|---:|---:|---|---|" + ("---:|" if latency else ""))
    for file in FILES:
        nodes = node_count(onnx.load(os.path.join(DATA, file), load_external_data=False))
        imported, after, result, ratio = "yes", "–", "yes", "–"
        try:
            graph = cg.load_onnx(os.path.join(DATA, file))
            optimized = cg.optimize(graph, level=2)
            after = str(node_count(cg.export_onnx(optimized)))
            test_zoo_model(file)
            if latency:
                ratio = f"{latency_ratio(file, optimized, np.concatenate([reference(file)[0]] * 4)):.2f}"
        except CnnGraphError as error:
            ops = sorted(set(re.findall(r"(\w+) at '", str(error))))
            imported, result = "no: " + (", ".join(ops) or str(error).splitlines()[0][:120]), "–"
        except AssertionError as error:
            result = "NO: " + str(error).splitlines()[0][:160]
        print(f"| `{file}` | {nodes} | {after} | {ONNXSIM[file]['onnxsim']} | {imported} | {result} |"
              + (f" {ratio} |" if latency else ""), flush=True)


if __name__ == "__main__":
    import sys

    report(latency="--latency" in sys.argv[1:])
