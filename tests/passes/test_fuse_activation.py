"""fuse_activation: act(layer(x)) -> layer+act(x), unless the layer's output is read elsewhere."""
from __future__ import annotations

import pytest
from conftest import ort_outputs
from pass_helpers import assert_equivalent, chain, inputs_for, named_ops, ops, refusals

import cnngraph as cg
from cnngraph.tolerance import assert_close


@pytest.mark.parametrize("activation", [cg.ReLU(), cg.ReLU6(), cg.LeakyReLU(0.2), cg.Sigmoid(), cg.Tanh(),
                                        cg.Hardtanh(-0.5, 0.25)])
def test_activation_fuses_into_conv_and_linear(activation):
    graph = chain(cg.Conv2d(3, 4, 3), activation, cg.Flatten(), cg.Linear(144, 5), activation,
                  names=["conv", "act1", "flat", "fc", "act2"])
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("act1", "Conv2d"), ("flat", "Flatten"), ("act2", "Linear")]
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


def test_a_second_activation_is_not_fused_onto_the_first():
    graph = chain(cg.Conv2d(3, 4, 3), cg.Sigmoid(), cg.Tanh(), names=["conv", "sig", "tanh"])
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("sig", "Conv2d"), ("tanh", "Tanh")]
    assert "fuse_activation: sig (Conv2d+Sigmoid) + tanh (Tanh) not rewritten: sig already has an activation" \
        in refusals(optimized)
    assert_equivalent(graph, optimized)


NEW_ACTIVATIONS = [cg.ELU(0.7), cg.SELU(), cg.CELU(1.5), cg.GELU(), cg.GELU("tanh"), cg.SiLU(), cg.Mish(),
                   cg.Hardsigmoid(), cg.Hardswish(), cg.Softplus(2.0, 20.0)]


def test_every_fusable_activation_is_listed_here_or_above():
    listed = {a.op for a in NEW_ACTIVATIONS} | {"ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Hardtanh", "Softsign"}
    assert set(cg.layer.fusable_activations()) <= listed


@pytest.mark.parametrize("activation", NEW_ACTIVATIONS, ids=lambda a: f"{a.op}{tuple(a.attrs.values())}")
@pytest.mark.parametrize("opset", [13, 20])
def test_modern_activation_fuses_and_exports(activation, opset):
    """Fused into Conv2d and Linear, run as the GEMM's epilogue, exported as the pair (the activation's own
    ONNX form at this opset, spelled out where the opset has no op)."""
    graph = chain(cg.Conv2d(3, 4, 3), activation, cg.Flatten(), cg.Linear(144, 5), activation,
                  names=["conv", "act1", "flat", "fc", "act2"])
    optimized = cg.optimize(graph)
    assert named_ops(optimized) == [("act1", "Conv2d"), ("flat", "Flatten"), ("act2", "Linear")]
    assert optimized.node("act2").attrs["activation"] == {"op": activation.op, "attrs": activation.attrs}
    assert_equivalent(graph, optimized)
    model = cg.export_onnx(optimized, opset=opset)
    x = inputs_for(graph)[0]
    assert_close(ort_outputs(model, x)[0], cg.run(graph, x))
