"""The reference models: published parameter counts and MACs, torchvision's structure, determinism, and the
seed question (M2 = M3), checked against a naive NumPy convolution written here."""
from collections import Counter

import numpy as np
import pytest

import cnngraph as cg
from cnngraph import models
from cnngraph.tolerance import assert_close, tolerance_violation

# torchvision's published figures at 224×224 and 1000 classes (LeNet-5 at 28×28 and 10 classes).
PUBLISHED_PARAMS = {"lenet5": 61_706, "vgg11": 132_863_336, "resnet18": 11_689_512, "mobilenet_v2": 3_504_872,
                    "squeezenet1_1": 1_235_496}
# torchvision's "GFLOPS" column counts multiply-accumulates; it is rounded to 2 digits, hence 2%.
PUBLISHED_MACS = {"vgg11": 7.61e9, "resnet18": 1.81e9, "mobilenet_v2": 0.30e9, "squeezenet1_1": 0.35e9}
# Small inputs (with a named batch and an unusual channel count) that every model still accepts.
SMALL = {"lenet5": ("B", 2, 28, 28), "vgg11": ("B", 1, 32, 32), "resnet18": ("B", 1, 64, 64),
         "mobilenet_v2": ("B", 1, 64, 64), "squeezenet1_1": ("B", 1, 64, 64), "seed_m1": ("B", 2, 16, 16),
         "seed_m2": ("B", 2, 16, 16), "seed_m3": ("B", 2, 16, 16)}


@pytest.fixture(scope="module")
def default_model():
    """Each model built once at its default size (vgg11 alone holds ~530 MB of weights)."""
    cache = {}

    def build(name):
        if name not in cache:
            cache[name] = models.MODELS[name]()
        return cache[name]
    return build


def op_counts(graph) -> Counter:
    return Counter(node.op for node in graph.layers())


def output_shape(graph):
    return graph.type_of(graph.outputs[0]).shape


