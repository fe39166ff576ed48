"""One training step against the forward pass alone, and the step's peak memory.

    python -m cnngraph.autodiff.benchmark [MODEL] [--size 32] [--batch 32]

The training graph (forward in training mode, cross-entropy, backward to every parameter) runs in the NumPy
backend as the Trainer runs it (gradients.run_training: BLAS on one thread); the forward pass is the inference
graph on the same batch, as cg.run runs it (cut into one batch piece per core). Times are medians; the peak is the most
memory NumPy held at once during a first step (the plan's activation buffers, gradients and temporaries;
tracemalloc, which NumPy reports its arrays to), beyond the parameters and what was held before it.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np


def median_ms(action, repeats: int) -> float:
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(model: str = "resnet18", size: int = 32, batch: int = 32, repeats: int = 5) -> dict:
    import cnngraph as cg

    from .backward import build
    from .gradients import run_training
    graph = cg.models.MODELS[model](input_shape=(None, 3, size, size), num_classes=10)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    target = (np.arange(batch) % 10).astype(np.float32)
    training = build(graph, "cross_entropy", train=True, wrt_inputs=False).graph
    forward = median_ms(lambda: cg.run(graph, x), repeats)
    step = median_ms(lambda: run_training(training, x, target), repeats)
    fresh = training.copy()                  # compiled anew: its plan's buffers count too (parameters are shared)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run_training(fresh, x, target)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"forward_ms": forward, "step_ms": step, "ratio": step / forward, "peak_mb": peak / 2**20}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="a training step against the forward pass")
    parser.add_argument("model", nargs="?", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(args.model, args.size, args.batch, args.repeats)
    print(f"{args.model} at {args.size}×{args.size}, batch {args.batch}: forward {result['forward_ms']:.0f} ms, "
          f"forward + backward {result['step_ms']:.0f} ms ({result['ratio']:.2f}× the forward), "
          f"peak memory of a step {result['peak_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
