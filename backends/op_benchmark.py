"""Time single layers on the NumPy backend against onnxruntime on our export of the same one-layer graph.

    python -m cnngraph.backends.op_benchmark                  # every case, 2 threads (as users run onnxruntime)
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m cnngraph.backends.op_benchmark --threads 1 --cpu gelu upsample

A whole-network figure (benchmark.py) hides which kernel is slow; this one isolates them at realistic sizes.
Protocol as in benchmark.py (shared/BENCHMARKING.md): each side timed in its own block (pause, one untimed
run, timed runs), blocks alternating A B B A …, the ratio the median over pairs of the block medians. With
``--threads 1`` onnxruntime gets one intra-op thread and the NumPy backend one BLAS thread and no batch
split: on a shared machine the one-thread ratio is the steadier figure while developing a kernel.
``--cpu`` (with ``--threads 1``, where onnxruntime runs in the calling thread) times the calling thread's CPU
time instead of the wall clock, over the same alternating blocks: on a machine shared by more runnable
processes than cores, a run of a few ms is preempted more often than one of 1 ms and its wall-clock median
inflates (3 ms of CPU measured as 11 ms of wall time at load 6 on 2 cores); its CPU time does not.
The goal is 1.5× onnxruntime's time for element-wise layers (one pass over memory each side), 2× for the rest.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np

from .benchmark import alternate, ort_session

ELEMENTWISE_GOAL, OTHER_GOAL = 1.5, 2.0


def _cases():
    """(name, layer, input shape with the batch first, element-wise?) of every benchmarked layer."""
    import cnngraph as cg
    return [
        ("GELU", cg.GELU(), (8, 768, 196), True),
        ("GELU", cg.GELU(), (1, 64, 56, 56), True),
        ("GELU tanh", cg.GELU(approximate="tanh"), (8, 768, 196), True),
        ("Erf", cg.Erf(), (8, 768, 196), True),
        ("SiLU", cg.SiLU(), (8, 64, 56, 56), True),
        ("Mish", cg.Mish(), (8, 64, 56, 56), True),
        ("Hardswish", cg.Hardswish(), (8, 64, 56, 56), True),
        ("ELU", cg.ELU(), (8, 64, 56, 56), True),
        ("Upsample nearest ×2", cg.Upsample(scale_factor=2), (1, 64, 56, 56), False),
        ("Upsample bilinear ×2", cg.Upsample(scale_factor=2, mode="bilinear"), (1, 64, 56, 56), False),
        ("Conv1d 64→64 k3", cg.Conv1d(64, 64, 3, padding=1), (8, 64, 1000), False),
        ("Depthwise 3×3 144ch", cg.Conv2d(144, 144, 3, padding=1, groups=144), (1, 144, 56, 56), False),
        ("Depthwise 3×3/2 96ch", cg.Conv2d(96, 96, 3, stride=2, padding=1, groups=96), (1, 96, 112, 112), False),
        ("ConvTranspose2d 64→32 k4 s2", cg.ConvTranspose2d(64, 32, 4, stride=2, padding=1), (1, 64, 28, 28), False),
        ("LayerNorm 768", cg.LayerNorm(768), (8, 196, 768), False),
        ("InstanceNorm2d 64", cg.InstanceNorm2d(64, affine=True), (8, 64, 56, 56), False),
        ("GroupNorm 32×64", cg.GroupNorm(32, 64), (8, 64, 56, 56), False),
    ]


class CpuTimed:
    """``run`` recording the CPU time of this thread per call; ``block_medians`` regroups the calls into the
    blocks benchmark.time_block made (one untimed call, then ``repeats`` timed ones) and takes their medians."""

    def __init__(self, run):
        self.run, self.times = run, []

    def __call__(self):
        start = time.thread_time()
        self.run()
        self.times.append(time.thread_time() - start)

    def block_medians(self, repeats: int) -> list[float]:
        size = repeats + 1
        return [statistics.median(self.times[i + 1:i + size]) for i in range(0, len(self.times), size)]


@contextmanager
def numpy_threads(threads: int):
    """The NumPy backend on ``threads`` cores: BLAS threads and batch pieces (batch_split.WORKERS)."""
    from threadpoolctl import threadpool_limits

    from .numpy_backend import batch_split
    saved = batch_split.WORKERS
    batch_split.WORKERS = min(saved, threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        batch_split.WORKERS = saved


def compare_layer(layer, shape, threads: int, pairs: int, repeats: int, cpu: bool = False) -> dict:
    """The one-layer graph of ``layer`` on a random input of ``shape``: block medians (wall clock, or this
    thread's CPU time), ratio, agreement."""
    import cnngraph as cg
    from cnngraph.tolerance import tolerance_violation

    from .numpy_backend import compile_graph
    graph = cg.Sequential(layer).to_graph(input_shape=(None, *shape[1:]))
    (input_name,) = graph.inputs
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    session = ort_session(cg.export_onnx(graph), threads=threads)
    feed = {input_name: x}
    expected = session.run(None, feed)[0]
    executor = compile_graph(graph)
    with numpy_threads(threads):
        got = executor(x)
        ours, theirs = (lambda: executor(x)), (lambda: session.run(None, feed))
        if cpu:
            ours, theirs = CpuTimed(ours), CpuTimed(theirs)
        numpy_times, ort_times = alternate(ours, theirs, pairs, repeats)
        if cpu:
            numpy_times, ort_times = ours.block_medians(repeats), theirs.block_medians(repeats)
    return {
        "numpy_ms": 1e3 * statistics.median(numpy_times),
        "ort_ms": 1e3 * statistics.median(ort_times),
        "ratio": statistics.median(a / b for a, b in zip(numpy_times, ort_times)),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "within_tolerance": tolerance_violation(got, expected) == 0.0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="run the cases whose name contains one of these words (any case)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads, NumPy BLAS threads")
    parser.add_argument("--pairs", type=int, default=5, help="A/B block pairs")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per block")
    parser.add_argument("--cpu", action="store_true", help="CPU time of the calling thread (needs --threads 1)")
    args = parser.parse_args(argv)
    if args.cpu and args.threads != 1:
        parser.error("--cpu measures the calling thread only: use it with --threads 1")

    cases = [c for c in _cases() if not args.only or any(w.lower() in c[0].lower() for w in args.only)]
    clock = "CPU time of this thread" if args.cpu else "wall clock"
    print(f"threads {args.threads}; {clock}; medians of {args.pairs} alternating block pairs × {args.repeats} runs")
    print(f"{'layer':28} {'input':>16} {'numpy ms':>9} {'ort ms':>8} {'numpy/ort':>9} {'goal':>5} {'':7} "
          f"{'max |diff|':>10}")
    missed = 0
    for name, layer, shape, elementwise in cases:
        r = compare_layer(layer, shape, args.threads, args.pairs, args.repeats, args.cpu)
        goal = ELEMENTWISE_GOAL if elementwise else OTHER_GOAL
        met = r["ratio"] <= goal
        missed += not met
        print(f"{name:28} {'×'.join(map(str, shape)):>16} {r['numpy_ms']:>9.2f} {r['ort_ms']:>8.2f} "
              f"{r['ratio']:>9.2f} {goal:>5.1f} {'met' if met else 'NOT MET':7} {r['max_abs_diff']:>10.2e}"
              + ("" if r["within_tolerance"] else "  OUTPUTS DIFFER"), flush=True)
    print(f"{len(cases) - missed} of {len(cases)} within their goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
