"""Make the PyTorch zoo of tests/data/pytorch_zoo: torchvision's and timm's own architectures, narrow, exported.

Each model is built from the library's OWN classes and config arguments (torchvision.models.MobileNetV3 with
width_mult, timm's GhostNet/CspNet/VovNet/... with small configs), so the block structure (squeeze-excite,
channel shuffle, split/concat, hard activations, LayerNorm, upsampling heads) is the library's, only the channel
widths, depths and inputs are small. Random weights; every BatchNorm gets random running statistics and affine
parameters, every LayerNorm/GroupNorm random affine parameters, every layer scale (ConvNeXt's 1e-6 init)
a value near 1 so the blocks matter.

Run with the separate torch virtualenv (see README.md beside this file), from anywhere:

    /work/torchvenv/bin/python tests/data/pytorch_zoo/make_zoo.py            # every model
    /work/torchvenv/bin/python tests/data/pytorch_zoo/make_zoo.py tv_regnet  # some of them

For each model it writes, beside this file:
    <model>_ts17.onnx      TorchScript exporter (dynamo=False), opset 17, dynamic batch (dynamic_axes)
    <model>_dynamo18.onnx  dynamo exporter (dynamo=True), opset 18, dynamic batch (torch.export.Dim), weights inside
    <model>.npz            x: the input (batch 2, float32, seeded), y: PyTorch's output for it
input "x", output "y". Every file passes onnx.checker (full_check) and onnxruntime (graph optimizations off)
reproduces PyTorch at batch 2 and, on a fresh input, at batch 3. An export that fails is not written; the
failure is printed (and recorded in README.md by hand). Deterministic: torch.manual_seed, seeded generators.
"""
from __future__ import annotations

import collections
import importlib
import os
import sys
import traceback
import warnings
from functools import partial

import numpy as np
import onnx
import onnxruntime as ort
import timm
import torch
import torchvision
from timm.models import _efficientnet_builder as timm_builder
from timm.models._efficientnet_blocks import SqueezeExcite as TimmSqueezeExcite
from torch import nn
from torchvision.models import convnext as tvm_convnext
from torchvision.models import efficientnet as tvm_efficientnet
from torchvision.models import mobilenetv3 as tvm_mobilenetv3
from torchvision.models import regnet as tvm_regnet
from torchvision.models import resnet as tvm_resnet
from torchvision.models import squeezenet as tvm_squeezenet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import fcn as tvm_fcn
from torchvision.models.segmentation import lraspp as tvm_lraspp

tvm_googlenet = importlib.import_module("torchvision.models.googlenet")   # the name alone is the builder function
HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------- randomizing
def randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics, norm affine parameters and layer scales (fresh ones are 0/1/1e-6)."""
    for m in module.modules():
        with torch.no_grad():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=generator) * 0.2)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.2)
    for name, p in module.named_parameters():
        if name.endswith(("layer_scale", ".gamma")):
            with torch.no_grad():
                p.copy_(torch.rand(p.shape, generator=generator) * 0.5 + 0.5)


# ------------------------------------------------------------------------------------------- torchvision
class NarrowResNet(tvm_resnet.ResNet):
    """torchvision's ResNet (its forward, its _make_layer, its BasicBlock/Bottleneck) with small stage widths:
    ResNet.__init__ hard-codes 64..512 channels, so this sets up the same attributes with ``widths``."""

    def __init__(self, block, layers, widths=(8, 16, 24, 32), num_classes=NUM_CLASSES,
                 replace_stride_with_dilation=(False, False, False), groups=1, width_per_group=64):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, groups, width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)


class Out(nn.Module):
    """The "out" entry of a torchvision segmentation model's dict (ONNX wants a tensor)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def tv_resnet_basic():
    return NarrowResNet(tvm_resnet.BasicBlock, [1, 1, 1, 1])


def tv_resnet_bottleneck():
    return NarrowResNet(tvm_resnet.Bottleneck, [1, 1, 1, 1], widths=(4, 8, 8, 8), groups=2, width_per_group=64)


