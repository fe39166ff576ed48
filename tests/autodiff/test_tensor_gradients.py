"""Gradient rules of LeakyReLU with any slope and of the tensor ops (Pad in every mode, MatMul, Slice,
IndexSelect, Expand, Tile, Where, the reductions, Upsample) against central finite differences in float64,
hypothesis drawing every attribute the rules read; the NumPy backend's float32 run against the float64 result.
(gradcheck.py says how.)"""
import numpy as np
import pytest
from conftest import examples
from gradcheck import check_gradients
from hypothesis import assume, given
from hypothesis import strategies as st
from test_gradient_rules import away_from, data, one_op, randomize, with_attrs

import cnngraph as cg
from cnngraph.autodiff.backward import build
from cnngraph.layers.resample import TRANSFORMS
from cnngraph.layers.slicing import slice_range

SEED = st.integers(0, 2**16)


# --- LeakyReLU, any slope -----------------------------------------------------------------------------------------
@examples(10)
@given(slope=st.floats(-2.0, 2.0), shape=st.sampled_from([(2, 3), (2, 3, 4, 2)]), seed=SEED)
def test_leaky_relu_any_slope(slope, shape, seed):
    """A negative slope's output does not tell the input's sign: the derivative is read from the input."""
    rng = np.random.default_rng(seed)
    check_gradients(one_op(cg.LeakyReLU(slope), (None, *shape[1:])), [away_from(rng, shape, [0.0])], seed=seed)


@examples(6)
@given(slope=st.floats(-2.0, -0.01), conv=st.booleans(), seed=SEED)
def test_leaky_relu_negative_slope_fused(slope, conv, seed):
    """Fused into Conv2d or Linear: the layer is recomputed without it, as for GELU."""
    rng = np.random.default_rng(seed)
    graph = one_op(cg.Conv2d(2, 3, 2), (None, 2, 3, 3)) if conv else one_op(cg.Linear(3, 4), (None, 3))
    graph = with_attrs(graph, activation={"op": "LeakyReLU", "attrs": {"negative_slope": slope}})
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, 2, 3, 3) if conv else (2, 3)), seed=seed)


# --- Pad, every mode ------------------------------------------------------------------------------------------------
@st.composite
def pads_for(draw, mode: str, shape):
    """Begin pads then end pads of a (N, *shape) input, the batch never padded; reflect stays under the size,
    a negative pad crops (never the whole axis)."""
    begins, ends = [0], [0]
    for size in shape:
        top = size - 1 if mode == "reflect" else 3
        while True:
            begin, end = draw(st.integers(-1, top)), draw(st.integers(-1, top))
            if size + begin + end >= 1:
                break
        begins.append(begin)
        ends.append(end)
    return tuple(begins + ends)


@examples(15)
@given(mode=st.sampled_from(["reflect", "edge", "constant"]), shape=st.sampled_from([(2, 3, 4), (3, 5)]),
       data_=st.data(), seed=SEED)
def test_pad_every_mode(mode, shape, data_, seed):
    rng = np.random.default_rng(seed)
    pads = data_.draw(pads_for(mode, shape))
    check_gradients(one_op(cg.Pad(pads, mode=mode), (None, *shape)), data(rng, (2, *shape)), seed=seed)


# --- MatMul ---------------------------------------------------------------------------------------------------------
MATMUL_SHAPES = [   # (a, b): batched, broadcast on either side, 1-D operands on either side, a batch of None
    ((None, 3, 4), (None, 4, 2)), ((None, 3, 4), (4, 2)), ((2, 3), (None, 3, 4)), ((None, 1, 3, 4), (2, 4, 5)),
    ((4,), (None, 4, 3)), ((None, 3, 4), (4,)), ((4,), (4, 3)), ((3, 4), (4,)), ((None, 2, 3), (None, 1, 3, 2)),
]


@examples(15)
@given(shapes=st.sampled_from(MATMUL_SHAPES), seed=SEED)
def test_matmul(shapes, seed):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("matmul")
    a, b = (graph.input(f"x{i}", s) for i, s in enumerate(shapes))
    graph.output(graph.add("MatMul", [a, b]))
    check_gradients(graph, data(rng, *[tuple(2 if d is None else d for d in s) for s in shapes]), seed=seed)


