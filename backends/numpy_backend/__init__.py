"""The NumPy backend: compile a Graph into a plan of BLAS-backed kernels and run it."""
from __future__ import annotations

import weakref

from . import (  # noqa: F401  (register the kernels)
    activations,
    adaptive_pooling,
    conv_nd,
    elementwise,
    elementwise_gradients,
    gemm,
    gradients,
    gradients_batchnorm,
    gradients_conv,
    gradients_nd,
    gradients_norm,
    math_ops,
    pooling,
    reductions,
    resample,
    sample_norm,
    select,
    slicing,
    tensor_gradients,
    tensor_ops,
)
from .inputs import coerce_inputs
from .kernel import KERNELS
from .plan import Executor

_executors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # graph -> (version, executor of a copy)


def compile_graph(graph) -> Executor:
    """The graph compiled for this backend, cached on (graph identity, Graph.version): every edit of the graph
    bumps its version, so no executor outlives an edit. The executor holds a snapshot, not the graph, so the
    cache entry dies with the graph."""
    cached = _executors.get(graph)
    if cached is not None and cached[0] == graph.version:
        return cached[1]
    executor = Executor(graph)                     # it keeps a snapshot, not the graph (which would keep the key)
    _executors[graph] = (graph.version, executor)
    return executor


def run(graph, *arrays):
    return compile_graph(graph)(*arrays)


__all__ = ["run", "compile_graph", "coerce_inputs", "KERNELS", "Executor"]
