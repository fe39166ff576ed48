"""The optimization passes and the pass manager: structure after each rewrite, refusals with their reasons,
and the numbers before and after (every test runs both graphs on the same random inputs)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnngraph as cg
from cnngraph.passes import OptimizeError, Pass, PassResult, manager
from cnngraph.tolerance import assert_close

try:
    from reference import reference_run
except ImportError:                                          # run from the repository root
    from tests.reference import reference_run


def inputs_for(graph, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([d if isinstance(d, int) else batch for d in graph.type_of(n).shape]).astype(np.float32)
            for n in graph.inputs]


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def assert_equivalent(before, after, batches=(1, 3)):
    """Same outputs in the NumPy backend, and the optimized graph agrees with the naive reference."""
    after.lint()
    assert after.outputs == before.outputs
    for batch in batches:
        arrays = inputs_for(before, batch, seed=batch)
        expected = as_tuple(cg.run(before, *arrays))
        for name, a, b, r in zip(before.outputs, as_tuple(cg.run(after, *arrays)), expected,
                                 as_tuple(reference_run(after, *arrays))):
            assert_close(a, b, f"output {name!r} at batch {batch}")
            assert_close(r, b, f"reference of the optimized graph, output {name!r}")


def ops(graph):
    return [n.op for n in graph.layers()]


def chain(*layers, shape=(None, 3, 8, 8), names=None):
    graph = cg.Graph("g")
    x = graph.input("x", shape)
    for index, layer in enumerate(layers):
        x = graph.apply(layer, x, name=names[index] if names else None)
    graph.output(x)
    return graph


def random_bn(channels, rng):
    bn = cg.BatchNorm2d(channels)
    bn.weight, bn.bias = rng.uniform(0.5, 1.5, channels), rng.normal(size=channels)
    bn.running_mean, bn.running_var = rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)
    return bn


# --- the manager -----------------------------------------------------------------------------------------------
def test_optimize_returns_a_new_graph_and_leaves_the_input_alone():
    graph = cg.models.seed_m2()
    version, layers = graph.version, [(n.name, n.op) for n in graph.layers()]
    optimized = cg.optimize(graph)
    assert graph.version == version and [(n.name, n.op) for n in graph.layers()] == layers
    assert optimized is not graph and len(optimized.layers()) < len(layers)
    assert_equivalent(graph, optimized)


def test_levels():
    rng = np.random.default_rng(0)
    graph = chain(cg.Conv2d(3, 4, 3), random_bn(4, rng), cg.ReLU(), cg.Dropout(0.5))
    assert ops(cg.optimize(graph, level=0)) == ops(graph)
    assert ops(cg.optimize(graph, level=1)) == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout"]   # output kept
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "Dropout"]
    with pytest.raises(ValueError, match="level"):
        cg.optimize(graph, level=4)


def test_disable_and_unknown_pass_names():
    graph = chain(cg.Conv2d(3, 4, 3), cg.ReLU())
    assert ops(cg.optimize(graph, disable=["fuse_activation"])) == ["Conv2d", "ReLU"]
    with pytest.raises(ValueError, match="fuse_activation"):
        cg.optimize(graph, disable=["fuse_relu"])


def test_report_lists_passes_rewrites_and_refusals():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 8, 8))
    conv = graph.apply(cg.Conv2d(3, 4, 3), x, name="conv")
    graph.output(graph.apply(cg.ReLU(), conv, name="relu"), graph.apply(cg.Sigmoid(), conv, name="gate"))
    report = cg.optimize(graph).report
    text = str(report)
    assert "fuse_activation" in text and "fold_linear" in text
    assert any("conv has 2 readers" in r for r in report.refusals)
    assert report.rewrites == []


def test_a_pass_that_changes_the_numbers_is_caught_by_verify(monkeypatch):
    def broken(graph, level=2):
        for node in graph.layers():
            if node.op == "Conv2d":
                graph.replace(node.name, node.op, node.inputs, node.attrs,
                              {k: v * 1.01 for k, v in node.params.items()})
        return PassResult(graph, rewrites=["scaled"])
    monkeypatch.setattr(manager, "PIPELINE", [Pass("broken", 1, broken)] + manager.PIPELINE)
    graph = cg.models.seed_m1()
    with pytest.raises(OptimizeError, match="pass broken changed output"):
        cg.optimize(graph, verify=True)


def test_a_pass_that_breaks_the_graph_is_named_with_the_ones_before(monkeypatch):
    def breaking(graph, level=2):
        node = graph.layers()[0]                   # reaching around the Graph methods (nodes are frozen):
        graph._nodes[node.name] = dataclasses.replace(node, attrs=dict(node.attrs, out_channels=99))
        return PassResult(graph, rewrites=["broke"])
    monkeypatch.setattr(manager, "PIPELINE", manager.PIPELINE[:2] + [Pass("breaking", 1, breaking)])
    with pytest.raises(OptimizeError, match="pass breaking failed \\(after remove_identity, dead_code\\)"):
        cg.optimize(cg.models.seed_m1())


# --- cleanups --------------------------------------------------------------------------------------------------
def test_identity_and_dropout_are_removed_but_an_output_keeps_its_name():
    graph = chain(cg.Identity(), cg.Conv2d(3, 2, 1), cg.Dropout(0.3), cg.ReLU(), cg.Identity(),
                  names=["id1", "conv", "drop", "relu", "out"])
    optimized = cg.optimize(graph, level=1)
    assert [(n.name, n.op) for n in optimized.layers()] == [("conv", "Conv2d"), ("relu", "ReLU"), ("out", "Identity")]
    assert_equivalent(graph, optimized)


def test_dead_code_is_erased_and_inputs_stay():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    graph.input("unused", (None, 2))
    graph.apply(cg.Linear(3, 5), x, name="dead")
    graph.output(graph.apply(cg.ReLU(), x, name="relu"))
    optimized = cg.optimize(graph, level=1)
    assert optimized.inputs == ["x", "unused"] and ops(optimized) == ["ReLU"]


def test_constant_folding_folds_small_values_and_refuses_large_ones(monkeypatch):
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 4, 4))
    a = graph.apply(cg.Constant(np.full((3, 1, 1), 2.0)), name="a")
    b = graph.apply(cg.Constant(np.arange(3.0).reshape(3, 1, 1)), name="b")
    scale = graph.apply(cg.Mul(), a, b, name="scale")
    graph.output(graph.apply(cg.Mul(), x, scale, name="y"))
    optimized = cg.optimize(graph, level=1)
    assert optimized.node("scale").op == "Constant"
    np.testing.assert_array_equal(optimized.node("scale").params["value"].reshape(-1), [0, 2, 4])
    assert_equivalent(graph, optimized)
    from cnngraph.passes import constant_folding
    monkeypatch.setattr(constant_folding, "MAX_ELEMENTS", 2)
    refused = cg.optimize(graph, level=1)
    assert refused.node("scale").op == "Mul"
    assert any("scale (Mul) not folded: its value has 3 elements" in r for r in refused.report.refusals)


def test_consecutive_reshapes_merge():
    graph = chain(cg.Flatten(2, 3), cg.Reshape((0, -1)), cg.Linear(48, 2), shape=(None, 3, 4, 4),
                  names=["f", "r", "fc"])
    optimized = cg.optimize(graph, level=1)
    assert [(n.name, n.op) for n in optimized.layers()] == [("r", "Flatten"), ("fc", "Linear")]
    assert optimized.node("r").attrs == {"start_dim": 1, "end_dim": 3}
    assert_equivalent(graph, optimized)


def test_common_subexpressions_merge_unless_an_output():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = cg.Conv2d(3, 4, 3)
    a, b = graph.apply(conv, x, name="a"), graph.apply(conv, x, name="b")
    graph.output(graph.apply(cg.Add(), graph.apply(cg.ReLU(), a, name="ra"), graph.apply(cg.ReLU(), b, name="rb"),
                             name="sum"))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Conv2d", "ReLU", "Add"]
    assert optimized.node("sum").inputs == ("ra", "ra")
    assert_equivalent(graph, optimized)


# --- BatchNorm folding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 4])
def test_batchnorm_after_conv_folds_and_a_missing_bias_appears(bias, groups):
    rng = np.random.default_rng(groups)
    graph = chain(cg.Conv2d(4, 8, 3, padding=1, groups=groups, bias=bias), random_bn(8, rng), shape=(None, 4, 6, 6),
                  names=["conv", "bn"])
    optimized = cg.optimize(graph, level=2)
    assert [(n.name, n.op) for n in optimized.layers()] == [("bn", "Conv2d")]
    assert "bias" in optimized.node("bn").params
    assert_equivalent(graph, optimized)


def test_batchnorm_after_linear_folds_on_2d_values():
    rng = np.random.default_rng(1)
    graph = chain(cg.Linear(5, 4), random_bn(4, rng), shape=(None, 5))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear"]
    assert_equivalent(graph, optimized)


def test_shared_weight_with_two_batchnorms_is_not_corrupted():
    """TNN #808: two layers sharing one weight array feed different BatchNorms."""
    rng = np.random.default_rng(2)
    conv = cg.Conv2d(3, 4, 3)
    original = conv.weight.copy()
    graph = cg.Graph("g")
    x, y = graph.input("x", (None, 3, 6, 6)), graph.input("y", (None, 3, 6, 6))
    left = graph.apply(random_bn(4, rng), graph.apply(conv, x, name="c1"), name="bn1")
    right = graph.apply(random_bn(4, rng), graph.apply(conv, y, name="c2"), name="bn2")
    graph.output(graph.apply(cg.Add(), left, right, name="sum"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "Conv2d", "Add"]
    np.testing.assert_array_equal(conv.weight, original)
    np.testing.assert_array_equal(graph.node("c1").params["weight"], original)
    assert_equivalent(graph, optimized)


def test_batchnorm_is_not_folded_across_a_second_reader_or_an_output():
    rng = np.random.default_rng(3)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = graph.apply(cg.Conv2d(3, 4, 3), x, name="conv")
    graph.output(graph.apply(random_bn(4, rng), conv, name="bn"), conv)
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "BatchNorm2d"]
    assert any("conv is a graph output" in r for r in optimized.report.refusals)