def tv_densenet():
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2,
                                       num_classes=NUM_CLASSES)


def tv_mobilenet_v2():
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 1, 2], [6, 96, 1, 1]]
    return torchvision.models.MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25, inverted_residual_setting=setting)


def tv_mobilenet_v3_small():
    setting, last = tvm_mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25, reduced_tail=True)
    return torchvision.models.MobileNetV3(setting, last, num_classes=NUM_CLASSES)


def tv_mobilenet_v3_large():
    setting, last = tvm_mobilenetv3._mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.2, reduced_tail=True)
    return torchvision.models.MobileNetV3(setting, last, num_classes=NUM_CLASSES)


def tv_efficientnet_b0():
    setting, _ = tvm_efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.2, depth_mult=0.5)
    return torchvision.models.EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2,
                                           num_classes=NUM_CLASSES, last_channel=128)


def tv_mnasnet():
    return torchvision.models.MNASNet(alpha=0.125, num_classes=NUM_CLASSES)


def tv_regnet():
    params = tvm_regnet.BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25)
    return torchvision.models.RegNet(params, num_classes=NUM_CLASSES, stem_width=8)


def tv_shufflenet_v2():
    return torchvision.models.ShuffleNetV2([2, 2, 1], [8, 16, 32, 64, 128], num_classes=NUM_CLASSES)


def tv_squeezenet():
    """torchvision's SqueezeNet 1.1 (its forward and classifier) with narrow Fire modules."""
    model = torchvision.models.SqueezeNet(version="1_1", num_classes=NUM_CLASSES)
    fire = tvm_squeezenet.Fire
    model.features = nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        fire(16, 4, 8, 8), fire(16, 4, 8, 8),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        fire(16, 8, 16, 16), fire(32, 8, 16, 16),
    )
    model.classifier[1] = nn.Conv2d(32, NUM_CLASSES, kernel_size=1)
    return model


