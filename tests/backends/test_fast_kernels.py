"""The fast kernel paths of issue 13: the erf and GELU approximations against math.erf/erfc over a sweep of
float32 values; block-by-block evaluation (blockwise.py) giving exactly the values of one whole-array call for
any shape, strided region or in-place call; the nearest resize by whole factors against np.repeat, bit for
bit; the normalisations on blocks of rows against the naive reference."""
from __future__ import annotations

import math

import numpy as np
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st
from reference import reference_run

import cnngraph as cg
from cnngraph.backends.numpy_backend import activations, blockwise, compile_graph, sample_norm
from cnngraph.backends.numpy_backend.kernel import KERNELS
from cnngraph.backends.numpy_backend.resample import repeat_copy
from cnngraph.tolerance import assert_close

_erf64 = np.frompyfunc(math.erf, 1, 1)
_erfc64 = np.frompyfunc(math.erfc, 1, 1)


def float32_sweep(high: float, count: int) -> np.ndarray:
    """``count`` float32 values evenly spaced in their bit patterns over [0, high]: dense near 0, where the
    relative precision matters, and over every binade up to ``high``."""
    bits = np.linspace(0, np.float32(high).view(np.int32), count).astype(np.int32)
    return bits.view(np.float32)


def test_erf_is_within_2e_7_absolute_and_keeps_relative_precision_near_0():
    x = float32_sweep(10.0, 200_001)
    x = np.concatenate([x, -x])
    expected = _erf64(x.astype(np.float64)).astype(np.float64)
    got = activations.erf(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - expected)) <= 2e-7
    small = (np.abs(x) < 0.5) & (np.abs(x) > 1e-37)            # normal float32 (subnormals hold fewer digits)
    assert np.max(np.abs(got[small] - expected[small]) / np.abs(expected[small])) <= 4e-7
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3e38, -3e38], np.float32)
    got = activations.erf(special)
    assert np.array_equal(got[:2], [1, -1]) and np.isnan(got[2]) and np.array_equal(got[3:], [0, 0, 1, -1])
    assert np.signbit(got[4])


def test_gelu_keeps_relative_precision_in_its_left_tail():
    z = float32_sweep(12.5, 100_001)
    x = np.concatenate([z, -z])
    out = np.empty_like(x)
    activations._gelu(x, out, {"approximate": "none"})
    x64 = x.astype(np.float64)
    expected = 0.5 * x64 * _erfc64(-x64 / math.sqrt(2.0)).astype(np.float64)
    nonzero = np.abs(expected) > 1e-37                           # normal float32 results
    relative = np.abs(out[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])
    assert relative.max() <= 1e-5                    # float32's rounding of z²/2 inside exp, at z = 12.5: 6e-6
    assert np.max(np.abs(out - expected)) <= 1e-6
    special = np.array([np.inf, np.nan, 1e30, -1e30, 20.0, -20.0], np.float32)
    activations._gelu(special, got := np.empty_like(special), {"approximate": "none"})
    assert got[0] == np.inf and np.isnan(got[1]) and got[2] == np.float32(1e30) and got[4] == 20.0
    assert abs(got[3]) < 1e-37 and abs(got[5]) < 1e-37


