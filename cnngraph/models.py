"""Reference networks built as Graphs: classic architectures to test, optimize and benchmark on.

Each builder follows torchvision's definition layer for layer (and its module names, so a node reads like
``model.named_modules()``: "features.0", "layer1.0.conv1", ...). Weights are PyTorch's *default* layer
initialisation drawn under ``init.seeded(seed)``, not torchvision's own init schemes or pretrained values:
the models exist to be compiled and compared, and only their structure and determinism matter.

The first convolution takes its channels from ``input_shape[1]``. Where torchvision ends the features with
an adaptive average pool to a fixed size, the classifier is sized from the feature map this input actually
produces instead (see ``vgg11``).
"""
from __future__ import annotations

from .graph import Graph, Value
from .init import seeded
from .layers import Add, BatchNorm2d, Concat, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, ReLU6
from .shapes import product

IMAGENET = (None, 3, 224, 224)


def _start(name: str, input_shape) -> tuple[Graph, Value]:
    graph = Graph(name)
    return graph, graph.input("input", input_shape)


def _chain(graph: Graph, x: Value, prefix: str, layers) -> Value:
    """Apply layers in order, named like an nn.Sequential's children: prefix.0, prefix.1, ..."""
    for index, layer in enumerate(layers):
        x = graph.apply(layer, x, name=f"{prefix}.{index}")
    return x


def _named(graph: Graph, x: Value, named_layers) -> Value:
    """Apply (name, layer) pairs in order."""
    for name, layer in named_layers:
        x = graph.apply(layer, x, name=name)
    return x


def _features(x: Value) -> int:
    """The per-sample size of a flattened value: the in_features of the Linear that reads it."""
    size = product(x.shape[1:])
    if not isinstance(size, int):
        raise ValueError(f"{x!r}: the classifier needs a static feature size")
    return size


# --- LeNet-5 -----------------------------------------------------------------------------------------------
def lenet5(input_shape=(None, 1, 28, 28), num_classes: int = 10, seed: int = 0) -> Graph:
    """LeNet-5 as usually written for MNIST: ReLU and max pooling, and padding 2 so that a 28×28 digit is
    seen like the original's 32×32 input. fc1 takes whatever the second pool produces (16·5·5 at 28×28)."""
    with seeded(seed):
        graph, x = _start("lenet5", input_shape)
        x = _named(graph, x, [("conv1", Conv2d(input_shape[1], 6, 5, padding=2)), ("relu1", ReLU()),
                              ("pool1", MaxPool2d(2)), ("conv2", Conv2d(6, 16, 5)), ("relu2", ReLU()),
                              ("pool2", MaxPool2d(2)), ("flatten", Flatten())])
        x = _named(graph, x, [("fc1", Linear(_features(x), 120)), ("relu3", ReLU()), ("fc2", Linear(120, 84)),
                              ("relu4", ReLU()), ("fc3", Linear(84, num_classes))])
        graph.output(x)
    return graph


# --- VGG ---------------------------------------------------------------------------------------------------
VGG11_CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11(input_shape=IMAGENET, num_classes: int = 1000, seed: int = 0) -> Graph:
    """torchvision's vgg11 (configuration "A", no batch norm).

    torchvision pools the features to 7×7 with AdaptiveAvgPool2d((7, 7)), the identity at 224×224, so the
    pool is left out and the first classifier layer takes the feature map as it is: 512·7·7 at 224, 512 at
    32×32. (At other sizes torchvision would resample the map to 7×7 instead; this keeps small inputs cheap.)
    """
    with seeded(seed):
        graph, x = _start("vgg11", input_shape)
        layers, channels = [], input_shape[1]
        for item in VGG11_CONFIG:
            if item == "M":
                layers.append(MaxPool2d(2, 2))
            else:
                layers += [Conv2d(channels, item, 3, padding=1), ReLU()]
                channels = item
        x = _chain(graph, x, "features", layers)
        x = graph.apply(Flatten(), x, name="flatten")
        x = _chain(graph, x, "classifier", [Linear(_features(x), 4096), ReLU(), Dropout(0.5), Linear(4096, 4096),
                                            ReLU(), Dropout(0.5), Linear(4096, num_classes)])
        graph.output(x)
    return graph


def _pool_flatten(graph: Graph, x: Value) -> Value:
    """torchvision's adaptive_avg_pool2d(x, 1) then torch.flatten(x, 1)."""
    return graph.apply(Flatten(), graph.apply(GlobalAvgPool2d(), x, name="avgpool"), name="flatten")


