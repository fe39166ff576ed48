"""Run a Graph in onnxruntime: export it in memory, build an InferenceSession once per graph version, run.

Same call and return convention as the NumPy backend (``run(graph, *arrays)``: one array for a single
output, else a tuple in output order), and the same input checking (``coerce_inputs``), so any graph can be
checked against onnxruntime in one line. Graph optimizations are off: this backend is an oracle, and
onnxruntime's own fusions would only add rounding differences of their own (onnx-simplifier's check does the
same). The session is cached per graph in a WeakKeyDictionary and rebuilt when ``Graph.version`` changes.
"""
from __future__ import annotations

import weakref

from cnngraph.onnx.export import DEFAULT_OPSET, export_onnx

from .numpy_backend.inputs import coerce_inputs

_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_session(model):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def session(graph):
    """The onnxruntime session of the graph, reused while the graph is unchanged."""
    cached = _sessions.get(graph)
    if cached is not None and cached[0] == graph.version:
        return cached[1]
    version = graph.version
    built = make_session(export_onnx(graph, opset=DEFAULT_OPSET))
    _sessions[graph] = (version, built)
    return built


def run(graph, *arrays):
    data, _ = coerce_inputs(graph, arrays)
    outputs = session(graph).run(list(graph.outputs), dict(zip(graph.inputs, data)))
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


__all__ = ["run", "session", "make_session"]
