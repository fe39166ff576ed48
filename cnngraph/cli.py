"""The ``cnngraph`` command.

    cnngraph demo                 build the built-in models, run them in both backends, export them
    cnngraph bench resnet18       NumPy backend against onnxruntime, medians of alternating blocks
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .errors import CnnGraphError

DEMO_MODELS = ("seed_m1", "seed_m2", "seed_m3", "lenet5", "resnet18")
DEMO_BATCH = 2


def demo(args) -> int:
    """Build the models that tell the story, run each in the NumPy backend and onnxruntime, export them."""
    import cnngraph as cg
    from cnngraph import models

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"cnngraph {cg.__version__} demo: NumPy backend next to onnxruntime, batch {DEMO_BATCH}; files in {out_dir}/")
    header = f"{'model':10} {'layers':>6} {'params':>11} {'MACs/sample':>12} {'output':>14} {'numpy ms':>9} {'ort ms':>7} {'max |diff|':>10}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in DEMO_MODELS:
        graph = models.MODELS[name]()
        shape = (DEMO_BATCH, *graph.type_of(graph.inputs[0]).shape[1:])
        x = rng.random(shape, dtype=np.float32)
        cg.run(graph, x)                                   # compile and warm up
        start = time.perf_counter()
        y = cg.run(graph, x)
        numpy_ms = 1e3 * (time.perf_counter() - start)
        cg.export_onnx(graph, out_dir / f"{name}.onnx")
        cg.run(graph, x, backend="onnxruntime")
        start = time.perf_counter()
        reference = cg.run(graph, x, backend="onnxruntime")
        ort_ms = 1e3 * (time.perf_counter() - start)
        diff = float(np.max(np.abs(y - reference)))
        worst = max(worst, diff)
        print(f"{name:10} {len(graph.layers()):>6} {graph.param_count():>11,} {graph.macs():>12,} "
              f"{str(tuple(y.shape)):>14} {numpy_ms:>9.1f} {ort_ms:>7.1f} {diff:>10.1e}")
    print(f"\nlargest difference between the NumPy backend and onnxruntime: {worst:.1e}")
    print("seed_m2 is seed_m1 without its ReLU: two 3×3 convolutions with nothing between them, one linear map "
          "that seed_m3 computes with a single 5×5 convolution.")
    return 0


def bench(args) -> int:
    from backends.benchmark import main as bench_main
    return bench_main([*args.models, "--batch", *map(str, args.batch)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnngraph", description="A small compiler for convolutional networks.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("demo", help="build, run and export the built-in models (no arguments needed)",
                            description=demo.__doc__, epilog="example: cnngraph demo")
    p.add_argument("--output-dir", default="cnngraph-demo", help="where the ONNX files go (default: ./cnngraph-demo)")
    p.set_defaults(handler=demo)
    p = commands.add_parser("bench", help="time the NumPy backend against onnxruntime",
                            epilog="example: cnngraph bench resnet18 --batch 8 1")
    p.add_argument("models", nargs="*", default=["resnet18"])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 1])
    p.set_defaults(handler=bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CnnGraphError, OSError) as error:
        if args.debug:
            raise
        print(f"cnngraph: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
