"""onnx-simplifier's node counts for the zoo files, for the README's coverage table.

    /work/torchvenv/bin/pip install onnxsim
    /work/torchvenv/bin/python tests/data/pytorch_zoo/onnxsim_counts.py

Prints, per file: the file, its ONNX node count, onnxsim.simplify's node count, and onnxsim's own check.
"""
import os

import onnx
import onnxsim

HERE = os.path.dirname(os.path.abspath(__file__))

for file in sorted(f for f in os.listdir(HERE) if f.endswith(".onnx")):
    model = onnx.load(os.path.join(HERE, file))
    try:
        simplified, ok = onnxsim.simplify(model)
        print(file, len(model.graph.node), len(simplified.graph.node), ok)
    except Exception as error:  # noqa: BLE001
        print(file, len(model.graph.node), "failed:", type(error).__name__, str(error)[:100].replace("\n", " "))
