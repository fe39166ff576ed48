"""The pass manager: run the pipeline to a fixed point on a copy of the graph, prove each step, report.

Levels follow onnxruntime's: 0 nothing, 1 cleanups, 2 fusions and folds that never grow MACs or parameters,
3 also folds that cut MACs while growing parameters. After every pass Graph.lint() must hold; with
``verify=True`` every pass is also checked by running the graph before and after it on the same random
inputs (translation validation), and a difference beyond cnngraph.tolerance raises naming the pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cnngraph.errors import CnnGraphError
from cnngraph.tolerance import tolerance_violation

from . import (
    commute_reshape,
    constant_folding,
    cse,
    dead_code,
    fold_batchnorm,
    fold_branches,
    fold_linear,
    fuse_activation,
    identity,
    reshape_merge,
)
from .base import Pass

PIPELINE: list[Pass] = [identity.PASS, dead_code.PASS, constant_folding.PASS, reshape_merge.PASS, cse.PASS,
                        fold_batchnorm.PASS, fold_branches.PASS, commute_reshape.PASS, fold_linear.PASS,
                        fuse_activation.PASS]
MAX_ROUNDS = 10
VERIFY_BATCH = 2


class OptimizeError(CnnGraphError):
    """A pass broke the graph, changed its outputs, or the pipeline never settled."""


@dataclass
class PassRecord:
    name: str
    round: int
    seconds: float
    before: tuple[int, int, int]            # nodes, MACs, parameters
    after: tuple[int, int, int]
    rewrites: list[str]
    refusals: list[str]


@dataclass
class Report:
    """What optimize() did, pass by pass; str() gives a readable table."""
    level: int
    records: list[PassRecord] = field(default_factory=list)

    @property
    def rewrites(self) -> list[str]:
        return [r for record in self.records for r in record.rewrites]

    @property
    def refusals(self) -> list[str]:
        """Each refusal once (later rounds repeat what earlier ones refused)."""
        return list(dict.fromkeys(r for record in self.records for r in record.refusals))

    def __str__(self) -> str:
        rows = [("pass", "round", "ms", "nodes", "MACs", "params", "rewrites")]
        for r in self.records:
            if r.rewrites or r.round == 1:
                rows.append((r.name, str(r.round), f"{r.seconds * 1e3:.1f}", _change(r.before[0], r.after[0]),
                             _change(r.before[1], r.after[1]), _change(r.before[2], r.after[2]), str(len(r.rewrites))))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"  {text}" for text in self.rewrites]
        if self.refusals:
            lines.append("not done:")
            lines += [f"  {text}" for text in self.refusals]
        return "\n".join(lines)


def _change(before: int, after: int) -> str:
    return str(before) if before == after else f"{before} -> {after}"


def _stats(graph) -> tuple[int, int, int]:
    return len(graph.layers()), graph.macs(), graph.param_count()


def random_inputs(graph, rng) -> list[np.ndarray]:
    shapes = [[d if isinstance(d, int) else VERIFY_BATCH for d in graph.type_of(name).shape] for name in graph.inputs]
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def check_same_outputs(before, after, arrays, what: str) -> None:
    """Raise OptimizeError naming ``what`` and the first output that differs beyond the tolerance."""
    from cnngraph.backends.numpy_backend import run
    expected, got = run(before, *arrays), run(after, *arrays)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for name, a, b in zip(before.outputs, got, expected):
        violation = tolerance_violation(a, b)
        if violation > 0:
            raise OptimizeError(f"{what} changed output {name!r}: max difference {np.max(np.abs(a - b)):.3g} "
                                f"is {violation:.3g}× the float32 tolerance")


def register(new_pass: Pass, before: str | None = None) -> None:
    """Add a pass of your own to the pipeline (at the end, or before the pass named ``before``); it then runs
    under optimize() like the built-in ones: at its level and above, linted after, verified with verify=True,
    reported, and disabled by name."""
    if not isinstance(new_pass, Pass):
        raise TypeError(f"register() takes a passes.Pass, got {type(new_pass).__name__}")
    if new_pass.name in passes_by_name():
        raise ValueError(f"a pass named {new_pass.name!r} is already registered")
    names = [p.name for p in PIPELINE]
    if before is not None and before not in names:
        raise ValueError(f"no pass named {before!r}; passes: {', '.join(names)}")
    PIPELINE.insert(names.index(before) if before else len(PIPELINE), new_pass)


def unregister(name: str) -> None:
    PIPELINE[:] = [p for p in PIPELINE if p.name != name]


def passes_by_name() -> dict[str, Pass]:
    return {p.name: p for p in PIPELINE}


def optimize(graph, level: int = 2, verify: bool = False, disable=(), seed: int = 0):
    """A new optimized graph (``graph`` is untouched) with the report as ``.report``."""
    if isinstance(level, bool) or level not in (0, 1, 2, 3):
        raise ValueError(f"level must be 0, 1, 2 or 3, got {level!r}")
    unknown = sorted(set(disable) - set(passes_by_name()))
    if unknown:
        raise ValueError(f"unknown passes {unknown}; passes: {', '.join(passes_by_name())}")
    work = graph.copy()
    report = Report(level)
    active = [p for p in PIPELINE if p.level <= level and p.name not in disable]
    arrays = random_inputs(graph, np.random.default_rng(seed)) if verify else None
    ran: list[str] = []
    for round_number in range(1, MAX_ROUNDS + 1):
        changed = False
        for step in active:
            before = work.copy() if verify else None
            stats = _stats(work)
            start = time.perf_counter()
            try:
                result = step.run(work, level)
                work.lint()
            except CnnGraphError as error:
                raise OptimizeError(f"pass {step.name} failed (after {', '.join(ran) or 'no other pass'}): "
                                    f"{error}") from error
            seconds = time.perf_counter() - start
            ran.append(step.name)
            if verify and result.changed:
                check_same_outputs(before, work, arrays, f"pass {step.name}")
            report.records.append(PassRecord(step.name, round_number, seconds, stats, _stats(work),
                                             result.rewrites, result.refusals))
            changed |= result.changed
        if not changed:
            work.report = report
            return work
    raise OptimizeError(f"the passes did not settle after {MAX_ROUNDS} rounds: {', '.join(report.rewrites[-5:])}")
