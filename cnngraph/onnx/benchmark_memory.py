"""Time and peak memory of loading (and optimizing and exporting) one ONNX model, cnngraph next to the native tools.

    python -m cnngraph.onnx.benchmark_memory                 # the light-zoo VGG-19 (575 MB), random weights
    python -m cnngraph.onnx.benchmark_memory MODEL.onnx --repeat 3

Each measurement runs in a fresh subprocess, because a peak (ru_maxrss) never goes down: ``onnx.load``, an
onnxruntime InferenceSession (default options), ``cg.load_onnx``, and ``cg.load_onnx`` -> ``cg.optimize(level=2)``
-> ``cg.export_onnx`` to a file. Every subprocess imports onnx, onnxruntime and cnngraph before it starts the
clock, so their baselines are the same (printed as "imports"). The goals (issue 13): ``cg.load_onnx`` at most the
session's time and peak; load -> optimize -> export at most 1.5 times the session's peak.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

KINDS = {"onnx.load": "onnx.load", "ort": "onnxruntime session", "load_onnx": "cg.load_onnx",
         "roundtrip": "load -> optimize(2) -> export"}
LIGHT_MODEL = "vgg19"


def _peak_bytes() -> int:
    """This process's peak resident memory. VmHWM (Linux) is reset by exec; ru_maxrss may carry the peak of the
    parent that forked the process, so it is only the fallback."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # kilobytes on Linux


def _measure(kind: str, path: str, out_dir: str) -> dict:
    """One measurement in this (fresh) process: seconds, peak bytes, and the peak after the imports alone."""
    import onnx
    import onnxruntime

    import cnngraph as cg
    baseline = _peak_bytes()
    start = time.perf_counter()
    if kind == "onnx.load":
        model = onnx.load(path)
    elif kind == "ort":
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3                     # the light zoo's initializers-as-inputs warnings
        model = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    elif kind == "load_onnx":
        model = cg.load_onnx(path)
    elif kind == "roundtrip":
        model = cg.export_onnx(cg.optimize(cg.load_onnx(path), level=2), os.path.join(out_dir, "exported.onnx"))
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    seconds = time.perf_counter() - start
    del model
    return {"seconds": seconds, "peak": _peak_bytes(), "imports": baseline}


def run_child(kind: str, path: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as out_dir:
        result = subprocess.run([sys.executable, "-m", "cnngraph.onnx.benchmark_memory",
                                 "--child", kind, path, "--out", out_dir],
                                capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{KINDS[kind]} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def light_model(folder: str, name: str = LIGHT_MODEL) -> str:
    """The light-zoo model ``name`` with random weights in place of its ConstantOfShape placeholders (as
    tests/onnx/test_onnx_zoo.py prepares it), written to ``folder``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")
    model = onnx.load(light)
    graph, rng = model.graph, np.random.default_rng(0)
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = tuple(int(d) for d in shapes[node.input[0]])
        scale = np.float32(np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))) if len(shape) >= 2 else np.float32(0.1)
        graph.initializer.append(numpy_helper.from_array(rng.standard_normal(shape, np.float32) * scale,
                                                         node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    path = os.path.join(folder, f"{name}.onnx")
    onnx.save(model, path)
    return path


def external_bytes(path: str) -> int:
    """Bytes of the external-data files the model names (the model file's own size aside)."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    folder = os.path.dirname(os.path.abspath(path))
    return sum(os.path.getsize(os.path.join(folder, location)) for location in locations
               if os.path.isfile(os.path.join(folder, location)))


def report(path: str, repeat: int) -> dict:
    results = {}
    for _ in range(repeat):                      # rounds, so a burst of load on the machine hits every kind
        for kind in KINDS:
            results.setdefault(kind, []).append(run_child(kind, path))
    size, external = os.path.getsize(path), external_bytes(path)
    print(f"{os.path.basename(path)}: {size / 1e6:.0f} MB" + (f" + {external / 1e6:.0f} MB of external data"
                                                               if external else "") +
          f", {repeat} run(s) each, each in a fresh process (load average {os.getloadavg()[0]:.2f})")
    summary = {}
    for kind, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak"] for r in runs)
        imports = max(r["imports"] for r in runs)
        summary[kind] = (seconds, peak)
        print(f"  {KINDS[kind]:32s} {seconds:7.2f} s   peak {peak / 1e9:5.2f} GB   (imports {imports / 1e9:4.2f} GB)")
    ort_s, ort_peak = summary["ort"]
    load_s, load_peak = summary["load_onnx"]
    trip_peak = summary["roundtrip"][1]
    goals = [("cg.load_onnx time <= session's", load_s / ort_s, 1.0),
             ("cg.load_onnx peak <= session's", load_peak / ort_peak, 1.0),
             ("load -> optimize -> export peak <= 1.5x session's", trip_peak / ort_peak, 1.5)]
    for text, ratio, goal in goals:
        print(f"  {text:50s} ratio {ratio:4.2f} (goal {goal:.1f}): {'met' if ratio <= goal else 'not met'}")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help=f"an .onnx file (default: the light-zoo {LIGHT_MODEL}, random weights)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each kind (median time, largest peak)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.model, args.out)))
        return
    if args.model:
        report(args.model, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="cg-bench-model-") as folder:
        subprocess.run([sys.executable, "-c", f"from cnngraph.onnx.benchmark_memory import light_model; "
                        f"light_model({folder!r})"], check=True)    # apart, so this process stays small
        report(os.path.join(folder, f"{LIGHT_MODEL}.onnx"), args.repeat)


if __name__ == "__main__":
    main()
