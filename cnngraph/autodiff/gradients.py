"""``cg.gradients``: the loss and every gradient of a graph on one batch, computed by its training graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..graph import Graph
from .backward import TrainingGraph, build


@dataclass
class Gradients:
    """What ``cg.gradients`` returns."""
    loss: float
    params: dict            # (node name, parameter name) -> array shaped like the parameter
    inputs: tuple           # one array per graph input, shaped like it


def learnable(graph: Graph) -> list[tuple[str, str]]:
    """Every learnable parameter as (node, name): buffers (BatchNorm's running statistics) and constants are not."""
    return [(node.name, key) for node in graph.layers() if not node.layer.constant
            for key in node.params if key not in node.layer.buffers]


def feeds(tg: TrainingGraph, inputs, target, rng: np.random.Generator) -> list[np.ndarray]:
    """The training graph's inputs in order: the data, the target (class indices as float32), Dropout masks
    (kept with probability 1 − p, scaled by 1/(1 − p), as PyTorch does) drawn from ``rng``."""
    graph = tg.graph
    named = dict(zip(tg.graph.inputs, inputs))
    target = np.asarray(target)
    if target.dtype.kind == "f" and tg.graph.node(tg.loss).op == "CrossEntropyLoss":
        raise InputError(f"the cross-entropy target must be integer class indices, got dtype {target.dtype}")
    if tg.graph.node(tg.loss).op == "CrossEntropyLoss":
        classes = graph.type_of(tg.forward_outputs[0]).shape[1]
        if target.ndim != 1 or target.size and (target.min() < 0 or target.max() >= classes):
            raise InputError(f"the cross-entropy target must be class indices in [0, {classes}), one per sample")
    named["target"] = target.astype(np.float32)
    for node, mask_input in tg.masks.items():
        p = tg.dropout_p[node]
        shape = [len(inputs[0]) if isinstance(d, str) else d for d in graph.type_of(mask_input).shape]
        keep = rng.random(shape) >= p
        named[mask_input] = (keep * (0.0 if p >= 1 else 1.0 / (1.0 - p))).astype(np.float32)
    return [named[name] for name in graph.inputs]


def collect(tg: TrainingGraph, graph: Graph, outputs) -> Gradients:
    """Name the training graph's outputs: zeros for parameters and inputs no gradient reaches."""
    by_name = dict(zip(tg.graph.outputs, outputs))
    params = {}
    for key in learnable(graph):
        name = tg.params.get(key)
        params[key] = by_name[name] if name else np.zeros(graph.node(key[0]).params[key[1]].shape, np.float32)
    return Gradients(float(by_name[tg.loss]), params, tuple(by_name[name] if name else None for name in tg.inputs))


def run_training(graph: Graph, *arrays):
    """Run a training graph in the NumPy backend with BLAS on one thread (batch_split.training_threads). A
    training graph cannot be cut into batch pieces (its weight gradients sum over the batch), and BLAS's own
    threads cost more than they gave on the 2-core machines measured: resnet18 at 32×32, batch 32, took 1,472 ms
    a step with them, 274 ms without."""
    from .. import run
    from ..backends.numpy_backend.batch_split import training_threads
    with training_threads():
        return run(graph, *arrays)


def gradients(graph: Graph, *inputs, target, loss: str = "cross_entropy", train: bool = False,
              seed: int = 0) -> Gradients:
    """The mean ``loss`` ("cross_entropy" on logits with integer targets, or "mse") of ``graph`` on ``inputs``
    and its gradient with respect to every learnable parameter and every input. ``train`` uses BatchNorm's
    batch statistics and Dropout's masks (drawn with ``seed``); otherwise the graph is as at inference."""
    tg = build(graph, loss, train=train)
    arrays = [np.asarray(a, np.float32) for a in inputs]
    result = collect(tg, graph, run_training(tg.graph, *feeds(tg, arrays, target, np.random.default_rng(seed))))
    result.inputs = tuple(np.zeros(a.shape, np.float32) if g is None else g for g, a in zip(result.inputs, arrays))
    return result
