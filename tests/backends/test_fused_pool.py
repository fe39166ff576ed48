"""A max pool fused into the convolution before it (backends/numpy_backend/fused_pool.py) against the naive
reference in tests/reference.py.

Drawn: the convolution's stride, kernel, dilation, groups, asymmetric pads, odd sizes, batch, bias; what lies
between it and the pool (nothing, BatchNorm + ReLU, a ReLU6 or Hardtanh that runs after the pool, a Sigmoid or
a BatchNorm after the ReLU that must run before it); the pool's kernel, stride, asymmetric padding, dilation and
ceil_mode. Stride-2 pools take the parity path (here on small images too), others PoolBands; tiny column budgets
cut the images into bands
of one row and up, and splitting is forced on two workers. A second reader of the convolution's value, or the
value being a graph output, must leave the two steps apart.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import drawn_conv, examples, randn
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import batch_split, fused_pool, gemm
from cnngraph.backends.numpy_backend.plan import Plan
from cnngraph.tolerance import assert_close

BETWEEN = ["none", "bn_relu", "relu6", "hardtanh", "sigmoid", "relu_bn"]


def between(g, y, kind, cout, rng):
    """The element-wise layers between the convolution and the pool."""
    def batchnorm(y):
        bn = cg.BatchNorm2d(cout)
        bn.weight, bn.bias = randn(rng, (cout,)), randn(rng, (cout,))
        bn.running_var = rng.uniform(0.2, 2.0, cout).astype(np.float32)
        return g.apply(bn, y)
    if kind == "bn_relu":
        return g.apply(cg.ReLU(), batchnorm(y))
    if kind == "relu6":
        return g.apply(cg.ReLU6(), y)
    if kind == "hardtanh":
        return g.apply(cg.Hardtanh(-0.5, 0.7), y)
    if kind == "sigmoid":
        return g.apply(cg.Sigmoid(), y)
    if kind == "relu_bn":                       # a BatchNorm after the ReLU (scales of both signs): before the pool
        return batchnorm(g.apply(cg.ReLU(), y))
    return y


@st.composite
def cases(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pool_kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pool_dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pool_pads = tuple(draw(st.integers(0, (pool_kernel[i % 2] - 1) * pool_dilation[i % 2] // 2)) for i in range(4))
    return dict(groups=groups, cin=groups * draw(st.integers(1, 3)), cout=groups * draw(st.integers(1, 3)),
                kernel=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), dilation=dilation,
                pads=tuple(draw(st.integers(0, 3)) for _ in range(4)), size=(draw(st.integers(0, 9)),
                                                                           draw(st.integers(0, 9))),
                batch=draw(st.integers(1, 3)), bias=draw(st.booleans()), between=draw(st.sampled_from(BETWEEN)),
                pool_kernel=pool_kernel, pool_stride=(draw(st.sampled_from([1, 2, 2, 3])),
                                                      draw(st.sampled_from([1, 2, 2, 3]))),
                pool_pads=pool_pads, pool_dilation=pool_dilation, ceil_mode=draw(st.booleans()),
                column_bytes=draw(st.sampled_from([1, 3000, 8 << 20])), split=draw(st.booleans()),
                parity_min_pixels=draw(st.sampled_from([0, 0, fused_pool.PARITY_MIN_PIXELS])),
                seed=draw(st.integers(0, 2 ** 16)))


def conv_pool_graph(case, rng, second_reader=False, conv_output=False):
    layer = drawn_conv(case, rng)
    (kh, kw), (dh, dw), pads = case["kernel"], case["dilation"], case["pads"]
    # the convolution's output at least as large as the pool's dilated window: the pool has an output
    pool_span = [(k - 1) * d + 1 for k, d in zip(case["pool_kernel"], case["pool_dilation"])]
    h = max(1, (kh - 1) * dh + 1 - pads[0] - pads[2]) + case["stride"][0] * (pool_span[0] - 1) + case["size"][0]
    w = max(1, (kw - 1) * dw + 1 - pads[1] - pads[3]) + case["stride"][1] * (pool_span[1] - 1) + case["size"][1]
    g = cg.Graph("conv_pool")
    x = g.input("x", (None, case["cin"], h, w))
    y = g.add("Conv2d", [x], dict(layer.attrs, pads=pads), layer.params, name="conv")
    y = between(g, y, case["between"], case["cout"], rng)
    pool = cg.MaxPool2d(case["pool_kernel"], stride=case["pool_stride"], dilation=case["pool_dilation"],
                        ceil_mode=case["ceil_mode"])
    p = g.add("MaxPool2d", [y], dict(pool.attrs, pads=case["pool_pads"]), {}, name="pool")
    if second_reader:                           # the same pool again: its value read twice
        g.output(g.apply(cg.Add(), p, g.add("MaxPool2d", [y], dict(pool.attrs, pads=case["pool_pads"]), {})))
    else:
        g.output(p)
    if conv_output:
        g.output(y)
    return g, randn(rng, (case["batch"], case["cin"], h, w))


def run(g, x, case):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm, "COLUMN_BYTES", case["column_bytes"])
        patch.setattr(fused_pool, "PARITY_COLUMN_BYTES", case["column_bytes"])
        patch.setattr(fused_pool, "PARITY_MIN_PIXELS", case["parity_min_pixels"])
        if case["split"]:
            patch.setattr(batch_split, "WORKERS", 2)
            patch.setattr(batch_split, "MIN_PIECE_MACS", 1)
        return cg.run(g, x)


def fused_steps(g, batch) -> list[str]:
    return [step.label for step in Plan(g, {"N": batch}).steps if "MaxPool2d" in step.label and "Conv2d" in step.label]


@examples(150)
@given(cases())
def test_fused_conv_pool_matches_reference(case):
    rng = np.random.default_rng(case["seed"])
    g, x = conv_pool_graph(case, rng)
    assert_close(run(g, x, case), reference_run(g, x), "convolution + max pool")
    routed = gemm.conv_route(_conv_context(g, case["batch"]))
    assert bool(fused_steps(g, case["batch"])) == (routed == "im2col")


@examples(30)
@given(cases(), st.booleans())
def test_a_second_reader_or_an_output_keeps_the_steps_apart(case, second_reader):
    rng = np.random.default_rng(case["seed"])
    g, x = conv_pool_graph(case, rng, second_reader=second_reader, conv_output=not second_reader)
    assert not fused_steps(g, case["batch"])
    expected, actual = reference_run(g, x), run(g, x, case)
    for a, e in zip(actual if isinstance(actual, tuple) else (actual,),
                    expected if isinstance(expected, tuple) else (expected,)):
        assert_close(a, e, "convolution and max pool, not fused")


def _conv_context(g, batch):
    from cnngraph.backends.numpy_backend.kernel import CNHW, Context, Scratch
    node = g.node("conv")
    shape = [batch if isinstance(d, str) else d for d in g.type_of("x").shape]
    out = [batch if isinstance(d, str) else d for d in node.type.shape]
    return Context(node.attrs, node.params, [tuple(shape)], tuple(out), CNHW, Scratch())


def test_resnet_stem_is_one_step_with_the_pool_and_the_relu_after_it():
    """resnet's 7×7/2 convolution, BatchNorm, ReLU and 3×3/2 max pool: one step, the parity path, the ReLU after
    the pool; results equal the unfused plan's."""
    rng = np.random.default_rng(1)
    case = dict(groups=1, cin=3, cout=4, kernel=(7, 7), stride=(2, 2), dilation=(1, 1), pads=(3, 3, 3, 3),
                size=(0, 0), batch=2, bias=False, between="bn_relu", pool_kernel=(3, 3), pool_stride=(2, 2),
                pool_pads=(1, 1, 1, 1), pool_dilation=(1, 1), ceil_mode=False)
    g, _ = conv_pool_graph(case, rng)
    x = randn(rng, (2, 3, 40, 38))
    g2 = cg.Graph("stem")
    inp = g2.input("x", (None, 3, 40, 38))
    conv = g.node("conv")
    y = g2.add("Conv2d", [inp], conv.attrs, conv.params, name="conv")
    for node in g.layers()[1:]:
        y = g2.add(node.op, [y], node.attrs, node.params, name=node.name)
    g2.output(y)
    assert fused_steps(g2, 2) == ["conv (Conv2d) + " + " + ".join(n.label() for n in g.layers()[1:])]
    spec = fused_pool.PoolSpec(g2.node("pool").attrs, (10, 10), (False, True))
    assert fused_pool.PoolBands(spec, (20, 19), 1).after
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused_pool, "ENABLED", False)
        unfused = cg.run(g2, x)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused_pool, "PARITY_MIN_PIXELS", 0)
        assert_close(cg.run(g2, x), unfused, "fused stem")
    assert_close(unfused, reference_run(g2, x), "stem")


