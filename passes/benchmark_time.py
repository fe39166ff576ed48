"""The optimizer's own time against issue 13's goals, each printed with the measured median, the goal and whether
it is met (figures vary with the machine's load, which is printed too):

    python -m cnngraph.passes.benchmark_time [--quick]

1. light-zoo ResNet-50 optimized at level 2 in under 0.3 s, DenseNet-121 in under 0.5 s; beside them, as a
   yardstick, the time onnxruntime takes to build a session (ORT_ENABLE_ALL: its graph optimizations plus
   kernel preparation) on the same file;
2. cost linear in graph size: the CPU time per layer of synthetic graphs of 1k, 2k, 5k and 10k layers, and its
   growth from 1k to 10k, at most 1.5× (flat is linear). Three families: a chain (Linear, ReLU or Identity),
   a wide graph (residual blocks, DenseNet-like concatenations, parallel branches concatenated), and Linears
   with a reshape between them (commute_reshape adds a node that an earlier one reads: what made the pass
   quadratic before Graph kept its order locally).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cnngraph as cg

MODEL_GOALS = {"resnet50": 0.3, "densenet121": 0.5}         # seconds at level 2
SIZES = (1000, 2000, 5000, 10000)
MAX_GROWTH = 1.5


def light_path(model: str) -> str:
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{model}.onnx")


def chain(layers: int) -> cg.Graph:
    """Linear, then ReLU or Identity, repeated: the Identities go, the Linear pairs around them fold."""
    graph = cg.Graph(f"chain{layers}")
    x = graph.input("x", (None, 8))
    for index in range(layers // 2):
        x = graph.apply(cg.Linear(8, 8), x)
        x = graph.apply(cg.ReLU() if index % 2 else cg.Identity(), x)
    graph.output(x)
    return graph


def wide(layers: int, channels: int = 4) -> cg.Graph:
    """Blocks of 24 layers until ``layers``: a residual block (BatchNorms fold, ReLUs fuse), a dense block
    whose layers read the concatenation of all before them, and three parallel 1×1 branches concatenated."""
    graph = cg.Graph(f"wide{layers}")
    x = graph.input("x", (None, channels, 6, 6))
    c = channels
    while len(graph) - 1 < layers:
        y = graph.apply(cg.Conv2d(c, c, 3, padding=1, bias=False), x)
        y = graph.apply(cg.ReLU(), graph.apply(cg.BatchNorm2d(c), y))
        y = graph.apply(cg.BatchNorm2d(c), graph.apply(cg.Conv2d(c, c, 3, padding=1, bias=False), y))
        x = graph.apply(cg.ReLU(), graph.apply(cg.Add(), y, x))
        features = [x]
        for _ in range(3):
            z = graph.apply(cg.Concat(), *features) if len(features) > 1 else x
            z = graph.apply(cg.ReLU(), graph.apply(cg.BatchNorm2d(c * len(features)), z))
            features.append(graph.apply(cg.Conv2d(c * len(features), c, 1), z))
        x = graph.apply(cg.Conv2d(c * len(features), c, 1), graph.apply(cg.Concat(), *features))
        branches = [graph.apply(cg.Conv2d(c, c, 1), x) for _ in range(3)]
        x = graph.apply(cg.Conv2d(3 * c, c, 1), graph.apply(cg.Identity(), graph.apply(cg.Concat(), *branches)))
    graph.output(x)
    return graph


def linear_reshape(layers: int) -> cg.Graph:
    """Linear, Reshape, Linear, Reshape back, ReLU, repeated: each reshape moves after the Linears, which fold."""
    graph = cg.Graph(f"linear_reshape{layers}")
    x = graph.input("x", (None, 4, 8))
    while len(graph) - 1 < layers:
        x = graph.apply(cg.Linear(8, 8), x)
        x = graph.apply(cg.Reshape((0, 2, 2, 8)), x)
        x = graph.apply(cg.Linear(8, 8), x)
        x = graph.apply(cg.Reshape((0, 4, 8)), x)
        x = graph.apply(cg.ReLU(), x)
    graph.output(x)
    return graph


FAMILIES = {"chain": chain, "wide": wide, "linear_reshape": linear_reshape}


def median_seconds(run, repeats: int) -> tuple[float, float]:
    """Medians of wall-clock and CPU seconds (the CPU time moves less with the machine's load)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def model_rows(repeats: int) -> list[list[str]]:
    """[model, layers, optimize median, goal, met, onnxruntime session median] per light-zoo model."""
    import onnx

    from cnngraph.backends.benchmark import ort_session
    rows = []
    for model, goal in MODEL_GOALS.items():
        proto = onnx.load(light_path(model))
        graph = cg.load_onnx(proto)
        cg.optimize(graph)                                       # untimed: first calls fill caches
        seconds, cpu = median_seconds(lambda: cg.optimize(graph), repeats)    # noqa: B023 (called at once)
        ort, _ = median_seconds(lambda: ort_session(proto), repeats)          # noqa: B023
        rows.append([f"light-zoo {model}, level 2", str(len(graph.layers())), f"{seconds:.3f} s ({cpu:.3f} s)",
                     f"< {goal} s", verdict(seconds < goal), f"{ort:.3f} s"])
    return rows


def scaling_rows(sizes, repeats: int) -> list[list[str]]:
    """[family, per-layer µs at each size, growth first to last, goal, met] per family of synthetic graphs."""
    rows = []
    for family, make in FAMILIES.items():
        per_layer = []
        for index, size in enumerate(sizes):
            graph = make(size)
            if index == 0:
                cg.optimize(graph)                               # untimed
            runs = repeats * max(1, sizes[-1] // size)           # as many layers optimized at every size
            _, cpu = median_seconds(lambda: cg.optimize(graph), runs)         # noqa: B023 (called at once)
            per_layer.append(cpu / len(graph.layers()))
        growth = per_layer[-1] / per_layer[0]
        rows.append([family, *(f"{t * 1e6:.0f}" for t in per_layer), f"{growth:.2f}×", f"≤ {MAX_GROWTH}×",
                     verdict(growth <= MAX_GROWTH)])
    return rows


def report(quick: bool = False) -> str:
    from .benchmark import table
    repeats = 1 if quick else 5
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    sizes = SIZES
    lines = [f"optimizer time (load average {load}; medians of {repeats} run{'s' * (repeats > 1)}, of more on "
             f"the smaller synthetic graphs: {repeats} × 10k layers at every size)",
             table(["model", "layers", "optimize (CPU)", "goal", "", "onnxruntime session (yardstick)"],
                   model_rows(repeats)),
             "",
             f"CPU µs per layer at {', '.join(f'{s // 1000}k' for s in sizes)} layers, growth {sizes[0] // 1000}k "
             f"-> {sizes[-1] // 1000}k (flat: linear)",
             table(["graph", *(f"{s // 1000}k" for s in sizes), "growth", "goal", ""], scaling_rows(sizes, repeats))]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per model (and 10k layers per size) instead of five")
    print(report(parser.parse_args(argv).quick))


if __name__ == "__main__":
    main()
