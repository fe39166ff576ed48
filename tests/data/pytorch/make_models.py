"""Make the small PyTorch CNNs of tests/data/pytorch: ONNX exports and PyTorch reference outputs.

Run with the separate torch virtualenv (see README.md beside this file), from anywhere:

    /work/torchenv/bin/python tests/data/pytorch/make_models.py

For each model it writes, beside this file:
    <model>_ts13.onnx     TorchScript exporter (dynamo=False), opset 13, dynamic batch (dynamic_axes)
    <model>_ts17.onnx     TorchScript exporter (dynamo=False), opset 17, dynamic batch (dynamic_axes)
    <model>_dynamo18.onnx dynamo exporter (dynamo=True), opset 18, dynamic batch (torch.export.Dim),
                          weights inside the file (no external .data file)
    <model>_ts17bn.onnx   only for the models with BatchNorm2d: as _ts17 but training=TrainingMode.PRESERVE
                          (model still in eval mode), which keeps BatchNormalization nodes; in the default
                          EVAL mode both exporters fold every BatchNorm into the convolution before it
    <model>.npz           x: the input (batch 2, float32, seeded), y: PyTorch's output for it
and checks every file with onnx.checker (full_check) and onnxruntime (batch 2 against the reference, batch 5
against PyTorch on a fresh input), printing a table of the largest absolute differences.
Everything is deterministic: torch.manual_seed and a seeded NumPy generator per model.
"""
from __future__ import annotations

import collections
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0


def randomize_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial statistics and affine parameters for every BatchNorm2d (fresh ones are mean 0, var 1)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.25)
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.2)


# --------------------------------------------------------------------------------------------- the models

class LeNet(nn.Module):
    """LeNet-5 style; flattens with x.view(x.size(0), -1), i.e. Shape/Gather/Unsqueeze/Concat -> Reshape."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2, stride=2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class TinyResNet(nn.Module):
    """ResNet style: conv(bias=False)+BN+ReLU stem, an identity block, a stride-2 block with a 1x1 conv
    shortcut, AdaptiveAvgPool2d(1), torch.flatten, Linear."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


class TinyMobileNetV2(nn.Module):
    """MobileNetV2 style: stem conv+BN+ReLU6, inverted residuals (pointwise expand, depthwise groups=C,
    ReLU6, pointwise project, BN, residual add), a stride-2 block, 1x1 head, global mean, Dropout, Linear."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True),
            InvertedResidual(16, 16, 1, 3),
            InvertedResidual(16, 24, 2, 3),
            InvertedResidual(24, 24, 1, 3),
            nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(inplace=True),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class TinySqueezeInception(nn.Module):
    """SqueezeNet/Inception style: LeakyReLU stem, MaxPool2d(ceil_mode=True), a Fire module (torch.cat), an
    Inception block of four branches (1x1; 3x3; AvgPool2d(3, stride=1, padding=1)+1x1; Tanh-gated 1x1) with a
    Sigmoid gate, Dropout, a 1x1 classifier conv, global average pool, Softmax."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)      # 16x16 -> 8x8 (floor mode: 7x7)
        self.fire = Fire(16, 8, 16)
        self.b1 = nn.Conv2d(32, 8, 1)
        self.b2 = nn.Sequential(nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.b3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(32, 8, 1))
        self.b4 = nn.Conv2d(32, 8, 1)
        self.gate = nn.Conv2d(32, 32, 1)
        self.pool2 = nn.MaxPool2d(2, stride=2, ceil_mode=True)     # 8x8 -> 4x4
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Conv2d(32, num_classes, 1)

    def forward(self, x):
        x = self.pool(self.act(self.stem(x)))
        x = self.fire(x)
        y = torch.cat([self.b1(x), F.relu(self.b2(x)), self.b3(x), torch.tanh(self.b4(x))], dim=1)
        y = y * torch.sigmoid(self.gate(x))
        y = self.pool2(F.leaky_relu(y, 0.2))
        y = self.classifier(self.dropout(y))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return torch.softmax(y * 4.0, dim=1)


