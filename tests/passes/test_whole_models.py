"""The whole pipeline on the built-in models and on random small graphs: same outputs (NumPy backend and
onnxruntime), lint holds, costs do not grow beyond what the level allows, and a second run changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pass_helpers import assert_equivalent, inputs_for, random_bn

import cnngraph as cg
from cnngraph.tolerance import assert_close

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
            kernel = 1 if kind == "conv1" or spatial < 5 else 3
            dilation = draw(st.sampled_from([1, 2])) if kernel == 3 else 1
            x = graph.apply(cg.Conv2d(channels, out, kernel, padding=draw(st.integers(0, kernel // 2)) * dilation,
                                      dilation=dilation, bias=draw(st.booleans())), x)
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
            kernel = draw(st.sampled_from([1, 3])) if spatial >= 5 else 1
            dilation = draw(st.sampled_from([1, 2]))
            branch = cg.Conv2d(channels, channels, kernel, padding="same", dilation=dilation)
            x = graph.apply(cg.Add(), x, graph.apply(branch, x), graph.apply(cg.Conv2d(channels, channels, 1), x))
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