# --- ResNet ------------------------------------------------------------------------------------------------
def _basic_block(graph: Graph, x: Value, prefix: str, in_channels: int, channels: int, stride: int) -> Value:
    """torchvision's BasicBlock: two 3×3 conv+BN, plus a 1×1 conv+BN shortcut when the shape changes."""
    h = graph.apply(Conv2d(in_channels, channels, 3, stride, 1, bias=False), x, name=f"{prefix}.conv1")
    h = graph.apply(BatchNorm2d(channels), h, name=f"{prefix}.bn1")
    h = graph.apply(ReLU(), h, name=f"{prefix}.relu1")
    h = graph.apply(Conv2d(channels, channels, 3, 1, 1, bias=False), h, name=f"{prefix}.conv2")
    h = graph.apply(BatchNorm2d(channels), h, name=f"{prefix}.bn2")
    shortcut = x
    if stride != 1 or in_channels != channels:
        shortcut = _chain(graph, x, f"{prefix}.downsample",
                          [Conv2d(in_channels, channels, 1, stride, bias=False), BatchNorm2d(channels)])
    return graph.apply(ReLU(), graph.apply(Add(), h, shortcut, name=f"{prefix}.add"), name=f"{prefix}.relu2")


def resnet18(input_shape=IMAGENET, num_classes: int = 1000, seed: int = 0) -> Graph:
    """torchvision's resnet18: a 7×7/2 stem, four stages of two BasicBlocks (64, 128, 256, 512 channels)."""
    with seeded(seed):
        graph, x = _start("resnet18", input_shape)
        x = _named(graph, x, [("conv1", Conv2d(input_shape[1], 64, 7, 2, 3, bias=False)), ("bn1", BatchNorm2d(64)),
                              ("relu", ReLU()), ("maxpool", MaxPool2d(3, 2, 1))])
        channels = 64
        for stage, width in enumerate((64, 128, 256, 512), start=1):
            for block in range(2):
                stride = 2 if stage > 1 and block == 0 else 1
                x = _basic_block(graph, x, f"layer{stage}.{block}", channels, width, stride)
                channels = width
        graph.output(graph.apply(Linear(512, num_classes), _pool_flatten(graph, x), name="fc"))
    return graph


# --- MobileNetV2 -------------------------------------------------------------------------------------------
# (expansion t, output channels c, repeats n, first stride s), width multiplier 1.0
MOBILENET_V2_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> list:
    """torchvision's Conv2dNormActivation as MobileNetV2 uses it: bias-free conv, BN, ReLU6."""
    return [Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            BatchNorm2d(out_channels), ReLU6()]


def _inverted_residual(graph: Graph, x: Value, prefix: str, in_channels: int, out_channels: int, stride: int,
                       expansion: int) -> Value:
    """Expand 1×1 (skipped when t = 1), depthwise 3×3, project 1×1 with no activation; residual Add when the
    block keeps the shape (stride 1 and as many channels out as in)."""
    hidden = in_channels * expansion
    stages = [_conv_bn_relu6(in_channels, hidden, 1)] if expansion != 1 else []
    stages.append(_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden))
    h = x
    for index, stage in enumerate(stages):
        h = _chain(graph, h, f"{prefix}.conv.{index}", stage)
    h = graph.apply(Conv2d(hidden, out_channels, 1, bias=False), h, name=f"{prefix}.conv.{len(stages)}")
    h = graph.apply(BatchNorm2d(out_channels), h, name=f"{prefix}.conv.{len(stages) + 1}")
    if stride == 1 and in_channels == out_channels:
        h = graph.apply(Add(), x, h, name=f"{prefix}.add")
    return h


def mobilenet_v2(input_shape=IMAGENET, num_classes: int = 1000, seed: int = 0) -> Graph:
    """torchvision's mobilenet_v2 at width 1.0: 32-channel stem, 17 inverted residual blocks, 1×1 to 1280."""
    with seeded(seed):
        graph, x = _start("mobilenet_v2", input_shape)
        x = _chain(graph, x, "features.0", _conv_bn_relu6(input_shape[1], 32, 3, 2))
        channels, index = 32, 1
        for expansion, width, repeats, first_stride in MOBILENET_V2_CONFIG:
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 else 1
                x = _inverted_residual(graph, x, f"features.{index}", channels, width, stride, expansion)
                channels, index = width, index + 1
        x = _chain(graph, x, f"features.{index}", _conv_bn_relu6(channels, 1280, 1))
        graph.output(_chain(graph, _pool_flatten(graph, x), "classifier", [Dropout(0.2), Linear(1280, num_classes)]))
    return graph


