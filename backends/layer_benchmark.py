"""Per-layer times of the NumPy backend next to onnxruntime's, for the same nodes of the same model.

    python -m cnngraph.backends.layer_benchmark resnet18 --batch 1
    python -m cnngraph.backends.layer_benchmark resnet18 --batch 1 --threads 1    # while others use the machine

The model is optimized (cg.optimize), exported once, and both sides run the whole model:
  - onnxruntime's times are its own profiler's kernel times (``enable_profiling``), taken inside the full
    model after its fusions and layout changes, as its users get them. One-node models were not used: each
    would pay a session call (tens of µs, a max pool's whole time at batch 1), its own NCHWc reorders, and
    cold caches, and the figures would not add up to the model's time.
  - ours are the plan's steps, each wrapped in a timer, inside the full plan run.
The two sides run in alternating blocks (benchmark.py's protocol: pause, one untimed run, timed runs); each
figure is the median over all timed runs. onnxruntime fuses more than we do (a residual Add and its ReLU go
into the convolution before them), so a row is one onnxruntime node with the steps of ours it covers: the
step of the same name, plus steps that have no onnxruntime node of their own, attributed to the latest row
that produced one of their inputs. Our kernels split their work over ``--threads`` cores as cg.run does at
batch 1 (batch_split.inference_threads); at batch > 1 too, where cg.run would instead cut the batch into one
piece per core, so its total differs from the sum here.

A max pool our plan runs inside the convolution before it (numpy_backend/fused_pool.py: resnet's stem) has no
step of its own: that row is our one step against the SUM of onnxruntime's convolution and pool nodes, and
says so. Next to the stem, the time of its bare GEMM (np.matmul of the im2col shapes, on the same threads):
the floor of any GEMM-based stem, so that the gap splits into OpenBLAS against onnxruntime, and our overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

import numpy as np

from .benchmark import BLOCK_PAUSE_S

GOAL_RATIO = 1.5        # issue 13: the stem and the max pool at batch 1 within 1.5× of onnxruntime's
GEMM_BLOCK_COLUMNS = 3136   # the bare GEMM's columns per np.matmul (one product of 50k columns ran 20-40% slower)


def profiled_session(model, threads: int, folder: str):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(folder, "ort_profile")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_kernel_times(profile_path: str, timed_runs: set[int]) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per onnxruntime node over the timed runs (by their index among all runs), and per whole run.
    Node names are the exported node's (ours, or "<ours>/<op>" for a helper node), plus "_nchwc" when
    onnxruntime moved the node to its blocked layout, or "fused " before it; these are dropped."""
    with open(profile_path) as file:
        events = json.load(file)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    kept = [runs[i] for i in sorted(timed_runs) if i < len(runs)]
    nodes: dict[str, list[float]] = defaultdict(list)       # in the order onnxruntime runs them
    for e in sorted(events, key=lambda e: e.get("ts", 0)):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            if any(start <= e["ts"] <= stop for start, stop in kept):
                name = e["name"][:-len("_kernel_time")].removesuffix("_nchwc").removeprefix("fused ").split("/")[0]
                nodes[name].append(e["dur"] / 1e6)
    return nodes, [(stop - start) / 1e6 for start, stop in kept]


def timed_plan(graph, batch: int):
    """A NumPy plan for ``graph`` at ``batch`` whose steps record their seconds into ``times[label]``."""
    from .numpy_backend.plan import Plan
    plan = Plan(graph, {graph.type_of(graph.inputs[0]).shape[0]: batch})
    times: dict[str, list[float]] = defaultdict(list)
    for step in plan.steps:
        def timed(inputs, out, run=step.run, sink=times[step.label]):
            start = time.perf_counter()
            result = run(inputs, out)
            sink.append(time.perf_counter() - start)
            return result
        step.run = timed
    return plan, times


def rows(graph, plan, ort_names) -> list[tuple[str, list[str]]]:
    """(onnxruntime node or our step name, [our step labels]) in our step order; see the module docstring.
    ``ort_names`` lists onnxruntime's nodes in the order it runs them."""
    ort_order = {name: index for index, name in enumerate(ort_names)}
    known = {n.name for n in graph.layers()}
    group_of: dict[str, int] = {}
    result: list[tuple[str, list[str]]] = []
    for step in plan.steps:
        name = step.label.split(" (")[0]
        if name in ort_names or name not in known:
            group_of[name] = len(result)
            result.append((name, [step.label]))
            continue
        producers = [group_of[i] for i in graph.node(name).inputs if i in group_of]
        # onnxruntime fuses into the producer it runs last (the fused node reads the others' outputs)
        group_of[name] = max(producers, key=lambda g: (ort_order.get(result[g][0], -1), g)) if producers else len(result)
        if not producers:
            result.append((name, []))
        result[group_of[name]][1].append(step.label)
    return result


