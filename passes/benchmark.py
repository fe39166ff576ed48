"""Figures for the optimizer, printed as tables (medians; onnxruntime measured in the same run):

    python -m cnngraph.passes.benchmark [--quick]

1. node counts after optimization: ours, onnxoptimizer's and onnx-simplifier's on the same ONNX files (the
   two are installed for the benchmark only: pip install onnxoptimizer onnxsim);
2. onnxruntime latency (ORT_ENABLE_ALL, 2 threads) of the model we export after optimizing over the original's;
3. NumPy backend time of the optimized graph over the unoptimized one;
4. the pipeline's own time against issue 13's goals (benchmark_time.py, alone: --only-time): light-zoo
   ResNet-50 and DenseNet-121, and the time per layer of synthetic graphs of 1k to 10k layers.
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import onnx

import cnngraph as cg
from cnngraph.backends.benchmark import alternate, ort_session

from . import benchmark_time

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
SMALL = {"vgg11": (None, 3, 32, 32)}


def linear_stack(width=512, depth=4):
    """A stack of Linears with nothing between them: what the fold exists for."""
    graph = cg.Graph("linear_stack")
    x = graph.input("x", (None, width))
    for index in range(depth):
        x = graph.apply(cg.Linear(width, width), x, name=f"fc{index + 1}")
    graph.output(x)
    return graph


def models():
    """(name, graph, ONNX model) for the built-in models, a Linear stack and the light zoo."""
    for name, make in sorted(cg.models.MODELS.items()):
        graph = make(input_shape=SMALL[name]) if name in SMALL else make()
        yield name, graph, cg.export_onnx(graph)
    graph = linear_stack()
    yield "linear_stack", graph, cg.export_onnx(graph)
    for file in sorted(os.listdir(LIGHT)):
        if file.endswith(".onnx"):
            model = onnx.load(os.path.join(LIGHT, file))
            yield file[len("light_"):-5], cg.load_onnx(model), model


def node_counts(name, graph, model) -> list[str]:
    ours = len([n for n in cg.optimize(graph).layers() if n.op != "Constant"])
    row = [name, str(len(model.graph.node)), str(ours)]
    try:
        import onnxoptimizer
        row.append(str(len(onnxoptimizer.optimize(model, onnxoptimizer.get_fuse_and_elimination_passes()).graph.node)))
    except ImportError:
        row.append("not installed")
    try:
        import onnxsim
        simplified, ok = onnxsim.simplify(model)
        row.append(str(len(simplified.graph.node)) if ok else "check failed")
    except ImportError:
        row.append("not installed")
    except Exception as error:                                   # onnxsim refuses some models
        row.append(f"failed ({type(error).__name__})")
    return row


def feeds(model, batch=1):
    initializers = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    result = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value or batch for d in value.type.tensor_type.shape.dim]
        result[value.name] = rng.standard_normal(dims).astype(np.float32)
    return result


def ratio(run_a, run_b, pairs, repeats) -> float:
    a, b = alternate(run_a, run_b, pairs, repeats)
    return statistics.median(x / y for x, y in zip(a, b))


def latencies(name, graph, model, pairs, repeats) -> list[str]:
    optimized = cg.optimize(graph)
    exported = cg.export_onnx(optimized)
    data = feeds(model)
    original, ours = ort_session(model), ort_session(exported)
    ort_ratio = ratio(lambda: ours.run(None, data), lambda: original.run(None, data), pairs, repeats)
    arrays = [data[n] for n in graph.inputs]
    numpy_ratio = ratio(lambda: cg.run(optimized, *arrays), lambda: cg.run(graph, *arrays), pairs, repeats)
    return [name, f"{ort_ratio:.3f}", f"{numpy_ratio:.3f}", f"{graph.macs() / 1e6:.1f} -> {optimized.macs() / 1e6:.1f}",
            f"{graph.param_count()} -> {optimized.param_count()}"]


def table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only-time", action="store_true", help="only the optimizer's own time (table 4)")
    args = parser.parse_args(argv)
    if args.only_time:
        print(benchmark_time.report(args.quick))
        return
    pairs, repeats = (3, 3) if args.quick else (5, 7)
    cases = list(models())
    print(table(["model", "ONNX nodes", "cnngraph", "onnxoptimizer", "onnxsim"], [node_counts(*c) for c in cases]))
    print()
    print(table(["model", "ORT optimized/original", "NumPy optimized/original", "MACs (M)", "params"],
                [latencies(*c, pairs, repeats) for c in cases]))
    print()
    print(benchmark_time.report(args.quick))


if __name__ == "__main__":
    main()