def test_batchnorm_before_an_unpadded_conv_folds_but_not_before_a_padded_one():
    rng = np.random.default_rng(4)
    unpadded = chain(random_bn(4, rng), cg.Conv2d(4, 6, 3, groups=2), shape=(None, 4, 7, 7))
    optimized = cg.optimize(unpadded)
    assert ops(optimized) == ["Conv2d"]
    assert_equivalent(unpadded, optimized)
    padded = chain(random_bn(4, rng), cg.Conv2d(4, 6, 3, padding=1), shape=(None, 4, 7, 7))
    kept = cg.optimize(padded)
    assert ops(kept) == ["BatchNorm2d", "Conv2d"]
    assert any("pads with zeros" in r for r in kept.report.refusals)


def test_per_channel_constant_mul_and_add_fold_like_batchnorm():
    """How several light-zoo models spell BatchNorm: Conv -> Mul(c) -> Add(d), constants per channel."""
    rng = np.random.default_rng(5)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    h = graph.apply(cg.Conv2d(3, 4, 3, bias=False), x, name="conv")
    h = graph.apply(cg.Mul(), h, graph.apply(cg.Constant(rng.uniform(0.5, 2, (4, 1, 1))), name="scale"), name="mul")
    h = graph.apply(cg.Add(broadcast=True), graph.apply(cg.Constant(rng.normal(size=(1, 4, 1, 1))), name="shift"), h,
                    name="add")
    graph.output(graph.apply(cg.Mul(), h, graph.apply(cg.Constant(rng.normal(size=(1, 1, 4))), name="row"), name="y"))
    optimized = cg.optimize(graph)
    assert [(n.name, n.op) for n in optimized.layers()] == [("add", "Conv2d"), ("row", "Constant"), ("y", "Mul")]
    assert any("not per channel" in r for r in optimized.report.refusals)
    assert_equivalent(graph, optimized)