class Inceptions(nn.Module):
    """GoogLeNet's stem and torchvision's Inception blocks (1x1; 1x1-3x3; 1x1-3x3; maxpool-1x1, concatenated)."""

    def __init__(self):
        super().__init__()
        conv = tvm_googlenet.BasicConv2d
        self.stem = nn.Sequential(conv(3, 16, kernel_size=7, stride=2, padding=3),
                                  nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.inception3a = tvm_googlenet.Inception(16, 8, 8, 16, 4, 8, 8)       # -> 40
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = tvm_googlenet.Inception(40, 16, 8, 16, 4, 8, 8)      # -> 48
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(48, NUM_CLASSES)

    def forward(self, x):
        x = self.inception4a(self.maxpool(self.inception3a(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def tv_googlenet_blocks():
    return Inceptions()


def tv_convnext():
    cfg = tvm_convnext.CNBlockConfig
    setting = [cfg(8, 16, 1), cfg(16, 32, 1), cfg(32, None, 1)]
    return torchvision.models.ConvNeXt(setting, stochastic_depth_prob=0.0, num_classes=NUM_CLASSES)


def tv_fcn():
    """torchvision's FCN over a narrow dilated Bottleneck ResNet (as fcn_resnet50: strides 2, 4 -> dilation)."""
    backbone = NarrowResNet(tvm_resnet.Bottleneck, [1, 1, 1, 1], widths=(4, 8, 8, 8),
                            replace_stride_with_dilation=(False, True, True))
    backbone = IntermediateLayerGetter(backbone, return_layers={"layer4": "out"})
    return Out(tvm_fcn.FCN(backbone, tvm_fcn.FCNHead(32, 5)))


def tv_lraspp():
    """torchvision's LR-ASPP over a narrow dilated MobileNetV3-Large, as lraspp_mobilenet_v3_large builds it."""
    setting, last = tvm_mobilenetv3._mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.2, reduced_tail=True,
                                                        dilated=True)
    features = torchvision.models.MobileNetV3(setting, last).features
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    low, high = stages[-4], stages[-1]
    backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
    return Out(tvm_lraspp.LRASPP(backbone, features[low].out_channels, features[high].out_channels, 5,
                                inter_channels=16))


# ------------------------------------------------------------------------------------------- timm
def timm_ghostnet():
    cfgs = [[[3, 16, 16, 0, 1]], [[3, 48, 24, 0, 2]], [[3, 72, 24, 0, 1]], [[5, 72, 40, 0.25, 2]],
            [[3, 240, 80, 0, 2]], [[3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1]], [[5, 672, 160, 0.25, 2]]]
    model = timm.models.ghostnet.GhostNet(cfgs, num_classes=NUM_CLASSES, width=0.25)
    # the head is a fixed 1x1 conv to 1280 channels (216k of 284k weights here): the same conv, to 128
    model.conv_head = nn.Conv2d(model.conv_head.in_channels, 128, 1, bias=True)
    model.classifier = nn.Linear(128, NUM_CLASSES)
    return model


def timm_lcnet():
    """timm's LCNet (lcnet_035's MobileNetV3 arguments, _gen_lcnet) with a shorter arch_def and head."""
    arch_def = [['dsa_r1_k3_s1_c32'], ['dsa_r2_k3_s2_c64'], ['dsa_r1_k3_s2_c128'],
                ['dsa_r1_k3_s2_c256', 'dsa_r1_k5_s1_c256'], ['dsa_r1_k5_s2_c512_se0.25']]
    return timm.models.mobilenetv3.MobileNetV3(
        block_args=timm_builder.decode_arch_def(arch_def), num_classes=NUM_CLASSES, stem_size=16,
        round_chs_fn=partial(timm_builder.round_channels, multiplier=0.25), norm_layer=nn.BatchNorm2d,
        act_layer=timm.layers.get_act_layer("hard_swish"),
        se_layer=partial(TimmSqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU),
        num_features=128)


def timm_mixnet():
    """timm's MixNet-S (_gen_mixnet_s's EfficientNet arguments) with a shorter arch_def and head."""
    arch_def = [['ds_r1_k3_s1_e1_c16'], ['ir_r1_k3_a1.1_p1.1_s2_e6_c24'],
                ['ir_r1_k3.5.7_s2_e6_c40_se0.5_nsw', 'ir_r1_k3.5_a1.1_p1.1_s1_e6_c40_se0.5_nsw'],
                ['ir_r1_k3.5.7_p1.1_s2_e6_c80_se0.25_nsw']]
    return timm.models.efficientnet.EfficientNet(
        block_args=timm_builder.decode_arch_def(arch_def), num_classes=NUM_CLASSES, num_features=128, stem_size=16,
        round_chs_fn=partial(timm_builder.round_channels, multiplier=0.5), norm_layer=nn.BatchNorm2d)


def timm_vovnet_ese():
    cfg = dict(stem_chs=[8, 8, 16], stage_conv_chs=[8, 16, 16, 24], stage_out_chs=[16, 24, 32, 32],
               layer_per_block=2, block_per_stage=[1, 1, 1, 1], residual=True, depthwise=False, attn="ese")
    return timm.models.vovnet.VovNet(cfg, num_classes=NUM_CLASSES)


def timm_cspresnet():
    from timm.models.cspnet import CspModelCfg, CspStagesCfg, CspStemCfg
    cfg = CspModelCfg(stem=CspStemCfg(out_chs=8, kernel_size=7, stride=4, pool="max"),
                      stages=CspStagesCfg(depth=(1, 1, 1), out_chs=(16, 32, 32), stride=(1, 2),
                                          expand_ratio=2.0, bottle_ratio=0.5, cross_linear=True))
    return timm.models.cspnet.CspNet(cfg, num_classes=NUM_CLASSES)


def timm_cspdarknet():
    from timm.models.cspnet import CspModelCfg, CspStagesCfg, CspStemCfg
    cfg = CspModelCfg(stem=CspStemCfg(out_chs=8, kernel_size=3, stride=1, pool=""),
                      stages=CspStagesCfg(depth=(1, 1, 1), out_chs=(16, 32, 32), stride=2,
                                          expand_ratio=(2.0,) + (1.0,), bottle_ratio=(0.5,) + (1.0,),
                                          block_ratio=(1.0,) + (0.5,), down_growth=True, block_type="dark"))
    return timm.models.cspnet.CspNet(cfg, num_classes=NUM_CLASSES)


def timm_res2net():
    return timm.models.resnet.ResNet(block=timm.models.res2net.Bottle2neck, layers=[1, 1, 1, 1], base_width=26,
                                     block_args=dict(scale=4), channels=(16, 16, 32, 32), stem_width=8,
                                     num_classes=NUM_CLASSES)


def timm_rexnet():
    return timm.models.rexnet.RexNet(num_classes=NUM_CLASSES, initial_chs=16, final_chs=64, width_mult=0.5,
                                     depth_mult=0.3)


class FirstBranch(nn.Module):
    """HRNet's features: the highest-resolution branch, into which the last fuse layer sums every branch."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def timm_hrnet():
    cfg = dict(stem_width=16,
               stage1=dict(num_modules=1, num_branches=1, block_type="BOTTLENECK", num_blocks=(1,), num_channels=(8,),
                           fuse_method="SUM"),
               stage2=dict(num_modules=1, num_branches=2, block_type="BASIC", num_blocks=(1, 1), num_channels=(8, 16),
                           fuse_method="SUM"),
               stage3=dict(num_modules=1, num_branches=3, block_type="BASIC", num_blocks=(1, 1, 1),
                           num_channels=(8, 16, 24), fuse_method="SUM"),
               stage4=dict(num_modules=1, num_branches=4, block_type="BASIC", num_blocks=(1, 1, 1, 1),
                           num_channels=(8, 16, 24, 32), fuse_method="SUM"))
    return FirstBranch(timm.models.hrnet.HighResolutionNet(cfg, num_classes=NUM_CLASSES, head=""))


def timm_convnext():
    return timm.models.convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=NUM_CLASSES,
                                         ls_init_value=1.0)


MODELS = {  # name: (constructor, input shape at batch 2)
    "tv_resnet_basic": (tv_resnet_basic, (2, 3, 32, 32)),
    "tv_resnet_bottleneck": (tv_resnet_bottleneck, (2, 3, 32, 32)),
    "tv_densenet": (tv_densenet, (2, 3, 32, 32)),
    "tv_mobilenet_v2": (tv_mobilenet_v2, (2, 3, 32, 32)),
    "tv_mobilenet_v3_small": (tv_mobilenet_v3_small, (2, 3, 32, 32)),
    "tv_mobilenet_v3_large": (tv_mobilenet_v3_large, (2, 3, 32, 32)),
    "tv_efficientnet_b0": (tv_efficientnet_b0, (2, 3, 32, 32)),
    "tv_mnasnet": (tv_mnasnet, (2, 3, 32, 32)),
    "tv_regnet": (tv_regnet, (2, 3, 32, 32)),
    "tv_shufflenet_v2": (tv_shufflenet_v2, (2, 3, 32, 32)),
    "tv_squeezenet": (tv_squeezenet, (2, 3, 32, 32)),
    "tv_googlenet_blocks": (tv_googlenet_blocks, (2, 3, 32, 32)),
    "tv_convnext": (tv_convnext, (2, 3, 32, 32)),
    "tv_fcn": (tv_fcn, (2, 3, 32, 32)),
    "tv_lraspp": (tv_lraspp, (2, 3, 32, 32)),
    "timm_ghostnet": (timm_ghostnet, (2, 3, 32, 32)),
    "timm_lcnet": (timm_lcnet, (2, 3, 32, 32)),
    "timm_mixnet": (timm_mixnet, (2, 3, 32, 32)),
    "timm_vovnet_ese": (timm_vovnet_ese, (2, 3, 32, 32)),
    "timm_cspresnet": (timm_cspresnet, (2, 3, 32, 32)),
    "timm_cspdarknet": (timm_cspdarknet, (2, 3, 32, 32)),
    "timm_res2net": (timm_res2net, (2, 3, 32, 32)),
    "timm_rexnet": (timm_rexnet, (2, 3, 32, 32)),
    "timm_hrnet": (timm_hrnet, (2, 3, 32, 32)),
    "timm_convnext": (timm_convnext, (2, 3, 32, 32)),
}

VARIANTS = ("ts17", "dynamo18")


# ------------------------------------------------------------------------------------------------ export
def export(model: nn.Module, x: torch.Tensor, variant: str, path: str) -> None:
    for stale in (path, path + ".data"):
        if os.path.exists(stale):
            os.remove(stale)
    if variant == "ts17":
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, do_constant_folding=True)
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False, input_names=["x"],
                                    output_names=["y"], dynamic_shapes={"x": {0: batch}}, external_data=False)
        program.save(path, external_data=False)
    if os.path.exists(path + ".data"):                   # never expected; fold any external data back in
        proto = onnx.load(path, load_external_data=True)
        onnx.save(proto, path, save_as_external_data=False)
        os.remove(path + ".data")
    proto = onnx.load(path, load_external_data=False)
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert not external, f"{path}: external initializers {external}"
    onnx.checker.check_model(proto, full_check=True)


def ort_run(path: str, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def ops_of(path: str) -> str:
    counts = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    return " ".join(f"{op}:{n}" for op, n in sorted(counts.items()))


def main(names: list[str]) -> int:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows, failures = [], []
    for index, (name, (make, shape)) in enumerate(MODELS.items()):
        if names and name not in names:
            continue
        torch.manual_seed(SEED + index)
        model = make()
        randomize(model, torch.Generator().manual_seed(1000 + index))
        model.eval()
        params = sum(p.numel() for p in model.parameters())
        rng = np.random.default_rng(SEED + index)
        x2 = rng.standard_normal(shape).astype(np.float32)
        x3 = rng.standard_normal((3, *shape[1:])).astype(np.float32)
        with torch.no_grad():
            y2 = model(torch.from_numpy(x2)).numpy()
            y3 = model(torch.from_numpy(x3)).numpy()
        np.savez(os.path.join(HERE, f"{name}.npz"), x=x2, y=y2)
        for variant in VARIANTS:
            path = os.path.join(HERE, f"{name}_{variant}.onnx")
            try:
                with torch.no_grad():
                    export(model, torch.from_numpy(x2), variant, path)
                d2 = float(np.max(np.abs(ort_run(path, x2) - y2)))
                d3 = float(np.max(np.abs(ort_run(path, x3) - y3)))
            except Exception as error:                      # noqa: BLE001  an exporter's failure is data here
                for stale in (path, path + ".data"):
                    if os.path.exists(stale):
                        os.remove(stale)
                message = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
                failures.append((f"{name}_{variant}", message))
                traceback.print_exc(limit=2, file=sys.stderr)
                continue
            scale = float(np.max(np.abs(y2)))
            rows.append((os.path.basename(path), os.path.getsize(path), params, tuple(y2.shape), d2, d3, scale,
                         ops_of(path)))
            if not (d2 <= 1e-4 * max(1.0, scale) and d3 <= 1e-4 * max(1.0, scale)):
                failures.append((f"{name}_{variant}", f"onnxruntime differs from PyTorch by {max(d2, d3):.2e}"))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, onnx "
          f"{onnx.__version__}, onnxscript {__import__('onnxscript').__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}")
    print(f"{'file':34} {'bytes':>8} {'params':>7} {'output':16} {'ort-pt b2':>9} {'ort-pt b3':>9} {'max|y|':>7}  ops")
    for file, size, params, out, d2, d3, scale, ops in rows:
        print(f"{file:34} {size:8d} {params:7d} {str(out):16} {d2:9.2e} {d3:9.2e} {scale:7.3g}  {ops}")
    total = sum(r[1] for r in rows)
    print(f"{len(rows)} files, {total} bytes")
    for file, message in failures:
        print(f"FAILED {file}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
