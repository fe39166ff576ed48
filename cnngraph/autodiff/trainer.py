"""``cg.Trainer``: mini-batch training of a graph by its training graph, and the trained inference graph.

Each step runs the training graph (forward in training mode, loss, backward) on one batch with the NumPy
backend, gives every learnable parameter's gradient to the optimizer, and stores the new arrays with
``Graph.set_params`` in the inference graph and in every training node that holds that parameter (the rules
share the forward arrays, so the holders are found by identity). The training graph is compiled once: new
parameters reach its plan through Executor.set_params, which rebuilds only the steps computing those nodes
(compiling anew cost resnet18 at 32×32 more than the step itself, and lost the plan's schedule over the
cores). BatchNorm's running statistics follow
PyTorch: running = (1 − momentum)·running + momentum·batch, the batch variance unbiased.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph
from ..readonly import freeze_in_place
from .backward import build
from .gradients import collect, feeds, learnable


@dataclass
class History:
    """Per epoch: the mean training loss and accuracy, and the validation ones when given."""
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        return getattr(self, key)


def cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(target)), target].mean())


class Trainer:
    """Train ``graph`` (left untouched) with ``loss`` ("cross_entropy" or "mse") and ``optimizer``
    (cnngraph.optim; default SGD(lr=0.01)); ``scheduler`` (cnngraph.optim.StepLR, CosineAnnealingLR) steps
    once per epoch; ``bn_momentum`` is BatchNorm's running-statistics momentum (PyTorch's 0.1); ``seed`` draws
    the shuffling and the Dropout masks. ``trainer.graph`` is the trained inference graph (a new Graph)."""

    def __init__(self, graph: Graph, loss: str = "cross_entropy", optimizer=None, scheduler=None,
                 bn_momentum: float = 0.1, seed: int = 0):
        from ..optim import SGD
        self._graph = graph.copy()
        self.loss = loss
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01)
        self.scheduler = scheduler
        self.bn_momentum = float(bn_momentum)
        self.rng = np.random.default_rng(seed)
        self.training = build(graph, loss, train=True, wrt_inputs=False)
        self.keys = learnable(graph)
        self._executor = None                      # the training graph compiled, on the first step

    @property
    def graph(self) -> Graph:
        """The trained inference graph, a new Graph (ready for cg.optimize, cg.run, cg.export_onnx)."""
        return self._graph.copy()

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One optimizer step on one batch; returns the batch's loss and the logits (training mode)."""
        from ..backends.numpy_backend import Executor
        from ..backends.numpy_backend.batch_split import training_threads
        tg = self.training
        if self._executor is None:
            self._executor = Executor(tg.graph)
        with training_threads():                   # as gradients.run_training runs a training graph
            outputs = self._executor(*feeds(tg, [x], y, self.rng))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        result = collect(tg, self._graph, outputs)
        for key in self.keys:
            param = self._graph.node(key[0]).params[key[1]]
            self._set(key, self.optimizer.update(key, param, result.params[key]))
        self.optimizer.end_step()
        by_name = dict(zip(tg.graph.outputs, outputs))
        for node, stats in tg.stats.items():
            batch = by_name[stats]
            params = self._graph.node(node).params
            m = self.bn_momentum
            self._set((node, "running_mean"), (1 - m) * params["running_mean"] + m * batch[0])
            self._set((node, "running_var"), (1 - m) * params["running_var"] + m * batch[1])
        return result.loss, by_name[tg.forward_outputs[0]]

    def _set(self, key: tuple, value: np.ndarray) -> None:
        # the optimizer and the running statistics return new arrays only this trainer holds: made read-only
        # as they are (a copy cost resnet18 45 MB of fresh pages a step)
        array = freeze_in_place(np.ascontiguousarray(value, np.float32))
        self._graph.set_params(key[0], **{key[1]: array})
        for holder, name in self.training.holders.get(key, ()):
            self.training.graph.set_params(holder, **{name: array})
            if self._executor is not None:
                self._executor.set_params(holder, **{name: array})

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation=None, shuffle: bool = True,
            progress=None) -> History:
        """Train for ``epochs`` over (x, y) in mini-batches; ``validation=(xv, yv)`` is scored after each epoch;
        ``progress(epoch, batch, batches, loss, accuracy)`` is called after every step with the epoch's running
        mean loss and accuracy. Returns the History."""
        x, y = np.asarray(x, np.float32), np.asarray(y)
        history = History()
        count = len(x)
        for epoch in range(epochs):
            order = self.rng.permutation(count) if shuffle else np.arange(count)
            total, correct, batches = 0.0, 0, (count + batch_size - 1) // batch_size
            for index, start in enumerate(range(0, count, batch_size)):
                chosen = order[start:start + batch_size]
                loss, logits = self.step(x[chosen], y[chosen])
                total += loss * len(chosen)
                if self.loss == "cross_entropy":
                    correct += int((logits.argmax(axis=1) == y[chosen]).sum())
                if progress:
                    seen = min(start + batch_size, count)
                    progress(epoch, index + 1, batches, total / seen,
                             correct / seen if self.loss == "cross_entropy" else float("nan"))
            history.loss.append(total / count)
            history.accuracy.append(correct / count if self.loss == "cross_entropy" else float("nan"))
            if validation is not None:
                val_loss, val_accuracy = self.evaluate(*validation)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
            if self.scheduler is not None:
                self.scheduler.step()
        return history

    def evaluate(self, x, y) -> tuple[float, float]:
        """Loss and accuracy of the current inference graph (BatchNorm on running statistics, no Dropout)."""
        from .. import run
        out = run(self._graph, np.asarray(x, np.float32))
        y = np.asarray(y)
        if self.loss == "cross_entropy":
            return cross_entropy(out, y), float((out.argmax(axis=1) == y).mean())
        return float(np.mean((out - y) ** 2)), float("nan")
