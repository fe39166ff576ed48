"""A plan's steps spread over several threads (backends/numpy_backend/schedule.py): every schedule computes what
the sequential plan computes, and no buffer is reused while a step of another lane may still use it.

The lanes are forced on small graphs (MIN_LANE_MACS = 0) and the schedule is drawn again from random step
costs, so that many different spreads (and buffer assignments) of the same plan are run."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import as_tuple, examples, inputs_for
from hypothesis import given
from hypothesis import strategies as st
from random_graphs import cases

from cnngraph import models
from cnngraph.autodiff.backward import build
from cnngraph.backends.numpy_backend import batch_split, plan, schedule
from cnngraph.backends.numpy_backend.plan import Executor


def spread_runs(graph, arrays, lanes: int, rng, schedules: int = 3):
    """The sequential outputs, and the outputs of ``schedules`` random spreads of the plan over ``lanes``."""
    expected = as_tuple(Executor(graph)(*arrays))
    with pytest.MonkeyPatch.context() as patch, batch_split.training_threads():
        patch.setattr(batch_split, "WORKERS", lanes)
        patch.setattr(plan, "MIN_LANE_MACS", 0)
        executor = Executor(graph)
        runs = [as_tuple(executor(*arrays))]                  # the first run: sequential and timed
        (spread,) = executor._plans.values()
        assert spread.schedule is not None and len(spread.schedule.lanes) == lanes
        for _ in range(schedules):
            runs.append(as_tuple(executor(*arrays)))
            spread._spread(list(rng.random(len(spread.steps)) * rng.choice([1e-6, 1e-3])))
        runs.append(as_tuple(executor(*arrays)))
    return expected, runs


def assert_same(expected, runs, graph):
    for outputs in runs:
        for name, actual, wanted in zip(graph.outputs, outputs, expected):
            np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-6, err_msg=name)


@examples(15)
@given(case=cases(), lanes=st.integers(2, 3), seed=st.integers(0, 2**32 - 1))
def test_random_training_graphs_on_lanes_match_the_sequential_run(case, lanes, seed):
    rng = np.random.default_rng(seed)
    training = build(case.graph, loss=None, train=False).graph      # forward + backward: a wide DAG
    arrays = inputs_for(training, batch=2, seed=seed % 1000)
    expected, runs = spread_runs(training, arrays, lanes, rng)
    assert_same(expected, runs, training)


def test_resnet_training_step_on_two_lanes():
    graph = models.MODELS["resnet18"](input_shape=(None, 3, 8, 8), num_classes=10)
    training = build(graph, "cross_entropy", train=True, wrt_inputs=False).graph
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 3, 8, 8)).astype(np.float32), np.arange(3, dtype=np.float32)]
    expected, runs = spread_runs(training, arrays, 2, rng, schedules=1)
    assert_same(expected, runs, training)


@examples(30)
@given(st.data())
def test_list_schedule_respects_dependencies(data):
    count = data.draw(st.integers(1, 30))
    preds = [sorted(data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else []) for i in range(count)]
    costs = data.draw(st.lists(st.floats(0, 1), min_size=count, max_size=count))
    lanes = data.draw(st.integers(1, 3))
    spread = schedule.list_schedule(preds, costs, lanes)
    assert sorted(spread.order) == list(range(count))
    new = {old: position for position, old in enumerate(spread.order)}
    assert sorted(i for steps in spread.lanes for i in steps) == list(range(count))
    lane_of = {i: lane for lane, steps in enumerate(spread.lanes) for i in steps}
    for old, before in enumerate(preds):
        i = new[old]
        for p in (new[p] for p in before):
            assert p < i and spread.before[i] >> p & 1                     # a predecessor finishes first
            if lane_of[p] != lane_of[i]:                                    # waited for, or already sure
                previous = [s for s in spread.lanes[lane_of[i]] if s < i]
                assert p in spread.waits[i] or (previous and spread.before[previous[-1]] >> p & 1)
            else:
                assert p not in spread.waits[i]
    succs = [[i for i in range(count) if p in preds[i]] for p in range(count)]
    tail = [0.0] * count
    for index in reversed(range(count)):
        tail[index] = costs[index] + max((tail[s] for s in succs[index]), default=0.0)
    critical = schedule._critical_path(preds, succs, tail)
    assert not critical or max(tail[i] for i in critical) == max(tail)
    assert all(new[old] in spread.lanes[0] for old in critical)     # the longest path stays on lane 0
    for steps in spread.lanes:
        assert steps == sorted(steps)
        for a, b in zip(steps, steps[1:]):
            assert spread.before[b] >> a & 1 and spread.before[b] & spread.before[a] == spread.before[a]