# --- activation fusion -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [cg.ReLU(), cg.ReLU6(), cg.LeakyReLU(0.2), cg.Sigmoid(), cg.Tanh(),
                                        cg.Hardtanh(-0.5, 0.25)])
def test_activation_fuses_into_conv_and_linear(activation):
    graph = chain(cg.Conv2d(3, 4, 3), activation, cg.Flatten(), cg.Linear(144, 5), activation,
                  names=["conv", "act1", "flat", "fc", "act2"])
    optimized = cg.optimize(graph)
    assert [(n.name, n.op) for n in optimized.layers()] == [("act1", "Conv2d"), ("flat", "Flatten"), ("act2", "Linear")]
    assert optimized.node("act1").attrs["activation"] == {"op": activation.op, "attrs": activation.attrs}
    assert_equivalent(graph, optimized)
    model = cg.export_onnx(optimized)                           # written back as the standard pair
    assert [n.op_type for n in model.graph.node][:2] == ["Conv", {"ReLU": "Relu", "ReLU6": "Clip", "Hardtanh": "Clip",
                                                                  "LeakyReLU": "LeakyRelu"}.get(activation.op, activation.op)]
    x = inputs_for(graph)[0]
    assert_close(cg.run(optimized, x, backend="onnxruntime"), cg.run(graph, x))


