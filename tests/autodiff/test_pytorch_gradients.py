"""cg.gradients against PyTorch's own gradients for models PyTorch exported (tests/data/pytorch: the .onnx files,
and <model>_grads.npz made by make_gradients.py beside them; no torch needed here). BatchNorm kept (the
_ts17bn export), in eval mode and in train mode."""
from pathlib import Path

import numpy as np
import pytest
from gradcheck import close32

import cnngraph as cg

DATA = Path(__file__).parent.parent / "data" / "pytorch"
CASES = [("resnet", "ts17bn", "eval"), ("resnet", "ts17bn", "train"), ("lenet", "ts17", "eval")]


def find(graph, head, shape):
    """The (node, parameter) of the graph whose array has this shape and begins with these values."""
    found = [(node.name, key) for node in graph.layers() for key, array in node.params.items()
             if array.shape == shape and np.array_equal(array.ravel()[:len(head)], head)]
    assert len(found) == 1, (shape, found)
    return found[0]


@pytest.mark.parametrize("name,variant,mode", CASES)
def test_gradients_match_pytorch(name, variant, mode):
    graph = cg.load_onnx(DATA / f"{name}_{variant}.onnx")
    reference = np.load(DATA / f"{name}_grads.npz")
    result = cg.gradients(graph, reference["x"], target=reference["target"], train=mode == "train")
    assert result.loss == pytest.approx(float(reference[f"loss_{mode}"]), rel=1e-5)
    close32(result.inputs[0], reference[f"dx_{mode}"], f"{name} {mode}: the input's gradient")
    count = len([k for k in reference.files if k.startswith("name_")])
    matched = set()
    for i in range(count):
        expected = reference[f"grad_{mode}_{i}"]
        key = find(graph, reference[f"head_{i}"], expected.shape)
        matched.add(key)
        close32(result.params[key], expected, f"{name} {mode}: {reference[f'name_{i}']} ({key})")
    assert matched == set(result.params), "every learnable parameter of the graph is one of PyTorch's"