@st.composite
def block_cases(draw):
    """A shape whose size crosses block boundaries, an offset strided view, in place or not."""
    size = draw(st.sampled_from([1, 7, blockwise.BLOCK - 1, blockwise.BLOCK, blockwise.BLOCK + 5, 2 * blockwise.BLOCK + 3]))
    width = draw(st.sampled_from([1, 3, 64]))
    rows = max(1, size // width)
    strided = draw(st.booleans())
    return dict(op=draw(st.sampled_from(["Erf", "GELU", "GELU tanh", "SiLU", "Hardswish"])), shape=(rows, width),
                strided=strided,
                inplace=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@examples(20)
@given(block_cases())
def test_element_wise_kernels_give_the_same_values_in_blocks_in_place_and_strided(case):
    rng = np.random.default_rng(case["seed"])
    rows, width = case["shape"]
    base = (rng.standard_normal((rows, 2 * width)) * 4).astype(np.float32)
    x = base[:, ::2] if case["strided"] else np.ascontiguousarray(base[:, :width])
    op, attrs = {"Erf": ("Erf", None), "GELU": ("GELU", {"approximate": "none"}), "SiLU": ("SiLU", None),
                 "GELU tanh": ("GELU", {"approximate": "tanh"}), "Hardswish": ("Hardswish", None)}[case["op"]]
    step = KERNELS[op].make(_Ctx(attrs))
    apply = lambda a, o: step([a], o)                                  # noqa: E731
    flat, whole = np.ascontiguousarray(x).reshape(-1), np.empty(x.size, np.float32)
    for start in range(0, x.size, 1000):                         # other cuts, each within one block
        apply(flat[start:start + 1000], whole[start:start + 1000])
    target = x[...] if case["inplace"] else np.empty_like(x)            # in place through another view
    keep = x.copy()
    apply(x, target)
    assert np.array_equal(target.reshape(-1), whole, equal_nan=True)
    if not case["inplace"]:
        assert np.array_equal(x, keep)                          # the input is left alone


class _Ctx:
    """The little a unary kernel's factory reads."""
    def __init__(self, attrs):
        self.attrs = attrs or {}


@examples(30)
@given(rank=st.integers(1, 3), data=st.data())
def test_nearest_by_whole_factors_is_np_repeat_bit_for_bit(rank, data):
    spatial = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    repeats = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    lead = tuple(data.draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    bits = np.random.default_rng(data.draw(st.integers(0, 2**16))).integers(0, 2**32, (*lead, *spatial), np.uint32)
    x = bits.view(np.float32)                                    # any pattern, NaN payloads included
    out = np.zeros((*lead, *(d * r for d, r in zip(spatial, repeats))), np.float32)
    repeat_copy(x.shape, repeats)([x], out)
    expected = bits
    for axis, r in enumerate(repeats):
        expected = expected.repeat(r, axis=2 + axis)
    assert np.array_equal(out.view(np.uint32), expected)


@examples(15)
@given(op=st.sampled_from(["LayerNorm", "InstanceNorm2d", "GroupNorm"]), block=st.sampled_from([1, 5, 24, 1 << 18]),
       affine=st.booleans(), offset=st.sampled_from([0.0, 300.0]), seed=st.integers(0, 2**16))
def test_normalisations_on_blocks_of_rows_match_the_reference(op, block, affine, offset, seed):
    rng = np.random.default_rng(seed)
    layer = {"LayerNorm": lambda: cg.LayerNorm((3, 4), elementwise_affine=affine),
             "InstanceNorm2d": lambda: cg.InstanceNorm2d(6, affine=affine),
             "GroupNorm": lambda: cg.GroupNorm(3, 6, affine=affine)}[op]()
    graph = cg.Sequential(layer).to_graph(input_shape=(None, 6, 3, 4))
    for node in graph.layers():
        if node.params:
            graph.set_params(node.name, **{k: rng.standard_normal(v.shape).astype(np.float32)
                                           for k, v in node.params.items()})
    x = (rng.standard_normal((5, 6, 3, 4)) + offset).astype(np.float32)   # a large mean: no E[x²] − E[x]²
    saved = sample_norm.ROWS_BLOCK
    sample_norm.ROWS_BLOCK = block
    try:
        got = compile_graph(graph.copy())(x)
    finally:
        sample_norm.ROWS_BLOCK = saved
    assert_close(got, reference_run(graph, x))


# --- element-wise kernels split over the cores at inference (batch_split.element_parts) ---------------------------
_SPLIT_LAYERS = {"Mish": cg.Mish, "Softplus": lambda: cg.Softplus(beta=2.0, threshold=5.0),
                 "GELU tanh": lambda: cg.GELU(approximate="tanh")}


@examples(6)
@given(name=st.sampled_from(sorted(_SPLIT_LAYERS)), channels=st.integers(4, 9), seed=st.integers(0, 2**16))
def test_split_element_wise_kernels_give_the_unsplit_bits(name, channels, seed):
    """Forced to split small tensors (whole 32k blocks, 2 parts), each kernel that splits gives exactly the values
    of its unsplit run: in a graph, and its step in place (output buffer = input)."""
    from cnngraph.backends.numpy_backend import batch_split
    from cnngraph.backends.numpy_backend.kernel import NCHW, Context, Scratch
    graph = cg.Sequential(_SPLIT_LAYERS[name]()).to_graph(input_shape=(None, channels, 100, 100))
    (node,) = graph.layers()
    x = 4 * np.random.default_rng(seed).standard_normal((1, channels, 100, 100), dtype=np.float32)
    context = Context(node.attrs, {}, [x.shape], x.shape, NCHW, Scratch())
    saved = batch_split.MIN_PART_ELEMENTS, batch_split.WORKERS, batch_split.in_parallel
    splits = []

    def counted(tasks):
        splits.append(len(tasks))
        return saved[2](tasks)
    try:
        batch_split.MIN_PART_ELEMENTS, batch_split.WORKERS = 1 << 60, 2
        unsplit = compile_graph(graph)(x)
        batch_split.MIN_PART_ELEMENTS, batch_split.in_parallel = 1, counted
        with batch_split.inference_threads(1 << 40):
            in_place = x.copy()
            KERNELS[node.op].make(context)([in_place], in_place)
        split = compile_graph(graph)(x)      # 40k elements a sample or more: the run splits them by itself
    finally:
        batch_split.MIN_PART_ELEMENTS, batch_split.WORKERS, batch_split.in_parallel = saved
    assert splits == [2, 2]
    assert np.array_equal(split, unsplit) and np.array_equal(in_place, unsplit)


def test_element_parts_are_whole_blocks_inside_inference_threads_only():
    from cnngraph.backends.numpy_backend import batch_split
    assert batch_split.element_parts(10 * 32768 + 5, 1 << 30, 32768) == [(0, 10 * 32768 + 5)]   # not inside
    saved = batch_split.WORKERS
    try:
        batch_split.WORKERS = 2
        with batch_split.inference_threads(1 << 40):
            assert batch_split.element_parts(10 * 32768 + 5, 1 << 30, 32768) == [(0, 5 * 32768), (5 * 32768, 10 * 32768 + 5)]
            assert batch_split.element_parts(32768, 1 << 30, 32768) == [(0, 32768)]
            assert batch_split.element_parts(4 << 17, 4 << 17) == [(0, 2 << 17), (2 << 17, 4 << 17)]
            assert batch_split.element_parts(1 << 17, 1 << 17) == [(0, 1 << 17)]      # below two parts' worth
    finally:
        batch_split.WORKERS = saved