def test_activation_is_not_fused_when_the_conv_output_is_read_elsewhere():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 6, 6))
    conv = graph.apply(cg.Conv2d(3, 3, 3, padding=1), x, name="conv")
    graph.output(graph.apply(cg.Add(), graph.apply(cg.ReLU(), conv, name="relu"), conv, name="sum"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "ReLU", "Add"]
    assert_equivalent(graph, optimized)


# --- folding linear layers -------------------------------------------------------------------------------------
def test_linear_chain_folds_into_one_linear():
    graph = chain(cg.Linear(6, 5), cg.Linear(5, 4, bias=False), cg.Linear(4, 3), shape=(None, 6),
                  names=["fc1", "fc2", "fc3"])
    optimized = cg.optimize(graph)
    assert [(n.name, n.op) for n in optimized.layers()] == [("fc3", "Linear")]
    fc = [graph.node(n).params for n in ("fc1", "fc2", "fc3")]
    weight = fc[2]["weight"].astype(np.float64) @ fc[1]["weight"] @ fc[0]["weight"]
    bias = fc[2]["weight"].astype(np.float64) @ (fc[1]["weight"] @ fc[0]["bias"]) + fc[2]["bias"]
    np.testing.assert_allclose(optimized.node("fc3").params["weight"], weight, rtol=1e-6)
    np.testing.assert_allclose(optimized.node("fc3").params["bias"], bias, rtol=1e-6)
    assert_equivalent(graph, optimized)


def test_bottleneck_is_not_folded_at_any_level():
    graph = chain(cg.Linear(256, 8), cg.Linear(8, 256), shape=(None, 256))
    for level in (2, 3):
        optimized = cg.optimize(graph, level=level)
        assert ops(optimized) == ["Linear", "Linear"]
        assert any("would" in r for r in optimized.report.refusals)


def test_chain_is_split_where_that_costs_least():
    """64→64→4→64: folding the first two (64·4 MACs instead of 64·64 + 64·4) pays; folding the 4→64
    expansion in would make a 64×64 matrix again."""
    graph = chain(cg.Linear(64, 64), cg.Linear(64, 4), cg.Linear(4, 64), shape=(None, 64), names=["a", "b", "c"])
    optimized = cg.optimize(graph)
    assert [(n.name, n.attrs["in_features"], n.attrs["out_features"]) for n in optimized.layers()] == \
        [("b", 64, 4), ("c", 4, 64)]
    assert_equivalent(graph, optimized)


def test_level_3_folds_when_macs_fall_although_parameters_grow():
    """A narrow 3×3 conv at full resolution, then a strided 1×1 conv widening it: the folded 3×3 conv runs at
    the low resolution only (fewer MACs) but holds a wide kernel (more parameters)."""
    graph = chain(cg.Conv2d(4, 2, 3, padding=1), cg.Conv2d(2, 8, 1, stride=2), shape=(None, 4, 8, 8),
                  names=["narrow", "widen"])
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "Conv2d"]
    folded = cg.optimize(graph, level=3)
    assert ops(folded) == ["Conv2d"]
    assert folded.macs() < graph.macs() and folded.param_count() > graph.param_count()
    assert_equivalent(graph, folded)


@pytest.mark.parametrize("between", [cg.ReLU(), cg.MaxPool2d(2), cg.Sigmoid()])
def test_a_nonlinearity_stops_the_fold(between):
    graph = chain(cg.Conv2d(3, 4, 3), between, cg.Conv2d(4, 2, 1))
    optimized = cg.optimize(graph)
    assert "Conv2d" in ops(optimized) and len([o for o in ops(optimized) if o == "Conv2d"]) == 2
    assert_equivalent(graph, optimized)


