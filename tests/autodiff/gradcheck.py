"""Gradient checks: a rule's backward graph against central finite differences, in float64.

The training graph (cnngraph.autodiff.backward.build) is evaluated by the naive float64 reference
(tests/reference.py: every forward, gradient and loss op), with parameters overridable, so the math of every
rule runs in float64. For each input and parameter the analytic gradient g is checked along a random
direction v against (L(θ + εv) − L(θ − εv)) / 2ε, where L = Σ output·c for a random cotangent c fed as the
seed (or the loss itself). Then the NumPy backend runs the same training graph in float32 and must agree
with the float64 result at float32 tolerance: the kernels are checked too.
"""
from __future__ import annotations

import numpy as np
import pytest
from reference import REFERENCE_OPS

import cnngraph as cg
from cnngraph.autodiff.backward import build
from cnngraph.autodiff.gradients import run_training
from cnngraph.backends.numpy_backend import batch_split, gradients_conv
from cnngraph.tolerance import assert_close

EPS = 1e-6


class _Node:
    """What a reference reads of a node, with float64 parameters that may be overridden."""
    def __init__(self, node, overrides, bindings):
        self.node, self.attrs, self.type, self.bindings = node, node.attrs, node.type, bindings
        self.params = {k: overrides.get((node.name, k), np.asarray(v, np.float64)) for k, v in node.params.items()}

    def label(self):
        return self.node.label()


class _Attrs:
    def __init__(self, attrs):
        self.attrs = attrs


def evaluate64(graph: cg.Graph, arrays, wanted, overrides=None) -> list[np.ndarray]:
    """The values ``wanted`` of ``graph`` in float64 by the reference, computing only what they need."""
    overrides = overrides or {}
    needed, stack = set(), list(wanted)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(graph.node(name).inputs)
    values = {name: np.asarray(a, np.float64) for name, a in zip(graph.inputs, arrays)}
    bindings = {d: s for name in graph.inputs for d, s in zip(graph.type_of(name).shape, values[name].shape)
                if isinstance(d, str)}
    for node in graph.layers():
        if node.name not in needed:
            continue
        result = REFERENCE_OPS[node.op](_Node(node, overrides, bindings), *(values[i] for i in node.inputs))
        fused = node.attrs.get("activation")
        if fused:                                            # Conv2d/Linear with a fused activation
            result = REFERENCE_OPS[fused["op"]](_Attrs(fused["attrs"]), result)
        values[node.name] = np.asarray(result, np.float64)
    return [values[name] for name in wanted]


def check_gradients(graph: cg.Graph, arrays, *, train: bool = False, loss: str | None = None, target=None,
                    masks=None, seed: int = 0) -> None:
    """Check every input and parameter gradient of ``graph`` at ``arrays`` (float32-representable values)."""
    rng = np.random.default_rng(seed)
    tg = build(graph, loss=loss, train=train)
    tg.graph.lint()
    named = dict(zip(graph.inputs, arrays))
    if loss is None:
        seeds = {f"{o}.grad": rng.standard_normal(_concrete(tg.graph, f"{o}.grad", arrays, graph)).astype(np.float32)
                 for o in graph.outputs}
        named.update(seeds)
    else:
        named["target"] = np.asarray(target, np.float32)
    named.update({tg.masks[node]: mask for node, mask in (masks or {}).items()})
    assert set(named) == set(tg.graph.inputs), (tg.graph.inputs, sorted(named))
    feeds = [named[name] for name in tg.graph.inputs]
    where = {name: i for i, name in enumerate(tg.graph.inputs)}

    def objective(inputs, overrides=None) -> float:
        if loss is not None:
            return float(evaluate64(tg.graph, inputs, [tg.loss], overrides)[0])
        outs = evaluate64(tg.graph, inputs, graph.outputs, overrides)
        return float(sum(np.sum(o * np.asarray(inputs[where[f"{name}.grad"]], np.float64))
                         for name, o in zip(graph.outputs, outs)))

    targets = [(("input", i), name) for i, name in enumerate(tg.inputs) if name is not None]
    targets += [(("param", key), name) for key, name in tg.params.items()]
    analytic = dict(zip([key for key, _ in targets], evaluate64(tg.graph, feeds, [name for _, name in targets])))
    base = [np.asarray(f, np.float64) for f in feeds]
    for (kind, key), gradient in analytic.items():
        if kind == "input":
            key = where[graph.inputs[key]]
            point = base[key]
        else:
            point = np.asarray(graph.node(key[0]).params[key[1]], np.float64)
        direction = rng.standard_normal(point.shape)
        assert gradient.shape == point.shape, (key, gradient.shape, point.shape)

        values = []
        for sign in (1, -1):
            moved = point + sign * EPS * direction
            values.append(objective(base[:key] + [moved] + base[key + 1:]) if kind == "input"
                          else objective(base, {key: moved}))
        numeric = (values[0] - values[1]) / (2 * EPS)
        exact = float(np.sum(gradient * direction))
        scale = max(1.0, abs(numeric), float(np.sum(np.abs(gradient * direction))))
        assert abs(exact - numeric) <= 1e-6 * scale, f"{kind} {key}: analytic {exact!r}, finite differences {numeric!r}"
    with pytest.MonkeyPatch.context() as patch:       # as the trainer runs it, every split kernel cut in two
        patch.setattr(gradients_conv, "MIN_ROWS", 1)
        patch.setattr(batch_split, "KERNEL_SPLIT", True)
        backend = run_training(tg.graph, *feeds)
    backend = backend if isinstance(backend, tuple) else (backend,)
    by_name = dict(zip(tg.graph.outputs, backend))
    for (kind, key), name in targets:
        close32(by_name[name], analytic[(kind, key)], f"NumPy backend, gradient of {kind} {key}")
    if tg.loss is not None:
        close32(by_name[tg.loss], evaluate64(tg.graph, feeds, [tg.loss])[0], "NumPy backend, loss")


def close32(actual, expected, what: str) -> None:
    """float32 agreement for gradients of O(1) data: a gradient sums terms of the data's magnitude that may
    cancel (Softmax's y·(dy − Σy·dy)), so the absolute tolerance is scaled to at least 1, not to the result."""
    with_unit = [np.append(np.ravel(np.asarray(a, np.float64)), 1.0) for a in (actual, expected)]
    assert_close(*with_unit, what)


def _concrete(tg, name, arrays, graph):
    bindings = {d: s for n, a in zip(graph.inputs, arrays) for d, s in zip(graph.type_of(n).shape, a.shape)
                if isinstance(d, str)}
    return [bindings.get(d, d) if isinstance(d, str) else d for d in tg.type_of(name).shape]
