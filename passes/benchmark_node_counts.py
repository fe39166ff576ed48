"""Never larger, measured: ONNX nodes of a model file, of what cnngraph exports after optimize(level=2), and of
what onnx-simplifier leaves (installed for this script only: pip install onnxsim).

    python -m cnngraph.passes.benchmark_node_counts [FILE.onnx ...]

Without arguments: the light zoo the onnx package ships and tests/data/pytorch/*.onnx (when run from the
repository). Constant and ConstantOfShape nodes are not counted on any side (we write constants as initializers;
the light zoo builds its weights with ConstantOfShape). tests/onnx/test_never_larger.py asserts the first
comparison; onnx-simplifier is not a dependency, so its column is measured here, not tested.
"""
from __future__ import annotations

import argparse
import glob
import os

import onnx

import cnngraph as cg

from .benchmark import LIGHT, table

NOT_COUNTED = {"Constant", "ConstantOfShape"}


def count(model: onnx.ModelProto) -> int:
    return sum(node.op_type not in NOT_COUNTED for node in model.graph.node)


def simplified(model: onnx.ModelProto) -> str:
    try:
        import onnxsim
    except ImportError:
        return "not installed"
    try:
        result, ok = onnxsim.simplify(model)
    except Exception as error:                                   # onnxsim refuses some models
        return f"failed ({type(error).__name__})"
    return str(count(result)) if ok else "check failed"


def row(path: str) -> list[str]:
    model = onnx.load(path)
    ours = count(cg.export_onnx(cg.optimize(cg.load_onnx(model), level=2)))
    theirs = simplified(model)
    verdict = "ok" if ours <= count(model) and (not theirs.isdigit() or ours <= int(theirs)) else "LARGER"
    return [os.path.basename(path), str(model.opset_import[0].version), str(count(model)), str(ours), theirs, verdict]


def default_files() -> list[str]:
    files = sorted(glob.glob(os.path.join(LIGHT, "*.onnx")))
    return files + sorted(glob.glob(os.path.join("tests", "data", "pytorch", "*.onnx")))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="ONNX files (default: the light zoo and tests/data/pytorch)")
    args = parser.parse_args(argv)
    rows = [row(path) for path in args.files or default_files()]
    print(table(["model", "opset", "ONNX nodes", "cnngraph (level 2, exported)", "onnxsim", "never larger"], rows))


if __name__ == "__main__":
    main()