def test_models_registry_matches_small_inputs():
    assert set(models.MODELS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_published_figures(name, default_model):
    assert default_model(name).param_count() == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_match_published_figures(name, default_model):
    macs = default_model(name).macs()
    assert abs(macs - PUBLISHED_MACS[name]) / PUBLISHED_MACS[name] < 0.02, f"{name}: {macs:.4g} MACs"


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_default_model_lints_and_keeps_the_symbolic_batch(name, default_model):
    graph = default_model(name)
    graph.lint()
    assert graph.inputs == ["input"]
    assert graph.type_of("input").shape[0] == "N"
    assert output_shape(graph) == ("N", 10 if name == "lenet5" or name.startswith("seed") else 1000)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_input_named_batch_and_num_classes(name):
    shape = SMALL[name]
    graph = models.MODELS[name](input_shape=shape, num_classes=7)
    graph.lint()
    assert output_shape(graph) == ("B", 7)
    first_conv = next(node for node in graph.layers() if node.op == "Conv2d")
    assert first_conv.params["weight"].shape[1] == shape[1]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_weights_other_seed_other_weights(name):
    build = models.MODELS[name]
    first, again, other = (build(input_shape=SMALL[name], seed=seed) for seed in (0, 0, 1))
    for node in first.layers():
        for key, array in node.params.items():
            assert array.dtype == np.float32
            assert array.tobytes() == again.node(node.name).params[key].tobytes(), f"{node.name}.{key}"
            if node.op in ("Conv2d", "Linear") and key == "weight":
                assert not np.array_equal(array, other.node(node.name).params[key]), f"{node.name}.{key}"


def test_building_a_model_leaves_the_callers_generator_alone():
    cg.manual_seed(5)
    expected = cg.Linear(4, 4).weight
    cg.manual_seed(5)
    models.lenet5()
    np.testing.assert_array_equal(cg.Linear(4, 4).weight, expected)


def test_vgg_classifier_takes_the_feature_map_it_gets(default_model):
    assert default_model("vgg11").node("classifier.0").attrs["in_features"] == 512 * 7 * 7
    small = models.vgg11(input_shape=(None, 3, 32, 32), num_classes=10)
    assert small.type_of("features.20").shape == ("N", 512, 1, 1)
    assert small.node("classifier.0").attrs["in_features"] == 512
    assert output_shape(small) == ("N", 10)
    features = 132_863_336 - (25088 * 4096 + 4096) - (4096 * 4096 + 4096) - (4096 * 1000 + 1000)
    assert small.param_count() == features + (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)


def test_vgg11_structure(default_model):
    counts = op_counts(default_model("vgg11"))
    assert (counts["Conv2d"], counts["MaxPool2d"], counts["Linear"], counts["Dropout"]) == (8, 5, 3, 2)


def test_resnet18_structure(default_model):
    graph = default_model("resnet18")
    counts = op_counts(graph)
    assert (counts["Conv2d"], counts["BatchNorm2d"], counts["Add"], counts["ReLU"]) == (20, 20, 8, 17)
    assert all("bias" not in node.params for node in graph.layers() if node.op == "Conv2d")
    downsampled = {n.name for n in graph.layers() if ".downsample." in n.name and n.op == "Conv2d"}
    assert downsampled == {"layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"}
    assert graph.node("layer2.0.downsample.0").attrs["stride"] == (2, 2)
    assert graph.node("layer1.0.add").inputs == ("layer1.0.bn2", "maxpool")
    assert graph.type_of("layer4.1.relu2").shape == ("N", 512, 7, 7)
    assert graph.type_of("maxpool").shape == ("N", 64, 56, 56)


def test_mobilenet_v2_structure(default_model):
    graph = default_model("mobilenet_v2")
    convs = [node for node in graph.layers() if node.op == "Conv2d"]
    depthwise = [c for c in convs if c.attrs["groups"] > 1]
    assert len(convs) == 52 and len(depthwise) == 17
    assert all(c.attrs["groups"] == c.attrs["in_channels"] == c.attrs["out_channels"] for c in depthwise)
    assert all("bias" not in c.params for c in convs)
    counts = op_counts(graph)
    assert (counts["Add"], counts["ReLU6"], counts["ReLU"]) == (10, 35, 0)
    # the projection is linear: nothing but BatchNorm between the 1×1 conv and the Add
    assert graph.node("features.3.add").inputs == ("features.2.conv.3", "features.3.conv.3")
    assert graph.type_of("features.18.2").shape == ("N", 1280, 7, 7)
    assert graph.node("classifier.0").attrs["p"] == 0.2


def test_squeezenet1_1_structure(default_model):
    graph = default_model("squeezenet1_1")
    counts = op_counts(graph)
    assert (counts["Concat"], counts["MaxPool2d"], counts["Conv2d"]) == (8, 3, 26)
    assert all(n.attrs["ceil_mode"] for n in graph.layers() if n.op == "MaxPool2d")
    assert graph.node("features.3.cat").inputs == ("features.3.expand1x1_activation",
                                                     "features.3.expand3x3_activation")
    assert graph.type_of("features.12.cat").shape == ("N", 512, 13, 13)
    assert graph.node("classifier.1").attrs["kernel_size"] == (1, 1)


# --- the seed question: can a Conv layer work without a ReLU behind it? ----------------------------------
def naive_conv(x, weight, bias):
    """Unpadded, stride-1 cross-correlation as PyTorch defines it, one kernel tap at a time, in float64."""
    kh, kw = weight.shape[2:]
    h, w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((x.shape[0], weight.shape[0], h, w)) + bias.astype(np.float64)[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("oc,nchw->nohw", weight[:, :, i, j].astype(np.float64), x[:, :, i:i + h, j:j + w])
    return y


def naive_node(node, x):
    if node.op == "Conv2d":
        assert (node.attrs["pads"], node.attrs["stride"], node.attrs["groups"]) == ((0, 0, 0, 0), (1, 1), 1)
        return naive_conv(x, node.params["weight"], node.params["bias"])
    return {"ReLU": lambda: np.maximum(x, 0.0), "GlobalAvgPool2d": lambda: x.mean(axis=(2, 3), keepdims=True),
            "Flatten": lambda: x.reshape(x.shape[0], -1)}[node.op]()


def interpret(graph, x):
    """Walk the graph node by node with the naive kernels (only the ops the seed networks use)."""
    values = {"input": x.astype(np.float64)}
    for node in graph.layers():
        values[node.name] = naive_node(node, *(values[i] for i in node.inputs))
    return values[graph.outputs[0]]


def compose_convs(w1, b1, w2, b2):
    """The one convolution equal to conv(w2, b2) ∘ conv(w1, b1), both unpadded with stride 1:
    W[k, c, i+p, j+q] += Σ_m W2[k, m, i, j]·W1[m, c, p, q] (3×3 then 3×3 gives 5×5),
    B[k] = b2[k] + Σ_{m,i,j} W2[k, m, i, j]·b1[m]."""
    w1, w2 = w1.astype(np.float64), w2.astype(np.float64)
    (k1h, k1w), (k2h, k2w) = w1.shape[2:], w2.shape[2:]
    weight = np.zeros((w2.shape[0], w1.shape[1], k1h + k2h - 1, k1w + k2w - 1))
    for i in range(k2h):
        for j in range(k2w):
            weight[:, :, i:i + k1h, j:j + k1w] += np.einsum("km,mcpq->kcpq", w2[:, :, i, j], w1)
    bias = b2 + np.einsum("kmij,m->k", w2, b1.astype(np.float64))
    return weight.astype(np.float32), bias.astype(np.float32)


def m3_from(m2):
    """M3 carrying the composition of M2's two kernels."""
    l1, l2 = m2.node("L1").params, m2.node("L2").params
    weight, bias = compose_convs(l1["weight"], l1["bias"], l2["weight"], l2["bias"])
    m3 = models.seed_m3(input_shape=m2.type_of("input").shape, num_classes=bias.shape[0])
    m3.set_params("L", weight=weight, bias=bias)
    m3.lint()
    return m3


@pytest.fixture
def images():
    return np.random.default_rng(42).standard_normal((2, 3, 32, 32)).astype(np.float32)


def test_m1_and_m2_differ_only_by_the_relu():
    m1, m2 = models.seed_m1(), models.seed_m2()
    assert [n.op for n in m1.layers()] == ["Conv2d", "ReLU", "Conv2d", "GlobalAvgPool2d", "Flatten"]
    assert [n.op for n in m2.layers()] == ["Conv2d", "Conv2d", "GlobalAvgPool2d", "Flatten"]
    for name in ("L1", "L2"):
        for key, array in m1.node(name).params.items():
            np.testing.assert_array_equal(array, m2.node(name).params[key])
    assert models.seed_m3().node("L").attrs["kernel_size"] == (5, 5)


def test_m2_is_the_single_conv_m3(images):
    m2 = models.seed_m2()
    m3 = m3_from(m2)
    assert m3.param_count() < m2.param_count()
    expected = interpret(m2, images)
    assert_close(interpret(m3, images), expected, "M3 (naive)")
    assert_close(cg.run(m2, images), expected, "M2 (NumPy backend)")
    assert_close(cg.run(m3, images), expected, "M3 (NumPy backend)")


def test_m1_is_not_m3_the_relu_is_what_makes_two_layers(images):
    m1 = models.seed_m1()
    m3 = m3_from(models.seed_m2())
    assert tolerance_violation(interpret(m1, images), interpret(m3, images)) > 10.0
