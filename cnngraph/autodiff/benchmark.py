"""One training step against the forward pass alone, and the step's peak memory.

    python -m cnngraph.autodiff.benchmark [MODEL] [--size 32] [--batch 32]

The training graph (forward in training mode, cross-entropy, backward to every parameter) runs in the NumPy
backend as the Trainer runs it (gradients.run_training: BLAS on one thread, the plan's steps spread over the
cores, schedule.py); the forward pass is the inference graph on the same batch, as cg.run runs it (cut into one
batch piece per core). The step is also timed on one lane (every step in turn, one core), for comparison.
Each side is timed in blocks (a pause, one untimed run, then timed runs; blocks alternate A B C, C B A, …):
the figures are medians of block medians, the ratio the median of the per-round ratios. The peak is the
most memory NumPy held at once during a step of a fresh plan (its activation buffers, scratch arenas,
gradients and temporaries; tracemalloc, which NumPy reports its arrays to), beyond the parameters.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import numpy as np

GOAL = 3.5            # issue 12: a training step at most 3.5 times the forward pass
BLOCK_PAUSE_S = 0.2


def block_ms(action, repeats: int) -> float:
    time.sleep(BLOCK_PAUSE_S)
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(model: str = "resnet18", size: int = 32, batch: int = 32, rounds: int = 3, repeats: int = 5) -> dict:
    import cnngraph as cg
    from cnngraph.backends.numpy_backend import batch_split, compile_graph, plan

    from .backward import build
    from .gradients import run_training
    graph = cg.models.MODELS[model](input_shape=(None, 3, size, size), num_classes=10)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    target = (np.arange(batch) % 10).astype(np.float32)
    training = build(graph, "cross_entropy", train=True, wrt_inputs=False).graph
    one_lane = training.copy()

    def sequential_step():
        saved, plan.MIN_LANE_MACS = plan.MIN_LANE_MACS, float("inf")
        try:
            run_training(one_lane, x, target)
        finally:
            plan.MIN_LANE_MACS = saved

    sides = {"forward": lambda: cg.run(graph, x), "step": lambda: run_training(training, x, target),
             "one_lane": sequential_step}
    times: dict[str, list] = {name: [] for name in sides}
    for index in range(rounds):
        for name in (list(sides) if index % 2 == 0 else list(sides)[::-1]):
            times[name].append(block_ms(sides[name], repeats))
    pieces = len(batch_split.cuts(batch, graph.macs())) if batch_split.batch_symbol(graph) else 1
    executor = compile_graph(training)
    lanes = max(p.lanes for p in executor._plans.values())

    fresh = training.copy()                  # compiled anew: its plan's buffers count too (parameters are shared)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run_training(fresh, x, target)           # the first run: sequential and timed, then spread over the lanes
    tracemalloc.reset_peak()
    run_training(fresh, x, target)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    median = statistics.median
    return {"forward_ms": median(times["forward"]), "step_ms": median(times["step"]),
            "one_lane_ms": median(times["one_lane"]),
            "ratio": median(s / f for s, f in zip(times["step"], times["forward"])),
            "one_lane_ratio": median(s / f for s, f in zip(times["one_lane"], times["forward"])),
            "peak_mb": peak / 2**20, "pieces": pieces, "lanes": lanes, "workers": batch_split.WORKERS}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="a training step against the forward pass")
    parser.add_argument("model", nargs="?", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of blocks, one block per side each")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per block")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    r = measure(args.model, args.size, args.batch, args.rounds, args.repeats)
    load = f", load {before:.1f} before the run" if before is not None else ""
    print(f"{args.model} at {args.size}×{args.size}, batch {args.batch} ({r['workers']} cores{load})")
    if before is not None and before > 0.5:
        print("  note: other processes are running; both sides use every core, so the ratio is only meaningful "
              "on a quiet machine")
    print(f"  forward (cg.run: {r['pieces']} batch piece(s), one thread each, BLAS on 1 thread per piece): "
          f"{r['forward_ms']:.0f} ms")
    print(f"  training step (forward + loss + backward, one plan on {r['lanes']} lane(s), one thread each, "
          f"BLAS on 1 thread): {r['step_ms']:.0f} ms, {r['ratio']:.2f}× the forward")
    print(f"  training step on 1 lane (one thread, BLAS on 1 thread): {r['one_lane_ms']:.0f} ms, "
          f"{r['one_lane_ratio']:.2f}× the forward")
    print(f"  goal ≤ {GOAL}× the forward: {'met' if r['ratio'] <= GOAL else 'not met'}")
    print(f"  peak memory of a step: {r['peak_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