# --- SqueezeNet --------------------------------------------------------------------------------------------
# After the stem (conv 3×3/2, ReLU): "M" is MaxPool2d(3, 2, ceil_mode=True), a triple is a Fire module
# (squeeze, expand 1×1, expand 3×3 channels).
SQUEEZENET1_1_CONFIG = ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
                        (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))


def _fire(graph: Graph, x: Value, prefix: str, in_channels: int, squeeze: int, expand1x1: int,
          expand3x3: int) -> Value:
    """torchvision's Fire: squeeze 1×1 + ReLU, then 1×1 and 3×3 expansions (+ ReLU) concatenated on channels."""
    s = graph.apply(ReLU(), graph.apply(Conv2d(in_channels, squeeze, 1), x, name=f"{prefix}.squeeze"),
                    name=f"{prefix}.squeeze_activation")
    a = graph.apply(ReLU(), graph.apply(Conv2d(squeeze, expand1x1, 1), s, name=f"{prefix}.expand1x1"),
                    name=f"{prefix}.expand1x1_activation")
    b = graph.apply(ReLU(), graph.apply(Conv2d(squeeze, expand3x3, 3, padding=1), s, name=f"{prefix}.expand3x3"),
                    name=f"{prefix}.expand3x3_activation")
    return graph.apply(Concat(axis=1), a, b, name=f"{prefix}.cat")


def squeezenet1_1(input_shape=IMAGENET, num_classes: int = 1000, seed: int = 0) -> Graph:
    """torchvision's squeezenet1_1; its classifier is a 1×1 convolution per class, then a global average."""
    with seeded(seed):
        graph, x = _start("squeezenet1_1", input_shape)
        x = _chain(graph, x, "features", [Conv2d(input_shape[1], 64, 3, 2), ReLU()])
        channels = 64
        for index, item in enumerate(SQUEEZENET1_1_CONFIG, start=2):
            if item == "M":
                x = graph.apply(MaxPool2d(3, 2, ceil_mode=True), x, name=f"features.{index}")
            else:
                x = _fire(graph, x, f"features.{index}", channels, *item)
                channels = item[1] + item[2]
        x = _chain(graph, x, "classifier", [Dropout(0.5), Conv2d(channels, num_classes, 1), ReLU(), GlobalAvgPool2d()])
        graph.output(graph.apply(Flatten(), x, name="flatten"))
    return graph


# --- The seed question: can a Conv layer work without a ReLU behind it? ------------------------------------
def _two_convs(name: str, input_shape, num_classes: int, hidden: int, seed: int, relu: bool) -> Graph:
    with seeded(seed):
        graph, x = _start(name, input_shape)
        x = graph.apply(Conv2d(input_shape[1], hidden, 3), x, name="L1")
        if relu:
            x = graph.apply(ReLU(), x, name="relu")
        x = graph.apply(Conv2d(hidden, num_classes, 3), x, name="L2")
        graph.output(_pool_flatten(graph, x))
    return graph


def seed_m1(input_shape=(None, 3, 32, 32), num_classes: int = 10, hidden: int = 16, seed: int = 0) -> Graph:
    """M1: L1 = Conv 3×3 → ReLU → L2 = Conv 3×3 → global average. The ReLU makes it a two-layer network."""
    return _two_convs("seed_m1", input_shape, num_classes, hidden, seed, relu=True)


def seed_m2(input_shape=(None, 3, 32, 32), num_classes: int = 10, hidden: int = 16, seed: int = 0) -> Graph:
    """M2: M1 without the ReLU (same seed, same weights). A Conv does run without a ReLU, but L2∘L1 is then
    affine: two unpadded 3×3 convolutions are one 5×5 convolution (M3) whatever ``hidden`` is, with
    W[k, c] = Σ_m W2[k, m] ∗ W1[m, c] (full 2-D convolution of kernels), b[k] = b2[k] + Σ_{m,i,j} W2[k, m, i, j]·b1[m].
    Without the ReLU the extra layer adds parameters but no expressive power."""
    return _two_convs("seed_m2", input_shape, num_classes, hidden, seed, relu=False)


def seed_m3(input_shape=(None, 3, 32, 32), num_classes: int = 10, seed: int = 0) -> Graph:
    """M3: the single layer M2 collapses to, L = Conv 5×5 → global average."""
    with seeded(seed):
        graph, x = _start("seed_m3", input_shape)
        x = graph.apply(Conv2d(input_shape[1], num_classes, 5), x, name="L")
        graph.output(_pool_flatten(graph, x))
    return graph


MODELS = {"lenet5": lenet5, "vgg11": vgg11, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2,
          "squeezenet1_1": squeezenet1_1, "seed_m1": seed_m1, "seed_m2": seed_m2, "seed_m3": seed_m3}
