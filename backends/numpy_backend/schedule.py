"""Running one plan's steps on several threads at once: for training graphs, which cannot be cut by batch.

A training graph's weight gradients sum over the batch and its BatchNorms use batch statistics, so
batch_split cannot give each core a piece of the batch. But its steps are not a chain: a convolution's
weight gradient and its input gradient read the same ∂y and do not depend on each other, and NumPy releases
the GIL inside BLAS, copies and ufuncs. So the plan's steps are spread over lanes (one thread each, BLAS on
one thread):

  1. the first run is sequential and timed step by step;
  2. list scheduling on those times: the critical path (the longest path of work) runs on lane 0, the
     other lanes take only steps off it; whenever a lane is free it takes, of its steps whose inputs are
     ready, the one with the longest path of work after it (a step that must wait for another lane pays
     SYNC_S). Lane 0 thus follows the chain that sets the time and seldom waits (on a loaded machine a thread
     that sleeps on a wait loses its time slice; resnet18's step: 22 waits that block, all on lane 1, against
     66 when any lane could take any step), while a convolution's weight gradient runs beside its input
     gradient;
  3. the plan re-assigns its buffers so that a buffer is only reused by a step that every earlier user of the
     buffer (its writers and all the readers of its values) happens before: a predecessor in the graph or an
     earlier step of the same lane (``happens_before``), so reuse adds no waiting and never races;
  4. each lane runs its steps in order, waiting only for the steps of other lanes it reads from
     (threading.Event); a step's scratch is placed like a value of its own, so lanes never share it.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import batch_split

SYNC_S = 50e-6          # the cost of a hand-over between lanes (an Event set and a thread waking)
_pools: dict[int, ThreadPoolExecutor] = {}     # lanes -> threads for all lanes but the caller's


@dataclass
class Schedule:
    order: list[int]             # the steps (old indices) by start time: a valid sequential order
    lanes: list[list[int]]       # per lane, the steps (new indices) it runs, in order
    waits: list[list[int]]       # new step index -> steps on other lanes it waits for
    signals: set                 # steps another lane waits for
    before: list[int]            # new step index -> bit set of the steps that finish before it starts


def predecessors(steps, producer_of) -> list[list[int]]:
    """For each step, the steps that produce what it reads (true dependencies only)."""
    return [sorted({producer_of[slot] for slot in step.reads if slot in producer_of}) for step in steps]


def list_schedule(preds: list[list[int]], costs: list[float], lanes: int) -> Schedule:
    """Spread steps (in a topological order, with their predecessors and costs in seconds) over ``lanes``."""
    count = len(costs)
    succs: list[list[int]] = [[] for _ in range(count)]
    for index, before in enumerate(preds):
        for p in before:
            succs[p].append(index)
    tail = [0.0] * count                        # the longest path of work from the step to the end
    for index in reversed(range(count)):
        tail[index] = costs[index] + max((tail[s] for s in succs[index]), default=0.0)
    critical = _critical_path(preds, succs, tail)
    waiting = [len(p) for p in preds]
    available = [index for index in range(count) if not waiting[index]]
    lane_free, lane_of, start, finish = [0.0] * lanes, [0] * count, [0.0] * count, [0.0] * count

    def ready_at(index, lane):
        return max((finish[p] + (0.0 if lane_of[p] == lane else SYNC_S) for p in preds[index]), default=0.0)

    while available:
        lane = min(range(lanes), key=lane_free.__getitem__)
        now = lane_free[lane]
        # lane 0 runs the steps others wait for, in their order, and side steps once those are done; the other
        # lanes run side steps only: lane 0 never waits for another lane (under load a wait costs a time slice)
        candidates = available if lane == 0 else [i for i in available if i not in critical]
        if not candidates:      # nothing for this lane until lane 0 gets further
            lane_free[lane] = lane_free[0]
            continue
        ready = {index: ready_at(index, lane) for index in candidates}
        startable = [index for index in candidates if ready[index] <= now]
        if startable:
            chosen = max(startable, key=lambda i: (tail[i], -i))
        else:
            chosen = min(candidates, key=lambda i: (ready[i], -tail[i], i))
        available.remove(chosen)
        lane_of[chosen] = lane
        start[chosen] = max(now, ready[chosen])
        finish[chosen] = lane_free[lane] = start[chosen] + costs[chosen]
        for s in succs[chosen]:
            waiting[s] -= 1
            if not waiting[s]:
                available.append(s)
    order = sorted(range(count), key=lambda i: (start[i], i))
    new = {old: position for position, old in enumerate(order)}
    new_preds = [[new[p] for p in preds[old]] for old in order]
    new_lane = [lane_of[old] for old in order]
    lane_steps = [[i for i in range(count) if new_lane[i] == lane] for lane in range(lanes)]
    before = happens_before(new_preds, lane_steps)
    previous = {b: a for steps in lane_steps for a, b in zip(steps, steps[1:])}
    # a step of another lane is waited for unless an earlier step of this lane already made sure it finished
    waits = [[p for p in new_preds[i] if new_lane[p] != new_lane[i]
              and not (i in previous and before[previous[i]] >> p & 1)] for i in range(count)]
    return Schedule(order, lane_steps, waits, {p for w in waits for p in w}, before)


def _critical_path(preds, succs, tail) -> set:
    """The steps of the longest path of work."""
    if not tail:
        return set()
    step = max((i for i in range(len(tail)) if not preds[i]), key=lambda i: (tail[i], -i))
    path = {step}
    while succs[step]:
        step = max(succs[step], key=lambda i: (tail[i], -i))
        path.add(step)
    return path


def happens_before(preds: list[list[int]], lanes: list[list[int]]) -> list[int]:
    """Bit sets: the steps that are sure to have finished when each step starts (its predecessors, the earlier
    steps of its lane, and transitively theirs); ``preds`` in a topological order."""
    previous_on_lane = {}
    for steps in lanes:
        for a, b in zip(steps, steps[1:]):
            previous_on_lane[b] = a
    before = [0] * len(preds)
    for index, ps in enumerate(preds):
        bits = 0
        for p in (*ps, *([previous_on_lane[index]] if index in previous_on_lane else [])):
            bits |= before[p] | (1 << p)
        before[index] = bits
    return before


def run_lanes(schedule: Schedule, execute) -> None:
    """Run ``execute(step index)`` for every step, each lane in a thread of its own (the first in this one)."""
    events = {index: threading.Event() for index in schedule.signals}
    failed = threading.Event()

    def lane(number):
        try:
            for index in schedule.lanes[number]:
                for p in schedule.waits[index]:
                    events[p].wait()
                if failed.is_set():
                    return
                execute(index)
                if index in events:
                    events[index].set()
        except BaseException:
            failed.set()                         # release the other lanes, which then stop
            for event in events.values():
                event.set()
            raise

    count = len(schedule.lanes)
    if count not in _pools:                  # a thread for every lane: lanes wait for each other
        _pools[count] = ThreadPoolExecutor(count - 1, thread_name_prefix="cnngraph-lane")
    with batch_split.kernels_unsplit():
        futures = [_pools[count].submit(lane, number) for number in range(1, count)]
        try:
            lane(0)
        finally:
            for future in futures:
                future.result()
