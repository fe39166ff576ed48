"""Optimize an ONNX model someone else made: the light ResNet-50 the onnx package ships.

Its weights are placeholders (ConstantOfShape filling 0.02), which is fine for showing the optimizer: the
optimized export must give onnxruntime the original's outputs all the same.
"""
import os
import tempfile

import numpy as np
import onnx

import cnngraph as cg
from cnngraph.backends.onnxruntime_backend import make_session
from cnngraph.tolerance import assert_close

path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
original = onnx.load(path)
graph = cg.load_onnx(original)
optimized = cg.optimize(graph, level=2)
print(optimized.report)

out = os.path.join(tempfile.mkdtemp(), "resnet50.optimized.onnx")
exported = cg.export_onnx(optimized, out)
x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
results = []
for model in (original, exported):
    session = make_session(model)
    results.append(session.run(None, {session.get_inputs()[0].name: x})[0])
assert_close(results[1], results[0], "optimized export vs original, in onnxruntime")
assert len(exported.graph.node) < len(original.graph.node)
print(f"ONNX nodes {len(original.graph.node)} -> {len(exported.graph.node)}; onnxruntime gives the same outputs; "
      f"wrote {out}")
