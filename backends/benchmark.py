"""Time the NumPy backend against onnxruntime on the same model, in the same run.

    python -m cnngraph.backends.benchmark resnet18 --batch 8 1

Protocol (shared/BENCHMARKING.md): onnxruntime as its users run it (ORT_ENABLE_ALL, 2 intra-op threads,
spinning on); because its spinning threads steal the cores from whatever runs next, each side is timed in
its own block (pause, one untimed run, then timed runs), blocks alternate A B B A …, and the figure quoted
is the median over pairs of the ratio of block medians. The float32 matmul peak is measured in the same run.
GFLOP/s is the model's direct-convolution work (2 × multiply-adds) over the time, for both sides: Winograd
convolutions do fewer multiplications, so the NumPy figure is an effective rate and can pass the peak.
Memory (issue 13 §3): the plan's arena of reused memory for activations and the kernels' temporaries (summed
over the batch pieces that run at once) against its lower bound, the largest over steps of the bytes of the
values that must be live at that step (for a chain, the two largest adjacent activations) plus what the step
needs of scratch (im2col columns, padded copies).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

BLOCK_PAUSE_S = 0.2
GOALS = {("resnet18", 8): 1.3, ("resnet18", 1): 1.8, ("mobilenet_v2", 1): 2.0}   # issue 13, at 224×224


def matmul_peak_gflops(size: int = 2048, runs: int = 7) -> float:
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def time_block(run, repeats: int) -> float:
    """Median seconds of ``repeats`` timed calls after a pause and one untimed call."""
    time.sleep(BLOCK_PAUSE_S)
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternate(run_a, run_b, pairs: int, repeats: int) -> tuple[list[float], list[float]]:
    """Block medians of A and B, timed in the order A B, B A, A B, …"""
    a_times, b_times = [], []
    for index in range(pairs):
        order = [(run_a, a_times), (run_b, b_times)]
        for run, sink in (order if index % 2 == 0 else order[::-1]):
            sink.append(time_block(run, repeats))
    return a_times, b_times


def ort_session(model, threads: int = 2, spinning: bool = True):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def compare_with_onnxruntime(graph, batch: int, pairs: int = 5, repeats: int = 5) -> dict:
    """NumPy backend and onnxruntime on ``graph`` at ``batch``: medians, ratio, GFLOP/s, largest difference."""
    import cnngraph as cg
    from cnngraph.tolerance import tolerance_violation

    from .numpy_backend.inputs import concrete_shape

    (input_name,) = graph.inputs
    shape = concrete_shape(graph.type_of(input_name).shape, {"N": batch})
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    session = ort_session(cg.export_onnx(graph))
    expected = session.run(None, {input_name: x})[0]
    got = cg.run(graph, x)
    numpy_times, ort_times = alternate(lambda: cg.run(graph, x), lambda: session.run(None, {input_name: x}),
                                       pairs, repeats)
    ratios = [a / b for a, b in zip(numpy_times, ort_times)]
    flops = 2 * graph.macs() * batch
    return {
        "batch": batch,
        "numpy_ms": 1e3 * statistics.median(numpy_times),
        "ort_ms": 1e3 * statistics.median(ort_times),
        "ratio": statistics.median(ratios),
        "numpy_gflops": flops / statistics.median(numpy_times) / 1e9,
        "ort_gflops": flops / statistics.median(ort_times) / 1e9,
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "within_tolerance": tolerance_violation(got, expected) == 0.0,
    }


def plan_memory_line(graph, batch: int) -> str:
    """The activation arena of the plans one run at ``batch`` uses, against the lower bound."""
    from .numpy_backend.inputs import concrete_shape
    from .numpy_backend.memory import plan_memory
    from .numpy_backend.plan import Executor

    executor = Executor(graph)
    executor(*[np.zeros(concrete_shape(graph.type_of(name).shape, {"N": batch}), np.float32)
               for name in graph.inputs])
    found = [plan_memory(plan) for plan in executor._plans.values()]
    arena, live, bound = (sum(getattr(m, key) for m in found) for key in ("arena", "live", "bound"))
    mib = 2 ** 20
    return (f"{'':14} {batch:>5} memory ({len(found)} plan(s)): activation arena {arena / mib:.1f} MiB (values and "
            f"scratch), lower bound {bound / mib:.1f} MiB (live values {live / mib:.1f} + the step's scratch): "
            f"{arena / max(bound, 1):.2f}×, goal ≤ bound: {'met' if arena <= bound else 'not met'}")


def main(argv=None) -> int:
    from cnngraph import models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["resnet18"], help=f"built-in models: {', '.join(models.MODELS)}")
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--pairs", type=int, default=5, help="A/B block pairs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per block")
    args = parser.parse_args(argv)

    forced = {k: v for k, v in os.environ.items() if k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if forced:
        print(f"note: {forced} forces an older OpenBLAS kernel; unset both to measure this CPU's own")
    print(f"float32 matmul peak (2048², NumPy BLAS): {matmul_peak_gflops():.0f} GFLOP/s")
    print(f"{'model':14} {'batch':>5} {'numpy ms':>9} {'ort ms':>8} {'numpy/ort':>9} "
          f"{'numpy GFLOP/s':>13} {'ort GFLOP/s':>11} {'max |diff|':>10}")
    for name in args.models:
        build = models.MODELS[name]
        for batch in args.batch:
            graph = build(input_shape=(None, 3, args.size, args.size)) if name not in ("lenet5",) else build()
            r = compare_with_onnxruntime(graph, batch, args.pairs, args.repeats)
            print(f"{name:14} {batch:>5} {r['numpy_ms']:>9.1f} {r['ort_ms']:>8.1f} {r['ratio']:>9.2f} "
                  f"{r['numpy_gflops']:>13.0f} {r['ort_gflops']:>11.0f} {r['max_abs_diff']:>10.2e}"
                  + ("" if r["within_tolerance"] else "  OUTPUTS DIFFER"))
            goal = GOALS.get((name, batch)) if args.size == 224 else None
            if goal is not None:
                print(f"goal: {name} b{batch} ≤ {goal}×: {'met' if r['ratio'] <= goal else 'not met'}")
            print(plan_memory_line(graph, batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
