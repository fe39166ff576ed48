"""``cnngraph demo``: the story in one command. The seed's three networks and resnet18 are linted, optimized
with verification, run in the NumPy backend and onnxruntime before and after, exported as ONNX and drawn,
then a short training run (train_command.demo_training)."""
from __future__ import annotations

import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.table import Table

DEMO_MODELS = ("seed_m1", "seed_m2", "seed_m3", "resnet18")
DEMO_PAIRS, MIN_PAIRS, PAIRS_BUDGET_S = 7, 3, 3.0     # timed pairs in the demo: at most, at least, seconds
MIN_TIMED_S = 0.005


def demo(args, console) -> int:
    """The story in one command: the seed's three networks and resnet18 are linted, optimized with
    verification, run in the NumPy backend and onnxruntime before and after, exported as ONNX and drawn."""
    import cnngraph as cg
    from cnngraph.backends.benchmark import ort_session

    from .cli import as_tuple, random_inputs
    from .draw import folded_notes, render, to_dot

    started = time.perf_counter()
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"cnngraph {cg.__version__} demo, batch 1; ONNX files and pictures in {out_dir}/"
                  + ("" if shutil.which("dot") else " (DOT only: install Graphviz for SVG)") + "\n")
    table = Table(title="before -> after optimization (level 2, every pass verified on random inputs; speed-ups: "
                        f"median of {MIN_PAIRS}-{DEMO_PAIRS} timed pairs)")
    for column in ("model", "lint", "what the passes did", "MACs", "params", "NumPy speed-up", "ORT speed-up",
                   "max diff vs ORT"):
        table.add_column(column, justify="left" if column in ("model", "what the passes did") else "right")
    for name in DEMO_MODELS:
        graph = cg.models.MODELS[name]()
        findings = cg.lint(graph)
        for finding in findings:
            console.print(f"lint {name}: {finding}")
        optimized = cg.optimize(graph, verify=True)
        arrays = random_inputs(graph, 1)
        feeds = dict(zip(graph.inputs, arrays))
        exports = [cg.export_onnx(g, out_dir / f"{name}{suffix}.onnx") for g, suffix in
                   ((graph, ""), (optimized, ".optimized"))]
        pictures = (".dot", ".svg") if shutil.which("dot") else (".dot",)      # SVG when Graphviz is there
        for picture in pictures:
            render(to_dot(graph), out_dir / f"{name}{picture}")
            render(to_dot(optimized, folded_notes(optimized.report)), out_dir / f"{name}.optimized{picture}")
        numpy_speedup = paired_speedup(lambda: cg.run(graph, *arrays), lambda: cg.run(optimized, *arrays))  # noqa: B023
        sessions = [ort_session(model, spinning=False) for model in exports]
        ort_speedup = paired_speedup(lambda: sessions[0].run(None, feeds),  # noqa: B023 (called at once)
                                     lambda: sessions[1].run(None, feeds))  # noqa: B023
        expected = sessions[0].run(None, feeds)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(as_tuple(cg.run(optimized, *arrays)), expected))
        table.add_row(name, str(len(findings)), _rewrite_kinds(optimized.report) or "nothing to do",
                      _compact_change(graph.macs(), optimized.macs()),
                      _compact_change(graph.param_count(), optimized.param_count()),
                      f"{numpy_speedup:.2f}×", f"{ort_speedup:.2f}×", f"{diff:.1e}")
    console.print()
    console.print(table)
    console.print("\nseed_m2 is seed_m1 without its ReLU: two 3×3 convolutions with nothing between them are one "
                  "linear map, and cnngraph folds them into the single 5×5 convolution of seed_m3. seed_m1 keeps "
                  "both: its ReLU makes it more than one linear map.")
    from .train_command import demo_training
    demo_training(console)
    console.print(f"\ndemo done in {time.perf_counter() - started:.1f} s")
    return 0


def paired_speedup(before, after, pairs: int = DEMO_PAIRS) -> float:
    """before's time over after's, the median over pairs timed back to back (A B, B A, …): BENCHMARKING.md's
    protocol for like against like (both NumPy, or both onnxruntime without spinning threads), which needs no
    pauses. One untimed call each first; then ``pairs`` pairs, or MIN_PAIRS once PAIRS_BUDGET_S has passed (a
    slow model on a busy machine). Each side of a pair is the median of the calls made in MIN_TIMED_S (one
    call for a slow model), so one stalled call cannot decide it."""
    before(), after()
    ratios, start = [], time.perf_counter()
    for index in range(pairs):
        if index >= MIN_PAIRS and time.perf_counter() - start > PAIRS_BUDGET_S:
            break                                        # a slow model on a busy machine: enough pairs
        medians = {run: _median_call(run) for run in ((before, after) if index % 2 == 0 else (after, before))}
        ratios.append(medians[before] / medians[after])
    return statistics.median(ratios)


def _median_call(run) -> float:
    times, start = [], time.perf_counter()
    while not times or times[-1] - start < MIN_TIMED_S:
        run()
        times.append(time.perf_counter())
    return float(statistics.median(np.diff([start, *times])))


def _compact(number: int, digits: int = 3) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= limit:
            return f"{number / limit:.{digits}g}{suffix}"
    return str(number)


def _compact_change(before: int, after: int) -> str:
    if before == after:
        return _compact(before)
    digits = next((d for d in (3, 4, 5, 6) if _compact(before, d) != _compact(after, d)), 7)   # enough to differ
    return f"{_compact(before, digits)} -> {_compact(after, digits)}"


REWRITE_KINDS = {"fold_batchnorm": "BatchNorm fold", "fuse_activation": "activation fusion", "fold_linear": "linear fold",
                 "fold_conv": "linear fold", "fold_branches": "linear fold"}


def _rewrite_kinds(report) -> str:
    """"1 linear fold, 2 activation fusions" from the report's records, by the pass that made them."""
    counts = Counter()
    for run in report.runs:
        counts[REWRITE_KINDS.get(run.name, "cleanup")] += len(run.rewrites)
    return ", ".join(f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in counts.items() if count)
