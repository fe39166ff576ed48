"""Standing worker threads that take a task with one lock release and hand it back with another.

A batch-1 run hands work to the other core some 30 times (batch_split.in_parallel: one hand-off per big
kernel). Through a ThreadPoolExecutor a hand-off cost 99 µs on the 2-core VM (a Future, its Condition, a
queue, and waking a thread whose core had gone idle); two plain locks used as signals, one released to start
a worker and one to collect it, cost 9–13 µs (threading.Semaphore, a Condition in Python, cost 131). A team
serves one caller at a time: a second caller (another thread's run, or a task that itself splits) does not
wait for it and gets None from ``claim`` (batch_split.in_parallel then runs its tasks itself).
"""
from __future__ import annotations

import os
import threading


class _Worker:
    def __init__(self, name: str):
        self.start, self.done = threading.Lock(), threading.Lock()     # held: released to signal, by the other side
        self.start.acquire()
        self.done.acquire()
        self.task = self.result = self.error = None
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            self.start.acquire()
            try:
                self.result, self.error = self.task(), None
            except BaseException as error:           # re-raised in the caller's thread
                self.result, self.error = None, error
            self.task = None
            self.done.release()


class Team:
    """``size`` standing workers; ``run(tasks)`` runs the first task in the caller's thread and the others
    on the workers, and returns the results in order, re-raising the first failure."""

    def __init__(self, size: int, name: str):
        self.workers = [_Worker(f"{name}-{index}") for index in range(size)]
        self.busy = threading.Lock()

    def claim(self, count: int):
        """The team, reserved for one ``run`` of ``count`` + 1 tasks; None when it is in use or too small."""
        if count > len(self.workers) or not self.busy.acquire(blocking=False):
            return None
        return self

    def run(self, tasks) -> list:
        """Run the claimed team on ``tasks`` and release it. Should the caller be interrupted while a worker
        still runs (Ctrl-C), the team stays claimed for good: later callers run their tasks themselves rather than use
        a worker whose last task may still be running."""
        helpers = self.workers[:len(tasks) - 1]
        for worker, task in zip(helpers, tasks[1:]):
            worker.task = task
            worker.start.release()
        try:
            first = tasks[0]()
        finally:
            for worker in helpers:
                worker.done.acquire()
            outcomes = [(worker.result, worker.error) for worker in helpers]
            for worker in helpers:
                worker.result = worker.error = None
            self.busy.release()
        for _, error in outcomes:
            if error is not None:
                raise error
        return [first, *(result for result, _ in outcomes)]


_teams: dict[int, Team] = {}


def team(size: int) -> Team:
    """The process's team of ``size`` workers, made on first use (a forked child makes its own)."""
    if size not in _teams:
        _teams[size] = Team(size, "cnngraph-part")
    return _teams[size]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_teams.clear)     # the parent's threads do not exist in the child
