"""Pooling and normalization layers as PyTorch's exporters write them (tests/data/pytorch_ops, made by
make_ops.py there): every file imports, optimizes and matches PyTorch's output, or (only the files listed in
REFUSED) is refused with a clean error naming what is missing. No file may give wrong numbers."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import cnngraph as cg
from cnngraph.errors import OnnxImportError
from cnngraph.tolerance import assert_close

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pytorch_ops")
FILES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(DATA, "*.onnx")))

REFUSED = {       # file -> what its refusal names (each may import once the op exists)
    "layernorm_ts13": "Pow",                                    # the decomposed LayerNorm before opset 17
    "layernorm_last_nobias_ts13": "Pow",
    "adaptivemax2d_global_dynamo18": "ReduceMax",               # dynamo writes AdaptiveMaxPool2d(1) so
    "adaptiveavg2d_odd_dynamo18": "GatherND",                   # dynamo's decomposition of uneven windows
    "avgpool3d_ceil_overhang_ts13": "runtimes disagree",        # as for AvgPool2d: pytorch #183528
    "avgpool3d_ceil_overhang_ts17": "runtimes disagree",
    "avgpool3d_ceil_overhang_dynamo18": "runtimes disagree",
}

BECOMES = {       # case -> the layer the level-1 graph holds
    "layernorm": "LayerNorm", "layernorm_last_nobias": "LayerNorm", "groupnorm": "GroupNorm",
    "groupnorm_1d_noaffine": "GroupNorm", "instancenorm1d": "InstanceNorm1d", "instancenorm2d_affine": "InstanceNorm2d",
    "instancenorm3d": "InstanceNorm3d", "maxpool1d_ceil": "MaxPool1d", "maxpool3d_dilated": "MaxPool3d",
    "avgpool3d": "AvgPool3d", "adaptiveavg2d_uniform": "AvgPool2d", "adaptivemax2d_uniform": "MaxPool2d",
}


def test_the_data_is_there():
    assert len(FILES) >= 50 and set(REFUSED) <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_pytorch_export_imports_and_matches(name):
    data = np.load(os.path.join(DATA, name.rsplit("_", 1)[0] + ".npz"))
    try:
        graph = cg.load_onnx(os.path.join(DATA, name + ".onnx"))
    except OnnxImportError as error:
        assert name in REFUSED and REFUSED[name] in str(error), str(error)
        return
    case = name.rsplit("_", 1)[0]
    for level in (1, 2):
        optimized = cg.optimize(graph, level=level)
        if level == 1 and case in BECOMES:
            assert BECOMES[case] in [n.op for n in optimized.layers()]
        assert_close(cg.run(optimized, data["x"]), data["y"], f"{name} at level {level}")
