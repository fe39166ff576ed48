"""How much memory a plan's activations take, against what any storage assignment of its steps must take.

A plan (plan.py) keeps its intermediate values and its steps' temporaries (scratch) in one arena of reused
memory (storage.py). The lower bound: at each step, every value computed before and read at or after it (or
the step's own output) must be held at once, together with what the step itself needs of scratch; the
largest such sum over the steps. Views share their source's storage; an element-wise step may write over an
input that dies there (in place), so that pair counts once; graph inputs and parameters are the caller's,
and graph outputs are fresh arrays handed to the caller: neither counts. For a chain the bound is the two
largest adjacent activations (plus the scratch of the step between them).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

FLOAT = 4


@dataclass
class PlanMemory:
    arena: int                   # bytes of the plan's arena (values and scratch)
    live: int                    # the largest, over steps, of the bytes of values live at the step
    bound: int                   # the largest, over steps, of live values + the step's own scratch
    worst_step: str              # the step where ``bound`` is reached

    @property
    def ratio(self) -> float:
        return self.arena / self.bound if self.bound else 1.0


def plan_memory(plan) -> PlanMemory:
    """The plan's activation memory and its lower bound, for the plan's order of steps."""
    steps = plan.steps

    def root_of(slot):                         # the slot whose storage a view shares
        while slot in plan.view_of:
            slot = plan.view_of[slot]
        return slot

    first, last = {}, {}                       # pooled value -> first and last step using it (or a view of it)
    for index, step in enumerate(steps):
        for slot in (step.writes, *step.reads):
            value = root_of(slot)
            if value in plan.pool_slots:
                first.setdefault(value, index)
                last[value] = index
    for slot in plan.output_slots:             # a pooled value an output views is copied at the end
        if root_of(slot) in last:
            last[root_of(slot)] = len(steps) - 1
    nbytes = {value: int(np.prod(plan.shapes[value])) * FLOAT for value in first}
    delta = [0] * (len(steps) + 1)
    for value in first:
        delta[first[value]] += nbytes[value]
        delta[last[value] + 1] -= nbytes[value]
    live_at = list(itertools.accumulate(delta[:-1]))
    for index, step in enumerate(steps):      # an element-wise step may write over an input that dies there
        source = plan.inplace_candidate.get(step.writes)
        source = None if source is None else root_of(source)       # a view's (Flatten's) storage is its source's
        if (source is not None and source in nbytes and step.writes in nbytes and last[source] == index
                and all(root_of(read) != source for read in step.reads[1:])):
            live_at[index] -= min(nbytes[source], nbytes[step.writes])
    with_scratch = [live + step.scratch * FLOAT for live, step in zip(live_at, steps)]
    worst = max(range(len(steps)), key=with_scratch.__getitem__, default=None)
    return PlanMemory(plan.pool_bytes, max(live_at, default=0),
                      max(with_scratch, default=0), "" if worst is None else steps[worst].label)