def test_linear_layers_are_not_folded_across_an_output_or_a_second_reader():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 6))
    h = graph.apply(cg.Linear(6, 4), x, name="fc1")
    graph.output(graph.apply(cg.Linear(4, 2), h, name="fc2"), h)
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Linear", "Linear"]
    assert_equivalent(graph, optimized)


def test_seed_m2_folds_to_the_size_of_m3_and_m1_stays():
    m2, m3 = cg.models.seed_m2(), cg.models.seed_m3()
    folded = cg.optimize(m2, verify=True)
    conv = [n for n in folded.layers() if n.op == "Conv2d"]
    assert len(conv) == 1 and conv[0].attrs["kernel_size"] == (5, 5)
    assert folded.param_count() == m3.param_count() and folded.macs() == m3.macs()
    assert_equivalent(m2, folded)
    m1 = cg.models.seed_m1()
    assert [n.op for n in cg.optimize(m1).layers()].count("Conv2d") == 2


@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_conv_after_any_conv_folds(stride):
    graph = chain(cg.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2), cg.Conv2d(8, 2, 1, stride=stride),
                  shape=(None, 3, 9, 9))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d"]
    assert optimized.node(graph.outputs[0]).attrs["stride"] == (2 * stride, 2 * stride)
    assert_equivalent(graph, optimized)


def test_padded_second_conv_is_refused_and_would_be_wrong_at_the_border():
    graph = chain(cg.Conv2d(3, 4, 3), cg.Conv2d(4, 2, 3, padding=1), names=["c1", "c2"])
    optimized = cg.optimize(graph, level=3)
    assert ops(optimized) == ["Conv2d", "Conv2d"]
    assert any("c2 pads its input with zeros" in r for r in optimized.report.refusals)


# --- whole models and random graphs ----------------------------------------------------------------------------
SMALL_INPUTS = {"vgg11": (None, 3, 32, 32), "resnet18": (None, 3, 64, 64), "mobilenet_v2": (None, 3, 64, 64),
                "squeezenet1_1": (None, 3, 64, 64)}


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(cg.models.MODELS))
def test_builtin_models_keep_their_outputs(name, level):
    make = cg.models.MODELS[name]
    graph = make(input_shape=SMALL_INPUTS[name]) if name in SMALL_INPUTS else make()
    optimized = cg.optimize(graph, level=level, verify=True)
    optimized.lint()
    arrays = inputs_for(graph, batch=2)
    assert_close(cg.run(optimized, *arrays), cg.run(graph, *arrays))
    assert_close(cg.run(optimized, *arrays, backend="onnxruntime"), cg.run(graph, *arrays))
    assert optimized.macs() <= graph.macs()
    if level < 3:
        assert optimized.param_count() <= graph.param_count()
    assert cg.optimize(optimized, level=level).report.rewrites == []