def measure(graph, batch: int, threads: int, pairs: int, repeats: int, folder: str) -> dict:


    from .numpy_backend import batch_split

    (input_name,) = graph.inputs
    workers, batch_split.WORKERS = batch_split.WORKERS, min(batch_split.WORKERS, threads)
    try:
        return _measure(graph, batch, threads, pairs, repeats, folder, input_name)
    finally:
        batch_split.WORKERS = workers


def _measure(graph, batch, threads, pairs, repeats, folder, input_name) -> dict:
    from threadpoolctl import threadpool_limits

    import cnngraph as cg

    from .numpy_backend import batch_split

    x = np.random.default_rng(0).random((batch, *graph.type_of(input_name).shape[1:]), dtype=np.float32)
    session = profiled_session(cg.export_onnx(graph), threads, folder)
    plan, step_times = timed_plan(graph, batch)
    splitting = batch_split.splitting_macs(graph) * batch
    whole: list[float] = []
    timed_runs: set[int] = set()
    run_count = 0

    def ours():
        start = time.perf_counter()
        with batch_split.inference_threads(splitting):     # as cg.run does for a batch it does not cut
            plan.run([x])
        return time.perf_counter() - start

    def theirs():
        nonlocal run_count
        session.run(None, {input_name: x})
        run_count += 1
        return 0.0

    with threadpool_limits(limits=threads, user_api="blas"):
        for index in range(pairs):
            for side in ((ours, theirs) if index % 2 == 0 else (theirs, ours)):
                time.sleep(BLOCK_PAUSE_S)
                side()
                if side is ours:
                    for sink in step_times.values():
                        sink.pop()                             # the untimed run
                for _ in range(repeats):
                    if side is theirs:
                        timed_runs.add(run_count)
                    elapsed = side()
                    if side is ours:
                        whole.append(elapsed)
    profile = session.end_profiling()
    try:
        ort_nodes, ort_whole = ort_kernel_times(profile, timed_runs)
    finally:
        os.remove(profile)
    pools = {step.label: [n for n in step.nodes[1:] if graph.node(n).op == "MaxPool2d" and n in ort_nodes]
             for step in plan.steps}             # max pools fused into a step: onnxruntime runs them on their own
    table = []
    for name, labels in rows(graph, plan, ort_nodes):
        our_s = sum(statistics.median(step_times[label]) for label in labels)
        their_s = statistics.median(ort_nodes[name]) if name in ort_nodes else None
        summed = [n for label in labels for n in pools[label]] if their_s is not None else []
        their_s = their_s + sum(statistics.median(ort_nodes[n]) for n in summed) if summed else their_s
        table.append((name, labels, our_s, their_s, summed))
    covered = {row[0] for row in table} | {n for row in table for n in row[4]}
    table += [(f"{name} (onnxruntime only)", [], 0.0, statistics.median(times), [])
              for name, times in ort_nodes.items() if name not in covered]
    return {"rows": table, "numpy_run": statistics.median(whole), "ort_run": statistics.median(ort_whole),
            "stem_gemm": stem_gemm_seconds(graph, batch, threads, pairs * repeats)}


