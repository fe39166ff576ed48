"""Executor.set_params: new parameters reach a compiled plan (its steps rebuilt, its buffers and schedule kept)
exactly as compiling the changed graph anew would give them."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import as_tuple, examples, inputs_for
from hypothesis import given
from hypothesis import strategies as st
from random_graphs import cases

from cnngraph.autodiff.backward import build
from cnngraph.backends.numpy_backend import batch_split, plan
from cnngraph.backends.numpy_backend.plan import Executor


@examples(20)
@given(case=cases(), training=st.booleans(), lanes=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_set_params_equals_compiling_anew(case, training, lanes, seed):
    rng = np.random.default_rng(seed)
    graph = build(case.graph, loss=None, train=False).graph if training else case.graph
    arrays = inputs_for(graph, batch=2, seed=seed)
    other = inputs_for(graph, batch=3, seed=seed + 1)               # a second plan, used again only at the end
    with pytest.MonkeyPatch.context() as patch, batch_split.training_threads():
        patch.setattr(batch_split, "WORKERS", lanes)
        patch.setattr(plan, "MIN_LANE_MACS", 0)
        executor = Executor(graph)
        executor(*arrays)
        executor(*other)
        executor(*arrays)                                       # on the lanes from now on
        changed = graph.copy()
        for node in graph.layers():
            if node.params and rng.random() < 0.7:
                new = {k: (rng.standard_normal(v.shape) * 0.5 + (1.5 if "var" in k else 0)).astype(np.float32)
                       for k, v in node.params.items()}
                changed.set_params(node.name, **new)
                executor.set_params(node.name, **new)
        got = as_tuple(executor(*arrays))
        got_other = as_tuple(executor(*other))                  # catches up with every change at once
    for feed, result in ((arrays, got), (other, got_other)):
        for name, actual, expected in zip(graph.outputs, result, as_tuple(Executor(changed)(*feed))):
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=name)
