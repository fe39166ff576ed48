"""The pass manager: run the pipeline to a fixed point on a copy of the graph, hold every pass to its
contract, time and report it.

Levels follow onnxruntime's: 0 nothing, 1 cleanups and canonical forms (passes/canon_*.py: what the importer
maps one to one made the layer it computes), 2 fusions and folds that never grow MACs or parameters,
3 also folds that cut MACs while growing parameters (passes/cost.py). After every pass Graph.lint() must
hold, and the pass's records must agree with what the graph says it did (passes/contract.py); with
``verify=True`` every pass that changed the graph is also run on the same random inputs as the graph before
it (translation validation), and a difference beyond cnngraph.tolerance raises naming the pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from cnngraph.errors import CnnGraphError

from . import (
    canon_activation,
    canon_adaptive_pool,
    canon_layernorm,
    canon_linear,
    canon_pool_pad,
    canon_window_average,
    commute_reshape,
    constant_folding,
    cse,
    dead_code,
    fold_batchnorm,
    fold_branches,
    fold_conv,
    fold_conv_linear,
    fold_conv_transpose,
    fold_linear,
    fuse_activation,
    identity,
    reshape_merge,
)
from .base import OptimizeError, Pass, PassResult
from .contract import Fingerprint, Verifier, check_records
from .records import Refusal, Rewrite, as_refusal, as_rewrite

PIPELINE: list[Pass] = [identity.PASS, dead_code.PASS, constant_folding.PASS, canon_linear.PASS, canon_pool_pad.PASS,
                        canon_window_average.PASS, canon_layernorm.PASS, canon_adaptive_pool.PASS,
                        canon_activation.PASS, reshape_merge.PASS, cse.PASS,
                        fold_batchnorm.PASS, fold_branches.PASS, commute_reshape.PASS, fold_linear.PASS,
                        fold_conv.PASS, fold_conv_linear.PASS, fold_conv_transpose.PASS, fuse_activation.PASS]
MAX_ROUNDS = 10

__all__ = ["PIPELINE", "OptimizeError", "Report", "PassRun", "optimize", "register", "unregister"]


@dataclass
class PassRun:
    """One run of one pass: its records, its time, and the graph's size before and after."""
    name: str
    round: int
    seconds: float
    before: tuple[int, int, int]            # layers, MACs, parameters
    after: tuple[int, int, int]
    changed: bool                           # read from the graph, not from the records
    rewrites: list[Rewrite]
    refusals: list[Refusal]


@dataclass
class Report:
    """What optimize() did, pass by pass; str() gives a readable table with every rewrite and refusal."""
    level: int
    runs: list[PassRun] = field(default_factory=list)

    @property
    def rewrites(self) -> list[Rewrite]:
        return [r for run in self.runs for r in run.rewrites]

    @property
    def refusals(self) -> list[Refusal]:
        """What stopped a rewrite in the optimized graph: the refusals of the last round, which changed nothing
        (an earlier round's refusal may have been overcome since)."""
        last = max((run.round for run in self.runs), default=0)
        return [r for run in self.runs if run.round == last for r in run.refusals]

    def __str__(self) -> str:
        rows = [("pass", "round", "ms", "layers", "MACs", "params", "rewrites")]
        for r in self.runs:
            if r.changed or r.round == 1:
                rows.append((r.name, str(r.round), f"{r.seconds * 1e3:.1f}",
                             *(_change(a, b) for a, b in zip(r.before, r.after)), str(len(r.rewrites))))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"  {record}" for record in self.rewrites]
        if self.refusals:
            lines.append("not done:")
            lines += [f"  {record}" for record in self.refusals]
        return "\n".join(lines)


def _change(before: int, after: int) -> str:
    return str(before) if before == after else f"{before} -> {after}"


def _stats(graph) -> tuple[int, int, int]:
    return len(graph.layers()), graph.macs(), graph.param_count()


def register(new_pass: Pass, before: str | None = None) -> None:
    """Add a pass of your own to the pipeline (at the end, or before the pass named ``before``); it then runs
    under optimize() like the built-in ones: at its level and above, linted after, held to the contract,
    verified with verify=True, reported, and disabled by name."""
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


def _disabled(disable) -> set[str]:
    """The names in ``disable``: one name, or an iterable of names."""
    names = {disable} if isinstance(disable, str) else set(disable or ())
    unknown = sorted(names - set(passes_by_name()))
    if unknown:
        raise ValueError(f"unknown passes {unknown}; passes: {', '.join(passes_by_name())}")
    return names


def optimize(graph, level: int = 2, verify: bool = False, disable=(), seed: int = 0):
    """A new optimized graph (``graph`` is untouched) with the report as ``.report``; ``disable`` is a pass
    name or a list of them."""
    if isinstance(level, bool) or level not in (0, 1, 2, 3):
        raise ValueError(f"level must be 0, 1, 2 or 3, got {level!r}")
    disabled = _disabled(disable)
    work = graph.copy()
    report = Report(level)
    active = [p for p in PIPELINE if p.level <= level and p.name not in disabled]
    verifier = Verifier(work, seed) if verify and active else None
    ran: list[str] = []
    fingerprint, stats = Fingerprint(work), _stats(work)
    for round_number in range(1, MAX_ROUNDS + 1):
        changed_by = []
        for step in active:
            start = time.perf_counter()
            try:
                result = step.run(work, level)
                after = Fingerprint(work)
                changed = after != fingerprint
                if changed:             # an unchanged graph is the one already linted
                    work.lint()
            except CnnGraphError as error:
                raise OptimizeError(f"pass {step.name} failed (after {', '.join(ran) or 'no other pass'}): "
                                    f"{error}") from error
            seconds = time.perf_counter() - start
            ran.append(step.name)
            result = _records(result, step.name)
            if changed and verifier is not None:
                verifier.check(work, f"pass {step.name}")
            check_records(step.name, changed, result)
            before, fingerprint = stats, after
            stats = _stats(work) if changed else stats
            report.runs.append(PassRun(step.name, round_number, seconds, before, stats, changed,
                                       result.rewrites, result.refusals))
            if changed:
                changed_by.append(step.name)
        if not changed_by:
            work.report = report
            return work
    raise OptimizeError(f"the passes did not settle after {MAX_ROUNDS} rounds; still changing the graph: "
                        f"{', '.join(dict.fromkeys(changed_by))}; last rewrite: {report.rewrites[-1]}")


def _records(result, name: str) -> PassResult:
    """The pass's result with every entry a record (a pass of your own may record plain strings)."""
    if not isinstance(result, PassResult):
        raise OptimizeError(f"pass {name} returned {type(result).__name__}, not a PassResult")
    return PassResult(result.graph, [as_rewrite(r, name) for r in result.rewrites],
                      [as_refusal(r, name) for r in result.refusals])
