"""The arithmetic import and export share (cnngraph/onnx/shared.py): each rule against the other direction or
an independent statement of it."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnngraph.errors import OnnxImportError
from cnngraph.onnx.shared import axis_index, flatten_target, merged_axes, onnx_window_count, overhang, unique_name
from cnngraph.shapes import pool_output_size, product

dims = st.one_of(st.integers(1, 6), st.sampled_from(["N", "H"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(dims, min_size=1, max_size=5), st.data())
def test_a_flatten_written_as_a_reshape_reads_back_as_the_same_merge(shape, data):
    """Export writes Flatten(start..end) as Reshape(flatten_target); import's merged_axes must find a merge
    giving the same shape (the same axes, or an equivalent choice when size-1 dims make several fit)."""
    start = data.draw(st.integers(0, len(shape) - 1))
    end = data.draw(st.integers(start, len(shape) - 1))
    target = flatten_target(shape, start, end)
    if target is None:                                   # several symbolic dims: computed at run time instead
        assert sum(not isinstance(d, int) for d in shape) >= 2
        return
    found = merged_axes(shape, target)
    assert found is not None, (shape, start, end, target)

    def flattened(a, b):
        return (*shape[:a], product(shape[a:b + 1]), *shape[b + 1:])
    assert flattened(*found) == flattened(start, end)


def test_merged_axes_refuses_what_is_not_a_merge():
    assert merged_axes(("N", 3, 4), [0, 4, 3]) is None              # a transposed split is no Flatten
    assert merged_axes(("N", 3, 4), [-1, -1]) is None
    assert merged_axes(("N", 3, 4, 5), [0, 12, 5]) == (1, 2)
    assert merged_axes((), [1]) == (0, -1)


windows = st.tuples(st.integers(1, 20), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(0, 2),
                    st.integers(1, 2))


@settings(max_examples=300, deadline=None)
@given(windows)
def test_onnx_and_pytorch_window_counts_differ_only_by_a_window_starting_in_the_padding(window):
    size, kernel, stride, begin, end, dilation = window
    if (kernel - 1) * dilation + 1 > size + begin + end:
        return
    floor = onnx_window_count(size, kernel, stride, begin, end, dilation, False)
    ceil = onnx_window_count(size, kernel, stride, begin, end, dilation, True)
    assert floor == pool_output_size(size, kernel, stride, begin, end, dilation, False)
    assert overhang(size, floor, kernel, stride, begin, end, dilation) == 0
    pytorch = pool_output_size(size, kernel, stride, begin, end, dilation, True)
    assert pytorch in (ceil, ceil - 1)
    assert (pytorch != ceil) == ((ceil - 1) * stride >= size + begin)     # pytorch #71549
    last_end = (ceil - 1) * stride + (kernel - 1) * dilation + 1
    assert overhang(size, ceil, kernel, stride, begin, end, dilation) == max(0, last_end - (size + begin + end))


def test_axis_index_follows_onnx():
    assert [axis_index(a, 3) for a in (-3, -1, 0, 2)] == [0, 2, 0, 2]
    for bad in (3, -4, -2 ** 31):
        with pytest.raises(OnnxImportError, match="out of range for a tensor of rank 3"):
            axis_index(bad, 3)


def test_unique_names_keep_the_base_and_count_up():
    taken = {"conv/Pad"}
    first = unique_name("conv/Pad", taken.__contains__)
    taken.add(first)
    second = unique_name("conv/Pad", taken.__contains__)
    assert (first, second) == ("conv/Pad_1", "conv/Pad_2")
    assert unique_name("relu/Clip", taken.__contains__) == "relu/Clip"