@pytest.mark.parametrize("kind", BETWEEN)
@pytest.mark.parametrize("pool_stride, parity_min_pixels", [((2, 2), 0), ((2, 2), 10 ** 9), ((1, 2), 0)])
def test_every_epilogue_on_both_paths(kind, pool_stride, parity_min_pixels):
    """Each kind of layer between the two, on the parity path and on PoolBands: the increasing ones run after
    the pool, the others (a BatchNorm after the ReLU scales by both signs) before it."""
    case = dict(groups=1, cin=2, cout=3, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=(1, 1, 1, 1),
                size=(3, 4), batch=2, bias=True, between=kind, pool_kernel=(3, 3), pool_stride=pool_stride,
                pool_pads=(1, 1, 1, 1), pool_dilation=(1, 1), ceil_mode=False, column_bytes=3000, split=False,
                parity_min_pixels=parity_min_pixels)
    rng = np.random.default_rng(3)
    g, x = conv_pool_graph(case, rng)
    assert fused_steps(g, 2)
    assert_close(run(g, x, case), reference_run(g, x), f"convolution + {kind} + max pool")


def test_new_parameters_reach_the_fused_step():
    """Executor.set_params on the convolution and the BatchNorm of a fused step rebuilds it (its pool too)."""
    from cnngraph.backends.numpy_backend.plan import Executor
    case = dict(groups=1, cin=2, cout=3, kernel=(3, 3), stride=(2, 2), dilation=(1, 1), pads=(1, 1, 1, 1),
                size=(5, 6), batch=1, bias=True, between="bn_relu", pool_kernel=(3, 3), pool_stride=(2, 2),
                pool_pads=(1, 1, 1, 1), pool_dilation=(1, 1), ceil_mode=True, column_bytes=3000, split=False,
                parity_min_pixels=0)
    rng = np.random.default_rng(5)
    g, x = conv_pool_graph(case, rng)
    bn = next(n for n in g.layers() if n.op == "BatchNorm2d")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused_pool, "PARITY_MIN_PIXELS", 0)
        executor = Executor(g)
        executor(x)
        weight, scale = randn(rng, g.node("conv").params["weight"].shape), randn(rng, (case["cout"],))
        executor.set_params("conv", weight=weight, bias=g.node("conv").params["bias"])
        executor.set_params(bn.name, **dict(bn.params, weight=scale))
        changed = g.copy()
        changed.set_params("conv", weight=weight, bias=g.node("conv").params["bias"])
        changed.set_params(bn.name, **dict(bn.params, weight=scale))
        assert_close(executor(x), reference_run(changed, x), "fused step after set_params")
