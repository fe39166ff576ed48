"""onnx-simplifier's node counts for the zoo files: what tests/onnx/test_pytorch_zoo.py holds our level-2 export to
("never larger than onnx-simplifier"), and the README's coverage table.

    pip install onnxsim                    # in any virtualenv with onnx; never a dependency of cnngraph
    python tests/data/pytorch_zoo/onnxsim_counts.py

Writes onnxsim_counts.json beside this file: per file, the ONNX node count of the file and of
``onnxsim.simplify``'s result, both without Constant and ConstantOfShape nodes (the exporter writes constants as
initializers; tests/onnx/test_never_larger.py counts the same way), and onnxsim's own check. Prints the same.
"""
import json
import os

import onnx
import onnxsim

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_COUNTED = {"Constant", "ConstantOfShape"}


def node_count(model: onnx.ModelProto) -> int:
    return sum(node.op_type not in NOT_COUNTED for node in model.graph.node)


counts = {}
for file in sorted(f for f in os.listdir(HERE) if f.endswith(".onnx")):
    model = onnx.load(os.path.join(HERE, file))
    simplified, ok = onnxsim.simplify(model)
    counts[file] = {"original": node_count(model), "onnxsim": node_count(simplified), "checked": bool(ok)}
    print(file, counts[file], flush=True)
with open(os.path.join(HERE, "onnxsim_counts.json"), "w") as out:
    rows = ",\n".join(f"  {json.dumps(file)}: {json.dumps(row)}" for file, row in counts.items())
    out.write(f'{{"onnxsim": {json.dumps(onnxsim.__version__)}, "onnx": {json.dumps(onnx.__version__)},\n'
              f' "counts": {{\n{rows}\n }}\n}}\n')
