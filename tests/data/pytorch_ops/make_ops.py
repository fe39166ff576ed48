"""Make the one-layer PyTorch exports of tests/data/pytorch_ops: pooling and normalization layers as PyTorch's
TorchScript (opsets 13, 17) and dynamo (opset 18) exporters write them, with PyTorch's outputs.

Run with the torch virtualenv (the tests need no torch):

    /work/torchvenv/bin/python tests/data/pytorch_ops/make_ops.py

For each case it writes <case>_ts13.onnx, <case>_ts17.onnx, <case>_dynamo18.onnx (batch dynamic, input x,
output y; an exporter that refuses the case writes no file) and <case>.npz (x: a seeded input of batch 2, y:
PyTorch's output). tests/onnx/test_pytorch_ops.py imports each file and compares with y.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def randomized(module: nn.Module) -> nn.Module:
    """Affine parameters drawn from a normal distribution (fresh ones are 1 and 0, which hides mistakes)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
    return module


CASES = {
    "layernorm": (lambda: randomized(nn.LayerNorm((4, 5))), (2, 3, 4, 5)),
    "layernorm_last_nobias": (lambda: randomized(nn.LayerNorm(5, bias=False)), (2, 3, 5)),
    "groupnorm": (lambda: randomized(nn.GroupNorm(2, 6)), (2, 6, 3, 4)),
    "groupnorm_1d_noaffine": (lambda: nn.GroupNorm(3, 6, affine=False), (2, 6, 5)),
    "instancenorm1d": (lambda: nn.InstanceNorm1d(4), (2, 4, 7)),
    "instancenorm2d_affine": (lambda: randomized(nn.InstanceNorm2d(4, affine=True)), (2, 4, 3, 5)),
    "instancenorm3d": (lambda: nn.InstanceNorm3d(3), (2, 3, 3, 4, 2)),
    "maxpool1d_ceil": (lambda: nn.MaxPool1d(3, 2, 1, ceil_mode=True), (2, 3, 10)),
    "maxpool3d_dilated": (lambda: nn.MaxPool3d(2, (1, 2, 2), 1, dilation=(2, 1, 1)), (2, 2, 4, 5, 6)),
    "avgpool1d_exclude_pad": (lambda: nn.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 9)),
    "avgpool3d": (lambda: nn.AvgPool3d(3, 2, 1), (2, 2, 5, 6, 5)),
    "avgpool3d_ceil_overhang": (lambda: nn.AvgPool3d(3, 2, 1, ceil_mode=True), (2, 2, 4, 6, 5)),
    "adaptiveavg2d_uniform": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 6, 6)),
    "adaptiveavg2d_global": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 6)),
    "adaptivemax2d_global": (lambda: nn.AdaptiveMaxPool2d((1, 1)), (2, 3, 5, 6)),
    "adaptivemax2d_uniform": (lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 4, 6)),
    "adaptiveavg2d_odd": (lambda: nn.AdaptiveAvgPool2d((3, 4)), (2, 3, 5, 6)),
    "adaptiveavg1d": (lambda: nn.AdaptiveAvgPool1d(3), (2, 3, 9)),
}


def export(module, x, path, kind, opset):
    if kind == "ts":
        torch.onnx.export(module, (x,), path, opset_version=opset, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    else:
        torch.onnx.export(module, (x,), path, opset_version=opset, dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},), external_data=False)


def main():
    warnings.filterwarnings("ignore")
    for index, (name, (make, shape)) in enumerate(CASES.items()):
        torch.manual_seed(index)
        module = make().eval()
        x = torch.randn(*shape)
        with torch.no_grad():
            np.savez_compressed(os.path.join(HERE, f"{name}.npz"), x=x.numpy(), y=module(x).numpy())
        for kind, opset in (("ts", 13), ("ts", 17), ("dynamo", 18)):
            path = os.path.join(HERE, f"{name}_{kind}{opset}.onnx")
            try:
                export(module, x, path, kind, opset)
                print(f"{name:28s} {kind}{opset}: written")
            except Exception as error:                       # the exporter refuses: no file
                print(f"{name:28s} {kind}{opset}: refused ({str(error).splitlines()[0][:100]})")
                if os.path.exists(path):
                    os.remove(path)


if __name__ == "__main__":
    main()