@st.composite
def random_graphs(draw):
    graph = cg.Graph("random")
    channels = draw(st.integers(1, 4))
    size = draw(st.integers(5, 9))
    x = graph.input("x", (None, channels, size, size))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv1", "bn", "relu", "pool", "add", "sigmoid"]))
        spatial = graph.type_of(x).shape[2]
        if kind in ("conv", "conv1"):
            out = draw(st.integers(1, 5))
            kernel = 1 if kind == "conv1" or spatial < 3 else 3
            x = graph.apply(cg.Conv2d(channels, out, kernel, padding=draw(st.integers(0, kernel // 2)),
                                      bias=draw(st.booleans())), x)
            channels = out
        elif kind == "bn":
            x = graph.apply(random_bn(channels, rng), x)
        elif kind == "relu":
            x = graph.apply(cg.ReLU(), x)
        elif kind == "sigmoid":
            x = graph.apply(cg.Sigmoid(), x)
        elif kind == "pool" and spatial >= 4:
            x = graph.apply(draw(st.sampled_from([cg.MaxPool2d(2), cg.AvgPool2d(2)])), x)
        elif kind == "add":
            x = graph.apply(cg.Add(), x, graph.apply(cg.Conv2d(channels, channels, 1), x))
    x = graph.apply(cg.Flatten(), x)
    features = graph.type_of(x).shape[1]
    for _ in range(draw(st.integers(0, 3))):
        out = draw(st.integers(1, 6))
        x = graph.apply(cg.Linear(features, out), x)
        features = out
    graph.output(x)
    return graph


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=random_graphs(), level=st.integers(0, 3))
def test_random_graphs_optimize_to_the_same_outputs_and_settle(graph, level):
    optimized = cg.optimize(graph, level=level, verify=True)
    assert_equivalent(graph, optimized, batches=(2,))
    assert cg.optimize(optimized, level=level).report.rewrites == []


# --- lint ------------------------------------------------------------------------------------------------------
def test_lint_names_the_linear_chain_plainly():
    graph = cg.Sequential(cg.Linear(4096, 64), cg.Dropout(0.1), cg.Linear(64, 10), cg.ReLU(), cg.ReLU()) \
        .to_graph(input_shape=(None, 4096))
    version = graph.version
    findings = cg.lint(graph)
    assert graph.version == version
    assert [f.kind for f in findings] == ["linear-chain", "dropout", "double-activation"]
    assert str(findings[0]) == ("fc1 (Linear 4096→64) → fc2 (Linear 64→10): no non-linearity between them; together "
                                "they are one linear map of rank ≤ 64, equivalent to a single Linear(4096→10)")


def test_lint_flags_seed_m2_and_not_m1():
    m2 = [str(f) for f in cg.lint(cg.models.seed_m2())]
    assert m2 == ["L1 (Conv2d 3→16, 3×3) → L2 (Conv2d 16→10, 3×3): no non-linearity between them; together they "
                  "are one linear map of rank ≤ 16, equivalent to a single Conv2d(3→10, 5×5)"]
    assert cg.lint(cg.models.seed_m1()) == []


@pytest.mark.parametrize("between,expected", [(cg.AvgPool2d(2), True), (cg.MaxPool2d(2), False),
                                              (cg.ReLU(), False), (cg.BatchNorm2d(4), True)])
def test_lint_follows_linear_ops_and_stops_at_nonlinear_ones(between, expected):
    graph = chain(cg.Conv2d(3, 4, 3), between, cg.Conv2d(4, 2, 1))
    assert bool([f for f in cg.lint(graph) if f.kind == "linear-chain"]) == expected


# --- parallel branches (RepVGG) --------------------------------------------------------------------------------
def repvgg_block(rng, channels=4, identity=True, second_pads=0):
    graph = cg.Graph("repvgg")
    x = graph.input("x", (None, channels, 7, 7))
    three = graph.apply(random_bn(channels, rng), graph.apply(cg.Conv2d(channels, channels, 3, padding=1, bias=False), x))
    one = graph.apply(random_bn(channels, rng), graph.apply(cg.Conv2d(channels, channels, 1, padding=second_pads,
                                                                      bias=False), x))
    branches = [three, one] + ([graph.apply(random_bn(channels, rng), x)] if identity else [])
    graph.output(graph.apply(cg.ReLU(), graph.apply(cg.Add(), *branches, name="sum"), name="relu"))
    return graph


@pytest.mark.parametrize("identity", [True, False])
def test_repvgg_branches_fold_into_one_conv(identity):
    graph = repvgg_block(np.random.default_rng(7), identity=identity)
    optimized = cg.optimize(graph, verify=True)
    assert [(n.name, n.op) for n in optimized.layers()] == [("relu", "Conv2d")]
    node = optimized.node("relu")
    assert node.attrs["kernel_size"] == (3, 3) and node.attrs["activation"]["op"] == "ReLU"
    assert optimized.macs() < graph.macs() and optimized.param_count() < graph.param_count()
    assert_equivalent(graph, optimized)


def test_branches_that_do_not_line_up_are_not_folded():
    rng = np.random.default_rng(8)
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3, 7, 7))
    a = graph.apply(cg.Conv2d(3, 3, 3, padding=1), x, name="a")
    b = graph.apply(cg.Conv2d(3, 3, 3, padding=(2, 0, 0, 2)), x, name="b")             # shifted window
    graph.output(graph.apply(cg.Add(), a, b, name="sum"))
    optimized = cg.optimize(graph)
    assert ops(optimized) == ["Conv2d", "Conv2d", "Add"]
    assert any("does not sit inside" in r for r in optimized.report.refusals)
    assert_equivalent(graph, optimized)
    del rng


