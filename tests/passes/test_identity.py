"""remove_identity: Identity and Dropout removed, a graph output keeps its node; a variadic op over one value
and a reduction over axes of extent 1 removed too (never larger than onnx-simplifier)."""
from __future__ import annotations

import pytest
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st
from pass_helpers import assert_equivalent, chain, named_ops, ops, refusals

import cnngraph as cg


def test_identity_and_dropout_are_removed_but_an_output_keeps_its_name():
    graph = chain(cg.Identity(), cg.Conv2d(3, 2, 1), cg.Dropout(0.3), cg.ReLU(), cg.Identity(),
                  names=["id1", "conv", "drop", "relu", "out"])
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("conv", "Conv2d"), ("relu", "ReLU"), ("out", "Identity")]
    assert refusals(optimized) == ["remove_identity: out (Identity) not rewritten: it is a graph output"]
    assert_equivalent(graph, optimized)


def test_an_identity_read_twice_and_by_an_output_elsewhere():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 3))
    i = graph.apply(cg.Identity(), x, name="i")
    graph.output(graph.apply(cg.Add(), i, i, name="sum"), graph.apply(cg.ReLU(), i, name="r"))
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("sum", "Add"), ("r", "ReLU")]
    assert optimized.node("sum").inputs == ("x", "x")
    assert_equivalent(graph, optimized)


# --- a variadic op over one value, a reduction over axes of extent 1 ----------------------------------------------
REDUCTIONS = [cg.ReduceSum, cg.ReduceMean, cg.ReduceMax, cg.ReduceMin]


def one_op_graph(layer, shape, *, extra_inputs=0, then_relu=True):
    """x [, more inputs of x's shape] -> layer -> ReLU (a reader, so that the layer is not a graph output)."""
    graph = cg.Graph("g")
    values = [graph.input(f"x{i}", shape) for i in range(1 + extra_inputs)]
    y = graph.apply(layer, *values, name="op")
    graph.output(graph.apply(cg.ReLU(), y, name="relu") if then_relu else y)
    return graph


@pytest.mark.parametrize("layer", [cg.Concat(1), cg.Concat(0), cg.Max(), cg.Min()], ids=lambda layer: layer.op)
def test_a_variadic_op_over_one_value_is_that_value(layer):
    graph = one_op_graph(layer, (None, 3, 4))
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("relu", "ReLU")]
    assert optimized.node("relu").inputs == ("x0",)
    assert_equivalent(graph, optimized)


def test_a_variadic_op_over_two_values_stays_and_an_output_keeps_its_name():
    graph = one_op_graph(cg.Concat(1), (None, 3, 4), extra_inputs=1)
    assert named_ops(cg.optimize(graph, level=1)) == [("op", "Concat"), ("relu", "ReLU")]
    graph = one_op_graph(cg.Concat(1), (None, 3, 4), then_relu=False)
    optimized = cg.optimize(graph, level=1)
    assert named_ops(optimized) == [("op", "Identity")] and optimized.outputs == ["op"]
    assert_equivalent(graph, optimized)


@pytest.mark.parametrize("cls", REDUCTIONS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("keepdims", [True, False])
def test_a_reduction_over_axes_of_extent_one_is_an_identity_or_a_reshape(cls, keepdims):
    """The global pool of a 1x1 feature map (EfficientNet's squeeze-excite at small inputs, the dynamo form)."""
    graph = one_op_graph(cls((2, 3), keepdims), (None, 5, 1, 1))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == (["ReLU"] if keepdims else ["Flatten", "ReLU"])
    assert_equivalent(graph, optimized)


def test_a_reduction_that_reduces_something_stays():
    for layer, shape in [(cg.ReduceMean((2, 3)), (None, 5, 1, 2)),     # one axis of extent 2
                         (cg.ReduceSum(()), (None, 1, 1)),               # all axes: the batch is symbolic
                         (cg.ReduceMax((0,)), (None, 1, 1)),             # the batch axis
                         (cg.ReduceL2((2,)), (None, 5, 1))]:             # L2 of one element is |x|, not x
        graph = one_op_graph(layer, shape)
        assert named_ops(cg.optimize(graph, level=1)) == [("op", layer.op), ("relu", "ReLU")], layer


@examples(30)
@given(shape=st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=4), data=st.data(),
       cls=st.sampled_from(REDUCTIONS + [cg.ReduceL2]), keepdims=st.booleans())
def test_a_reduction_goes_exactly_when_its_axes_have_extent_one(shape, data, cls, keepdims):
    rank = len(shape) + 1
    axes = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, max_size=rank - 1, unique=True))
    axes = [a - rank if data.draw(st.booleans()) else a for a in axes]            # negative axes too
    graph = one_op_graph(cls(axes, keepdims), (None, *shape))
    optimized = cg.optimize(graph, level=1)
    trivial = cls is not cg.ReduceL2 and all(shape[a % rank - 1] == 1 for a in axes)
    assert ("op", cls.__name__) not in named_ops(optimized) if trivial else ("op", cls.__name__) in named_ops(optimized)
    assert_equivalent(graph, optimized)


def test_a_reduction_of_a_static_one_element_tensor_to_a_scalar_is_a_reshape():
    graph = one_op_graph(cg.ReduceMean((), keepdims=False), (1, 1))
    optimized = cg.optimize(graph, level=1)
    assert ops(optimized) == ["Reshape", "ReLU"] and optimized.type_of("relu").shape == ()
    assert_equivalent(graph, optimized)
