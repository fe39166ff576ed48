"""What running batch pieces as threads costs: one piece alone, two pieces as threads, two as processes.

    python -m cnngraph.backends.piece_benchmark resnet18 --batch 4

A batch whose samples never meet runs as one piece per core, each in a thread of its own (batch_split.py).
The threads share Python's lock: every NumPy call a piece makes releases it and takes it back, and when the
other piece holds it the handing over costs a wake-up. This benchmark separates that cost from the machine's:
  - alone: one piece, on one thread (BLAS too), nothing else running;
  - threads: two pieces at once in one process, as the Executor runs them (its own batch split off);
  - processes: two pieces at once in two processes, started together, so that they share the cores, caches
    and memory bandwidth as threads would, but not the lock.
Each figure is the median time of one piece's run. If "processes" is close to "alone" and "threads" is not,
the difference is the lock.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

_CHILD = "--child"


def _piece_times(model: str, batch: int, runs: int, start_at: float | None = None) -> list[float]:
    """Seconds per run of one piece on one thread (BLAS too), optionally from wall-clock time ``start_at``."""
    import threadpoolctl

    import cnngraph as cg
    from cnngraph.backends.numpy_backend import Executor, batch_split

    graph = cg.optimize(cg.models.MODELS[model]())
    x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
    workers, batch_split.WORKERS = batch_split.WORKERS, 1      # one piece: no split of its own
    try:
        with threadpoolctl.threadpool_limits(1):
            executor = Executor(graph)
            executor(x)
            executor(x)
            if start_at is not None:
                time.sleep(max(0.0, start_at - time.time()))
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                executor(x)
                times.append(time.perf_counter() - start)
    finally:
        batch_split.WORKERS = workers
    return times


def _threads_times(model: str, batch: int, runs: int) -> list[float]:
    """Seconds per run of two pieces of ``batch`` each, as the Executor runs them: one thread per piece."""
    import cnngraph as cg
    from cnngraph.backends.numpy_backend import Executor

    graph = cg.optimize(cg.models.MODELS[model]())
    x = np.random.default_rng(0).random((2 * batch, 3, 224, 224), dtype=np.float32)
    executor = Executor(graph)
    executor(x)
    executor(x)
    if len(executor._plans) != 2:
        raise RuntimeError(f"the Executor ran {len(executor._plans)} piece(s), not 2: too little work to cut")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        executor(x)
        times.append(time.perf_counter() - start)
    return times


def _processes_times(model: str, batch: int, runs: int) -> list[float]:
    """Per-run seconds of two single-piece processes started together (each prints its median)."""
    start_at = time.time() + 15.0                    # both have loaded and compiled by then
    children = [subprocess.Popen([sys.executable, "-m", "cnngraph.backends.piece_benchmark", _CHILD, model,
                                  str(batch), str(runs), str(start_at)], stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
    medians = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"a piece process failed with status {child.returncode}")
        medians.append(float(out.split()[-1]))
    return medians


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == _CHILD:
        model, batch, runs, start_at = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        print(statistics.median(_piece_times(model, batch, runs, start_at)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="resnet18")
    parser.add_argument("--batch", type=int, default=4, help="images per piece (two pieces run at once)")
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args(argv)
    alone = statistics.median(_piece_times(args.model, args.batch, args.runs))
    threads = statistics.median(_threads_times(args.model, args.batch, args.runs))
    processes = max(_processes_times(args.model, args.batch, args.runs))
    print(f"{args.model}, pieces of {args.batch}, medians of {args.runs} runs (ms):")
    print(f"  one piece alone, one thread           {alone * 1e3:8.1f}")
    print(f"  two pieces as threads (the Executor)  {threads * 1e3:8.1f}  ({threads / alone:.2f}× alone)")
    print(f"  two pieces as processes (slower one)  {processes * 1e3:8.1f}  ({processes / alone:.2f}× alone)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