def test_only_the_branches_of_one_input_fold_and_other_summands_stay():
    graph = cg.Graph("g")
    x, y = graph.input("x", (None, 3, 6, 6)), graph.input("y", (None, 3, 6, 6))
    a = graph.apply(cg.Conv2d(3, 3, 3, padding=1), x, name="a")
    b = graph.apply(cg.Conv2d(3, 3, 1), x, name="b")
    graph.output(graph.apply(cg.Add(), a, y, b, name="sum"))
    optimized = cg.optimize(graph)
    assert [(n.name, n.op) for n in optimized.layers()] == [("a", "Conv2d"), ("sum", "Add")]
    assert optimized.node("sum").inputs == ("a", "y")
    assert_equivalent(graph, optimized)


def test_average_pooling_folds_into_the_conv_before_it_at_level_3_only():
    graph = chain(cg.Conv2d(3, 8, 3, padding=1), cg.AvgPool2d(2), shape=(None, 3, 8, 8), names=["conv", "pool"])
    assert ops(cg.optimize(graph, level=2)) == ["Conv2d", "AvgPool2d"]
    folded = cg.optimize(graph, level=3, verify=True)
    assert [(n.name, n.op) for n in folded.layers()] == [("pool", "Conv2d")]
    assert folded.node("pool").attrs["kernel_size"] == (4, 4) and folded.node("pool").attrs["stride"] == (2, 2)
    assert folded.macs() < graph.macs()
    assert_equivalent(graph, folded)


@pytest.mark.parametrize("pool", [cg.MaxPool2d(2), cg.AvgPool2d(3, 2, 1, count_include_pad=False),
                                  cg.AvgPool2d(2, ceil_mode=True)])
def test_pools_that_are_not_convolutions_stop_the_fold(pool):
    graph = chain(cg.Conv2d(3, 8, 3, padding=1), pool, shape=(None, 3, 7, 7))
    optimized = cg.optimize(graph, level=3)
    assert len(optimized.layers()) == 2
    assert_equivalent(graph, optimized)


def test_a_registered_pass_runs_under_the_manager_and_can_be_disabled():
    from cnngraph import passes

    def double_negation(graph, level=2):
        result = PassResult(graph)
        for node in graph.layers():
            if node.op == "Sigmoid" and node.name not in graph.outputs:
                result.refusals.append(f"{node.name} seen")
        return result
    passes.register(Pass("my_pass", 1, double_negation), before="fold_batchnorm")
    try:
        names = [p.name for p in passes.PIPELINE]
        assert names.index("my_pass") == names.index("fold_batchnorm") - 1
        graph = chain(cg.Sigmoid(), cg.ReLU())
        assert "sigmoid1 seen" in cg.optimize(graph).report.refusals
        assert "sigmoid1 seen" not in cg.optimize(graph, disable=["my_pass"]).report.refusals
        with pytest.raises(ValueError, match="already registered"):
            passes.register(Pass("my_pass", 1, double_negation))
    finally:
        passes.unregister("my_pass")
    assert "my_pass" not in [p.name for p in passes.PIPELINE]


@pytest.mark.parametrize("between", [cg.Flatten(1, 2), cg.Reshape((0, 6, 5))])
def test_linear_layers_fold_through_a_reshape_that_keeps_the_feature_axis(between):
    graph = chain(cg.Linear(4, 5), between, cg.Linear(5, 3), shape=(None, 2, 3, 4), names=["fc1", "r", "fc2"])
    optimized = cg.optimize(graph, verify=True)
    assert [n.op for n in optimized.layers()] == ["Linear", "Reshape"]
    assert optimized.node("fc2").op == "Reshape"
    assert_equivalent(graph, optimized)


def test_a_reshape_that_touches_the_feature_axis_stops_the_linear_fold():
    graph = chain(cg.Linear(4, 6), cg.Reshape((0, 9, 2)), cg.Linear(2, 3), shape=(None, 3, 4))
    optimized = cg.optimize(graph)
    assert [n.op for n in optimized.layers()].count("Linear") == 2
    assert_equivalent(graph, optimized)
