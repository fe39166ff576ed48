"""Build a small CNN, optimize it, run it in both backends and export it, in twenty lines.

    python examples/quickstart.py [OUTPUT_FOLDER]
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

import cnngraph as cg

net = cg.Sequential(cg.Conv2d(3, 16, 3, padding=1), cg.BatchNorm2d(16), cg.ReLU(), cg.MaxPool2d(2),
                    cg.Conv2d(16, 32, 3, padding=1), cg.ReLU(), cg.GlobalAvgPool2d(), cg.Flatten(),
                    cg.Linear(32, 64), cg.Linear(64, 10))                    # two Linears, nothing between
graph = net.to_graph(input_shape=(None, 3, 32, 32))
fast = cg.optimize(graph, verify=True)                                     # every pass checked on random inputs
print(fast.report)

x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
before, after, ort = cg.run(graph, x), cg.run(fast, x), cg.run(fast, x, backend="onnxruntime")
assert np.allclose(after, before, rtol=1e-4, atol=1e-5) and np.allclose(ort, before, rtol=1e-4, atol=1e-5)
assert len(fast.layers()) < len(graph.layers()) and fast.param_count() < graph.param_count()

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
cg.export_onnx(fast, folder / "quickstart.onnx")
print(f"{len(graph.layers())} -> {len(fast.layers())} layers, {graph.param_count():,} -> {fast.param_count():,} "
      f"parameters; same outputs in NumPy and onnxruntime; wrote {folder / 'quickstart.onnx'}")