# --- slicing ---------------------------------------------------------------------------------------------------------
@st.composite
def slices(draw, shape):
    """Starts, ends, axes, steps over the static axes 1.. of a (N, *shape) input: negative, clamped, backwards,
    never empty."""
    axes = draw(st.lists(st.integers(1, len(shape)), min_size=1, max_size=len(shape), unique=True))
    starts, ends, steps = [], [], []
    for axis in axes:
        size = shape[axis - 1]
        start, step = draw(st.integers(-size, size - 1)), draw(st.sampled_from([1, 2, 3, -1, -2]))
        end = draw(st.sampled_from([draw(st.integers(-size - 1, size + 1)), 2**63 - 1, -2**63]))
        if not slice_range(start, end, step, size):          # an empty slice: run to the end instead
            end = 2**63 - 1 if step > 0 else -2**63
        starts.append(start)
        ends.append(end)
        steps.append(step)
    negative = draw(st.booleans())
    return starts, ends, [a - len(shape) - 1 if negative else a for a in axes], steps


@examples(15)
@given(data_=st.data(), shape=st.sampled_from([(3, 4), (5,), (2, 3, 4)]), seed=SEED)
def test_slice(data_, shape, seed):
    rng = np.random.default_rng(seed)
    starts, ends, axes, steps = data_.draw(slices(shape))
    layer = cg.Slice(starts, ends, axes, steps)
    check_gradients(one_op(layer, (None, *shape)), data(rng, (2, *shape)), seed=seed)


@examples(10)
@given(dim=st.sampled_from([1, 2, -1]), index=st.one_of(st.integers(-3, 2), st.lists(st.integers(-3, 2), min_size=1,
                                                                                          max_size=5)), seed=SEED)
def test_index_select(dim, index, seed):
    """Repeated indices add up; a single int index removes the axis."""
    rng = np.random.default_rng(seed)
    index = index if isinstance(index, int) else tuple(index)
    check_gradients(one_op(cg.IndexSelect(dim, index), (None, 3, 3)), data(rng, (2, 3, 3)), seed=seed)


@examples(10)
@given(case=st.sampled_from([((None, 3, 1), (1, 3, 4)), ((None, 1, 4), ("N", 2, 4)), ((3, 1), (2, 3, 5)),
                             ((None, 2, 3), (2, 3)), ((None, 1, 3), (2, 1, 1, 3))]), seed=SEED)
def test_expand(case, seed):
    shape, target = case
    rng = np.random.default_rng(seed)
    check_gradients(one_op(cg.Expand(target), shape), data(rng, tuple(2 if d is None else d for d in shape)), seed=seed)


@examples(10)
@given(dims=st.lists(st.integers(1, 3), min_size=1, max_size=2), seed=SEED)
def test_tile(dims, seed):
    rng = np.random.default_rng(seed)
    check_gradients(one_op(cg.Tile(tuple(dims)), (None, 2, 3)), data(rng, (2, 2, 3)), seed=seed)


def test_tile_of_the_batch_is_refused_by_name():
    with pytest.raises(cg.GraphError, match=r"tile1 \(Tile\): no gradient rule for a Tile of the symbolic axis 0"):
        build(one_op(cg.Tile((2, 1)), (None, 3)), loss=None)


# --- Where -------------------------------------------------------------------------------------------------------------
@examples(10)
@given(condition=st.sampled_from([(3,), (2, 1), (1, 2, 3), ()]), other=st.sampled_from([(None, 2, 3), (3,), (2, 1), ()]),
       seed=SEED)
def test_where(condition, other, seed):
    rng = np.random.default_rng(seed)
    graph = cg.Graph("where")
    x, y = graph.input("x", (None, 2, 3)), graph.input("y", other)
    graph.output(graph.apply(cg.Where(rng.integers(0, 2, condition)), x, y))
    check_gradients(graph, data(rng, (2, 2, 3), tuple(2 if d is None else d for d in other)), seed=seed)


# --- reductions ------------------------------------------------------------------------------------------------------
@examples(20)
@given(op=st.sampled_from(["ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceMean"]),
       axes=st.sets(st.integers(-4, 3), max_size=3), keepdims=st.booleans(), seed=SEED)
def test_reductions(op, axes, keepdims, seed):
    """Any axes, the batch's too (empty: all); distinct random values, so max and min are differentiable."""
    axes = tuple(sorted({a % 4 for a in axes}))
    assume(op != "ReduceMean" or 0 not in axes and axes)         # ReduceMean: no mean over the symbolic batch
    rng = np.random.default_rng(seed)
    check_gradients(one_op(getattr(cg, op)(axes, keepdims), (None, 2, 3, 2)), data(rng, (2, 2, 3, 2)), seed=seed)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_max_min_ties_split_evenly(op):
    """PyTorch's amax/amin: ∂y is shared equally by the elements equal to the extremum."""
    graph = one_op(getattr(cg, op)((1,), False), (None, 4))
    tg = build(graph, loss=None)
    value = 2.0 if op == "ReduceMax" else -2.0
    x = np.array([[value, 0.0, value, value], [0.0, value, 0.0, 0.0]], np.float32)
    grads = dict(zip(tg.graph.outputs, cg.run(tg.graph, x, np.array([3.0, 6.0], np.float32))))
    np.testing.assert_allclose(grads[tg.inputs[0]], [[1.0, 0.0, 1.0, 1.0], [0.0, 6.0, 0.0, 0.0]])


