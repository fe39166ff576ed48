"""Where each value of a plan lives: one arena for all intermediate values, offsets chosen so that values
alive at the same time never overlap.

  1. Walking the steps in order, each written value joins a storage group: a view joins its source's group,
     an element-wise step that may write in place joins its input's group when that input dies at the step
     (and has the same size), a graph output gets a fresh array each run, anything else opens a new group.
     A group's lifetime runs from its first writer to its last reader.
  2. Each step's scratch (kernel.Scratch) is a group alive during that step only.
  3. Groups are placed in one arena, largest first (or in one of a few other orders, see _place), each at the
     lowest offset where it fits among the groups already placed whose lifetimes overlap its own (TFLite's
     greedy-by-size arena): a few large values no longer pin one buffer each that smaller values can only take
     one at a time.
For a plan whose steps run on several lanes (schedule.py) "overlap" is read from ``before`` (per step, the
bit set of the steps sure to have finished when it starts): two groups may share memory only when every user
of one happens before the first writer of the other, so reuse never races and never makes a lane wait.
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

import numpy as np

FOREVER = math.inf
ALIGN = 16                     # elements: 64-byte offsets
SHUFFLES = 64                  # placement orders tried after the two fixed ones (see _place) ...
SHUFFLE_GROUPS = 1 << 13       # ... at most this many group placements in all: big graphs try fewer


@dataclass
class Group:
    size: int                  # elements: the largest member
    first: int                 # the step writing its first member
    last: float                # the last step reading a member (FOREVER: a graph output views it)
    users: int = 0             # bit set of the steps writing or reading a member (lanes only)
    offset: int = 0
    scratch: bool = False      # a step's temporaries, alive during that step only


@dataclass
class Storage:
    arena: np.ndarray
    group_of: dict             # pooled slot -> group index
    groups: list
    fresh: set                 # slots written into a fresh array each run (graph outputs), and views of them
    scratch_offsets: dict      # step index -> where its scratch region starts in the arena

    def view(self, slot: int, shape) -> np.ndarray:
        group = self.groups[self.group_of[slot]]
        return self.arena[group.offset:group.offset + int(np.prod(shape))].reshape(shape)


def assign(steps, shapes, view_of, inplace_candidate, output_slots, before=None, scratch=()) -> Storage:
    """Groups and arena offsets for the steps' values, and for ``scratch`` (elements per step) a region per
    step alive during the step only (see the module docstring)."""
    last_read = {slot: -1 for slot in range(len(shapes))}
    readers = {slot: 0 for slot in range(len(shapes))}
    for index, step in enumerate(steps):
        for slot in step.reads:
            last_read[slot] = index
            readers[slot] |= 1 << index
    for slot in output_slots:
        last_read[slot] = FOREVER
    returned = _returned(steps, view_of, last_read)
    size = [int(np.prod(shape)) for shape in shapes]
    group_of: dict[int, int] = {}
    groups: list[Group] = []
    fresh: set[int] = set()

    def join(slot, group, index):
        group_of[slot] = group
        g = groups[group]
        g.size, g.last = max(g.size, size[slot]), max(g.last, last_read[slot])
        if before is not None:
            g.users |= 1 << index | readers[slot]

    for index, step in enumerate(steps):
        slot = step.writes
        shared, source = view_of.get(slot), inplace_candidate.get(slot)
        if shared is not None:
            if shared in group_of:
                join(slot, group_of[shared], index)
            elif shared in fresh:
                fresh.add(slot)
        elif (source in group_of and groups[group_of[source]].last == index and size[source] == size[slot]
              and source not in step.reads[1:]
              and (before is None or not groups[group_of[source]].users & ~(before[index] | 1 << index))):
            join(slot, group_of[source], index)
        elif slot in returned:
            fresh.add(slot)
        else:
            groups.append(Group(0, index, index))
            join(slot, len(groups) - 1, index)
    regions = {}
    for index, size in enumerate(scratch):
        if size:
            regions[index] = len(groups)
            groups.append(Group(size, index, index, 1 << index if before is not None else 0, scratch=True))
    total = _place(groups, before)
    return Storage(np.empty(total, np.float32), group_of, groups, fresh,
                   {index: groups[group].offset for index, group in regions.items()})


def _returned(steps, view_of, last_read) -> set:
    """Values handed to the caller: graph outputs, and values read only by views that are (a weight gradient's
    matrix and its reshape): written into a fresh array each run rather than a pool buffer copied at the end."""
    readers: dict[int, list] = {}
    for step in steps:
        for slot in step.reads:
            readers.setdefault(slot, []).append(step.writes)
    returned = set()
    for step in reversed(steps):
        slot = step.writes
        if last_read[slot] == FOREVER or (slot in readers and all(
                view_of.get(reader) == slot and reader in returned for reader in readers[slot])):
            returned.add(slot)
    return returned


def _place(groups: list[Group], before) -> int:
    """Offsets by the greedy placement (_place_in_order) of whichever order gives the smallest arena: largest
    group first; the values largest first and then the steps' scratch largest first (each scratch then takes
    the room its one step leaves free); then, until the arena meets its lower bound (_peak), seeded shuffles of
    largest-first, each size scaled by a random factor in [0.5, 1.5]. resnet18's batch-4 pieces, stem and pool
    fused: 1.06× the bound largest-first, 1.04× values first, 1.00× from the 13th shuffle (6 of 200 reach it).
    The shuffles are deterministic and bounded (SHUFFLE_GROUPS placements of a group in all), and left out on
    lanes, whose overlap test is quadratic. The winner is placed again: each trial overwrites the offsets."""
    count = len(groups)
    orders = [sorted(range(count), key=lambda i: (-groups[i].size, groups[i].first)),
              sorted(range(count), key=lambda i: (groups[i].scratch, -groups[i].size, groups[i].first))]
    sized = [(_place_in_order(groups, before, order), order) for order in orders]
    best, best_order = min(sized, key=lambda pair: pair[0])
    bound = _peak(groups) if before is None else 0
    shuffle = random.Random(0)
    trials = min(SHUFFLES, SHUFFLE_GROUPS // max(1, count)) if before is None else 0   # lanes: quadratic checks
    for _ in range(trials):
        if best <= bound:
            break
        order = sorted(range(count), key=lambda i: -groups[i].size * shuffle.uniform(0.5, 1.5))
        total = _place_in_order(groups, before, order)
        if total < best:
            best, best_order = total, order
    return _place_in_order(groups, before, best_order)


def _peak(groups: list[Group]) -> int:
    """The most elements (aligned) alive at one step: no placement of one-step-at-a-time groups is smaller."""
    delta: dict[float, int] = {}
    for g in groups:
        span = g.size + (-g.size) % ALIGN
        delta[g.first] = delta.get(g.first, 0) + span
        if g.last != FOREVER:
            delta[g.last + 1] = delta.get(g.last + 1, 0) - span
    alive = peak = 0
    for step in sorted(delta):
        alive += delta[step]
        peak = max(peak, alive)
    return peak


def _place_in_order(groups: list[Group], before, order) -> int:
    """Offsets, group by group in ``order``, each at the lowest gap that fits among the overlapping groups
    placed."""
    placed: list[tuple[int, int]] = []          # (first, group index), sorted
    longest, total = 0, 0
    for index in order:
        g = groups[index]
        span = g.size + (-g.size) % ALIGN
        if before is None:                      # overlapping lifetimes: a placed group starting at most
            stop = len(placed) if g.last == FOREVER else bisect.bisect_right(placed, (g.last, math.inf))
            start = bisect.bisect_left(placed, (g.first - longest, -1))    # ``longest`` steps before
            others = [groups[i] for _, i in placed[start:stop] if groups[i].last >= g.first]
        else:
            others = [groups[i] for _, i in placed if _overlap(g, groups[i], before)]
        offset = 0
        for other in sorted(others, key=lambda o: o.offset):
            if other.offset - offset >= span:
                break
            offset = max(offset, other.offset + other.size + (-other.size) % ALIGN)
        g.offset = offset
        total = max(total, offset + span)
        bisect.insort(placed, (g.first, index))
        if g.last != FOREVER:
            longest = max(longest, int(g.last) - g.first)
        else:
            longest = math.inf
    return total


def _overlap(a: Group, b: Group, before) -> bool:
    """Whether a and b may be in use at the same time on lanes: unless every user of one finishes before the
    other's first writer starts."""
    done_before = (a.last != FOREVER and not a.users & ~before[b.first]) or \
                  (b.last != FOREVER and not b.users & ~before[a.first])
    return not done_before
