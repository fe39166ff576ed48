"""cnngraph: describe a CNN as a graph of layers, check it, optimize it, run it with NumPy or export it to ONNX."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from . import datasets, models, optim
from .autodiff.gradients import Gradients, gradients
from .autodiff.trainer import History, Trainer
from .errors import CnnGraphError, ExportError, GraphError, InputError, OnnxImportError, ParameterError, ShapeError
from .graph import Graph, Node, Value
from .init import manual_seed
from .layer import REGISTRY, Layer
from .layers import *  # noqa: F401,F403  (registers every op)
from .layers import __all__ as _layer_names
from .sequential import Sequential

if TYPE_CHECKING:                               # not imported at run time: onnx loads slowly
    import onnx

    from cnngraph.passes import Finding

__version__ = "0.1.0"


def run(graph: Graph, *arrays: np.ndarray, backend: str = "numpy") -> np.ndarray | tuple[np.ndarray, ...]:
    """Run a graph on input arrays (one per graph input, in order); one array for a single-output graph, else a
    tuple in output order. ``backend``: "numpy" (compiled once per graph version, then reused) or
    "onnxruntime" (the exported model, the oracle)."""
    if backend == "onnxruntime":
        from cnngraph.backends.onnxruntime_backend import run as run_onnxruntime
        return run_onnxruntime(graph, *arrays)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}; available: 'numpy', 'onnxruntime'")
    from cnngraph.backends.numpy_backend import run as run_numpy
    return run_numpy(graph, *arrays)


def export_onnx(graph: Graph, path: str | os.PathLike | None = None, opset: int = 18,
                external_data: bool | str = "auto") -> onnx.ModelProto:
    """Write the graph as an ONNX model (standard ops, symbolic batch, checked); returns the ModelProto.
    ``external_data``: "auto" puts the weights in "<path>.data" beside the model only when the model would exceed
    protobuf's 2 GiB, True always, False never (an error over 2 GiB); they are streamed, never copied whole."""
    from .onnx.export import export_onnx as _export
    return _export(graph, path, opset, external_data)


def load_onnx(path_or_model: str | os.PathLike | bytes | onnx.ModelProto, *,
              initializers_as_inputs: bool = False) -> Graph:
    """Read an ONNX model (path, bytes or ModelProto) into a Graph; unsupported ops are listed in one error.
    Graph inputs with an initializer are constants unless ``initializers_as_inputs``."""
    from .onnx.importer import load_onnx as _load
    return _load(path_or_model, initializers_as_inputs=initializers_as_inputs)


def optimize(graph: Graph, level: int = 2, verify: bool = False, disable: str | Iterable[str] = ()) -> Graph:
    """A new optimized graph (the input is untouched); ``result.report`` says what each pass did.
    Levels: 0 nothing, 1 cleanups, 2 fusions and folds that never grow MACs or parameters, 3 also folds that
    cut MACs while growing parameters. ``verify`` checks every pass that changed the graph on random inputs;
    ``disable`` is a pass name or several."""
    from cnngraph.passes import optimize as _optimize
    return _optimize(graph, level=level, verify=verify, disable=disable)


def lint(graph: Graph) -> list[Finding]:
    """Findings a reviewer would point out (linear chains that are one linear map, an activation applied
    twice, a Dropout left in), without changing the graph."""
    from cnngraph.passes import lint as _lint
    return _lint(graph)


__all__ = ["datasets", "optim", "gradients", "Gradients", "Trainer", "History",
           "models", "optimize", "lint", "Graph", "Node", "Value", "Sequential", "Layer", "REGISTRY", "run", "export_onnx",
           "load_onnx",
           "manual_seed", "CnnGraphError", "GraphError", "InputError", "ParameterError", "ShapeError", "OnnxImportError",
           "ExportError", *_layer_names]