def test_reduce_l2_of_zeros_has_a_zero_gradient():
    tg = build(one_op(cg.ReduceL2((1,)), (None, 3)), loss=None)
    grads = dict(zip(tg.graph.outputs, cg.run(tg.graph, np.zeros((1, 3), np.float32), np.ones((1, 1), np.float32))))
    np.testing.assert_array_equal(grads[tg.inputs[0]], np.zeros((1, 3)))


# --- Upsample -----------------------------------------------------------------------------------------------------------
@st.composite
def upsamples(draw):
    """(layer, input shape): every mode, coordinate transform and nearest rounding, by size or by scale (down
    too)."""
    mode = draw(st.sampled_from(["nearest", "linear", "bilinear", "trilinear", "bicubic"]))
    rank = {"linear": 3, "bilinear": 4, "trilinear": 5, "bicubic": 4}.get(mode, draw(st.integers(3, 5)))
    spatial = tuple(draw(st.integers(1, 4 if rank < 5 else 3)) for _ in range(rank - 2))
    if draw(st.booleans()):
        how = {"size": tuple(draw(st.integers(1, 5)) for _ in spatial)}
    else:
        how = {"scale_factor": tuple(draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])) for _ in spatial)}
        assume(all(int(s * d) >= 1 for s, d in zip(how["scale_factor"], spatial)))
    if mode == "nearest":
        layer = cg.Upsample(mode="nearest", **how, coordinate_transformation_mode=draw(st.sampled_from(TRANSFORMS)),
                            nearest_mode=draw(st.sampled_from(["floor", "ceil", "round_prefer_floor",
                                                               "round_prefer_ceil"])))
    elif draw(st.booleans()):                                  # PyTorch's two forms
        layer = cg.Upsample(mode=mode, align_corners=draw(st.booleans()), **how)
    else:                                                      # any form an ONNX Resize imports as
        layer = cg.Upsample(mode=mode, coordinate_transformation_mode=draw(st.sampled_from(TRANSFORMS)), **how)
    return layer, (2, draw(st.integers(1, 2)), *spatial)


@examples(30)
@given(case=upsamples(), seed=SEED)
def test_upsample(case, seed):
    layer, shape = case
    rng = np.random.default_rng(seed)
    check_gradients(one_op(layer, (None, *shape[1:])), data(rng, shape), seed=seed)


@pytest.mark.parametrize("scale", [(2, 3), (1, 2), (2.0, 0.5)])
def test_upsample_nearest_by_whole_factors(scale):
    """PyTorch's nearest upsampling by integer factors (the backend sums ∂y's blocks), and a downsampling."""
    rng = np.random.default_rng(7)
    graph = one_op(cg.Upsample(scale_factor=scale), (None, 2, 3, 4))
    check_gradients(graph, data(rng, (2, 2, 3, 4)))


def test_index_select_of_many_scattered_indices():
    """More runs than the backend adds as slices: its rounds of distinct targets."""
    rng = np.random.default_rng(8)
    index = tuple(int(i) for i in rng.integers(-4, 4, 40))
    check_gradients(one_op(cg.IndexSelect(1, index), (None, 4, 3)), data(rng, (2, 4, 3)))


def test_where_condition_is_not_learned():
    """The mask is a buffer: no gradient, and an optimizer with weight decay leaves it alone."""
    graph = cg.Graph("where")
    x = graph.input("x", (None, 3))
    mask = cg.Where(np.array([1, 0, 1]))
    out = graph.apply(mask, graph.apply(cg.Linear(3, 3), x), x)
    graph.output(out)
    trainer = cg.Trainer(graph, optimizer=cg.optim.SGD(lr=0.5, weight_decay=0.5))
    trainer.fit(np.ones((4, 3), np.float32), np.array([0, 1, 2, 0]), epochs=2, batch_size=2)
    where = next(n for n in trainer.graph.layers() if n.op == "Where")
    np.testing.assert_array_equal(where.params["condition"], [1.0, 0.0, 1.0])
    assert graph.param_count() == 12