class LinearStack(nn.Module):
    """Conv, nn.Flatten, then Linear->Linear with no activation between (one linear map), ReLU, Linear."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(8 * 8 * 8, 32), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10),
        )

    def forward(self, x):
        return self.net(x)


MODELS = {  # name: (constructor, input shape at batch 2)
    "lenet": (LeNet, (2, 1, 28, 28)),
    "resnet": (TinyResNet, (2, 3, 32, 32)),
    "mobilenetv2": (TinyMobileNetV2, (2, 3, 32, 32)),
    "squeeze_inception": (TinySqueezeInception, (2, 3, 32, 32)),
    "linear_stack": (LinearStack, (2, 3, 8, 8)),
}

VARIANTS = ("ts13", "ts17", "dynamo18")
BN_VARIANT = "ts17bn"        # only for models with a BatchNorm2d


def variants(model: nn.Module) -> tuple[str, ...]:
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return VARIANTS + ((BN_VARIANT,) if has_bn else ())


# ------------------------------------------------------------------------------------------------ export

def export(model: nn.Module, x: torch.Tensor, variant: str, path: str) -> None:
    for stale in (path, path + ".data"):
        if os.path.exists(stale):
            os.remove(stale)
    if variant.startswith("ts"):
        training = torch.onnx.TrainingMode.PRESERVE if variant.endswith("bn") else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=int(variant[2:4]),
                          input_names=["x"], output_names=["y"], training=training,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, do_constant_folding=True)
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False,
                                    input_names=["x"], output_names=["y"],
                                    dynamic_shapes={"x": {0: batch}}, external_data=False)
        program.save(path, external_data=False)
    data_files = [f for f in os.listdir(HERE) if f.endswith(".data")]
    if data_files:                                       # never expected; fold any external data back in
        proto = onnx.load(path, load_external_data=True)
        onnx.save(proto, path, save_as_external_data=False)
        for f in data_files:
            os.remove(os.path.join(HERE, f))
    proto = onnx.load(path, load_external_data=False)
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert not external, f"{path}: external initializers {external}"
    onnx.checker.check_model(proto, full_check=True)


def ort_session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def describe(path: str) -> tuple[str, str, str]:
    proto = onnx.load(path)
    opsets = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in proto.opset_import)
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    dims = [d.dim_param or str(d.dim_value) for d in proto.graph.input[0].type.tensor_type.shape.dim]
    ops = " ".join(f"{op}:{n}" for op, n in sorted(counts.items()))
    return opsets, "(" + ",".join(dims) + ")", ops


def main() -> int:
    warnings.filterwarnings("ignore")
    rows, failures = [], []
    for index, (name, (make, shape)) in enumerate(MODELS.items()):
        torch.manual_seed(SEED + index)
        model = make()
        randomize_batchnorm(model, torch.Generator().manual_seed(1000 + index))
        model.eval()
        rng = np.random.default_rng(SEED + index)
        x2 = rng.standard_normal(shape).astype(np.float32)
        x5 = rng.standard_normal((5, *shape[1:])).astype(np.float32)
        with torch.no_grad():
            y2 = model(torch.from_numpy(x2)).numpy()
            y5 = model(torch.from_numpy(x5)).numpy()
        np.savez(os.path.join(HERE, f"{name}.npz"), x=x2, y=y2)
        for variant in variants(model):
            path = os.path.join(HERE, f"{name}_{variant}.onnx")
            export(model, torch.from_numpy(x2), variant, path)
            session = ort_session(path)
            feed = session.get_inputs()[0].name
            d2 = float(np.max(np.abs(session.run(None, {feed: x2})[0] - y2)))
            d5 = float(np.max(np.abs(session.run(None, {feed: x5})[0] - y5)))
            opsets, in_shape, ops = describe(path)
            rows.append((os.path.basename(path), os.path.getsize(path), opsets, in_shape, d2, d5, ops))
            if not (d2 < 1e-4 and d5 < 1e-4):
                failures.append(os.path.basename(path))
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxscript "
          f"{__import__('onnxscript').__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    print(f"{'file':34} {'bytes':>7} {'opset':14} {'input':14} {'ort-pt b2':>10} {'ort-pt b5':>10}  ops")
    for file, size, opsets, in_shape, d2, d5, ops in rows:
        print(f"{file:34} {size:7d} {opsets:14} {in_shape:14} {d2:10.2e} {d5:10.2e}  {ops}")
    if failures:
        print("onnxruntime differs from PyTorch by 1e-4 or more:", ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