def stem_gemm_seconds(graph, batch: int, threads: int, runs: int) -> float | None:
    """Median seconds of the first convolution's bare GEMM at ``batch``: np.matmul of W (Cout/groups,
    Cin/groups·kh·kw) by the columns (Cin/groups·kh·kw, N·Ho·Wo), per group, in blocks of GEMM_BLOCK_COLUMNS
    columns that stay in cache (as our kernels cut theirs), BLAS on ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    conv = next((n for n in graph.layers() if n.op == "Conv2d"), None)
    if conv is None:
        return None
    a, (cin, cout) = conv.attrs, (graph.type_of(conv.inputs[0]).shape[1], conv.type.shape[1])
    groups = a["groups"]
    k = cin // groups * a["kernel_size"][0] * a["kernel_size"][1]
    pixels = batch * conv.type.shape[2] * conv.type.shape[3]
    rng = np.random.default_rng(0)
    block = min(pixels, GEMM_BLOCK_COLUMNS)
    weight, columns = rng.random((cout // groups, k), np.float32), rng.random((k, block), np.float32)
    out = np.empty((cout // groups, block), np.float32)
    times = []
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(runs + 1):
            start = time.perf_counter()
            for first in range(0, pixels * groups, block):
                count = min(block, pixels * groups - first)
                np.matmul(weight, columns[:, :count], out=out[:, :count])
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def goal_lines(graph, table) -> list[str]:
    """Issue 13's per-layer goals: the first convolution (the stem) and the first max pool; one goal for both
    when our plan runs the pool inside the stem's step (against the sum of onnxruntime's two nodes)."""
    lines = []

    def shape(node):
        a = node.attrs
        return f"{node.op} {'×'.join(map(str, a['kernel_size']))}/{a['stride'][0]}"

    for what, op in (("stem", "Conv2d"), ("max pool", "MaxPool2d")):
        first = next((n for n in graph.layers() if n.op == op), None)
        row = next((r for r in table if first is not None and (r[0] == first.name or first.name in r[4])), None)
        if row is None or row[3] is None or (op == "MaxPool2d" and first.name in row[4]):
            continue
        ratio = row[2] / row[3]
        if row[4]:
            pool = graph.node(row[4][0])
            what = f"stem + max pool {first.name} + {pool.name} ({shape(first)} + {shape(pool)}, one step; " \
                   f"onnxruntime: the sum of its two nodes)"
        else:
            what = f"{what} {first.name} ({shape(first)})"
        lines.append(f"goal: {what} {1e3 * row[2]:.3f} ms vs {1e3 * row[3]:.3f} ms = "
                     f"{ratio:.2f}× ≤ {GOAL_RATIO}×: {'met' if ratio <= GOAL_RATIO else 'not met'}")
    return lines


def main(argv=None) -> int:
    import tempfile

    import cnngraph as cg
    from cnngraph import models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="resnet18", help=f"built-in model: {', '.join(models.MODELS)}")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads and onnxruntime intra-op threads")
    parser.add_argument("--pairs", type=int, default=4, help="A/B block pairs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per block")
    args = parser.parse_args(argv)

    build = models.MODELS[args.model]
    graph = cg.optimize(build(input_shape=(None, 3, args.size, args.size)) if args.model != "lenet5" else build())
    for batch in args.batch:
        with tempfile.TemporaryDirectory() as folder:
            result = measure(graph, batch, args.threads, args.pairs, args.repeats, folder)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{args.model}, batch {batch}, {args.threads} thread(s); medians of {args.pairs * args.repeats} runs "
              f"per side; ms; load average {load:.1f} on {os.cpu_count()} cores")
        print(f"{'layer (ours; + steps onnxruntime fuses into it)':60} {'numpy':>8} {'ort':>8} {'ratio':>6}")
        for name, labels, ours, theirs, summed in result["rows"]:
            label = " + ".join(labels) if labels else name
            if summed:                          # the note stays whole: the label gives way
                note = f" [ort: {' + '.join([name, *summed])}]"
                label = label[:max(0, 60 - len(note))] + note
            if ours == 0.0 and not labels:
                print(f"{label[:60]:60} {'-':>8} {1e3 * theirs:8.3f}")
                continue
            ratio = f"{ours / theirs:6.2f}" if theirs else f"{'':6}"
            theirs_ms = f"{1e3 * theirs:8.3f}" if theirs is not None else f"{'-':>8}"
            print(f"{label[:60]:60} {1e3 * ours:8.3f} {theirs_ms} {ratio}")
        our_sum = sum(r[2] for r in result["rows"])
        their_sum = sum(r[3] or 0.0 for r in result["rows"])
        print(f"{'sum of the rows':60} {1e3 * our_sum:8.3f} {1e3 * their_sum:8.3f} {our_sum / their_sum:6.2f}")
        print(f"{'whole run':60} {1e3 * result['numpy_run']:8.3f} {1e3 * result['ort_run']:8.3f} "
              f"{result['numpy_run'] / result['ort_run']:6.2f}")
        stem = next((r for r in result["rows"] if r[0] == next(n.name for n in graph.layers() if n.op == "Conv2d")),
                    None) if result["stem_gemm"] is not None else None
        if stem is not None:
            print(f"stem's bare GEMM (np.matmul of its im2col shapes by {GEMM_BLOCK_COLUMNS} columns, "
                  f"{args.threads} thread(s)): "
                  f"{1e3 * result['stem_gemm']:.3f} ms; our step {1e3 * stem[2]:.3f} ms, onnxruntime's "
                  f"{1e3 * (stem[3] or 0.0):.3f} ms{' (stem + max pool)' if stem[4] else ''}")
        if batch == 1:
            print("\n".join(goal_lines(graph, result["rows"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
