"""ONNX's own node test cases, for every op the importer maps, run through import -> NumPy backend.

The cases come from onnx.backend.test.case.node.collect_testcases(): each is a one-node model (sometimes
an expanded function) with inputs and expected outputs computed by ONNX's authors. A case whose ops are all
supported must pass; a case we do not run is listed in REFUSED (we raise a clear error for it, checked here)
or skipped by a rule stated in ``skip_reason`` (another dtype, another rank). Adding an op to the importer
adds its cases automatically.

Inputs the op reads as weights or attributes (a Conv's W, a Clip's bounds, a Reshape's shape) are given to
the importer as initializers, as exporters write them; the data inputs stay graph inputs.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases

import cnngraph as cg
from cnngraph.errors import CnnGraphError
from cnngraph.onnx.fold import FOLDERS
from cnngraph.onnx.importer import HANDLERS
from cnngraph.onnx.mapping import IMPORTERS
from cnngraph.tolerance import assert_close

# ops whose every input is data; for the others only input 0 is
ALL_DATA = {"Add", "Sub", "Mul", "Div", "Sum", "Concat", "MatMul"}

# cases we refuse with a clear error (checked), by a pattern of their names, and why
REFUSED = [
    (r"allowzero_reordered", "empty tensors (a dim of 0)"),
    (r"test_reduce_.*empty_set", "reductions of empty tensors (a dim of 0)"),
    (r"test_layer_normalization", "the Mean and InvStdDev outputs are read (training statistics cnngraph does "
                                  "not compute)"),
    (r"test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
     "a ceil_mode average counting padding whose last window overhangs it: runtimes disagree on its divisor "
     "(pytorch #183528)"),
    (r"training", "training mode"),
    (r"test_identity_(opt|sequence)", "optional and sequence types: cnngraph's values are tensors"),
    (r"test_slice_start_out_of_bounds|zero_size_splits|test_rotary_embedding(?!.*rotary_dim).*_expanded",
     "empty tensors (a slice or split piece of length 0)"),
    (r"test_gather_2d_indices", "Gather with indices of rank 2: IndexSelect takes a scalar or a list"),
    (r"test_resize_.*(cubic_A_n0p5|antialias|tf_crop_and_resize|not_larger|not_smaller)",
     "Resize's cubic kernels other than PyTorch's, antialiasing, tf_crop_and_resize and aspect-ratio policies"),
]

# cases whose expected output is not what onnxruntime (our oracle for ONNX semantics) and PyTorch compute
DIFFERENT = [
    (r"test_resize_downsample_scales_(linear|cubic)_align_corners",
     "align_corners with a scale: the case divides by in·scale − 1 unfloored (2.4 − 1); onnxruntime and "
     "PyTorch by the output length − 1 (2 − 1), as cnngraph does"),
]


def mapped_ops() -> set[str]:
    """The ONNX ops the importer maps: declared with our ops (mapping.IMPORTERS) or still in its tables."""
    return set(IMPORTERS) | set(HANDLERS)


def supported_ops() -> set[str]:
    return mapped_ops() | set(FOLDERS)


def node_cases():
    cases = []
    for case in collect_testcases():
        ops = {n.op_type for n in case.model.graph.node}
        if ops <= supported_ops() and ops & mapped_ops():
            cases.append(case)
    return sorted(cases, key=lambda c: c.name)


CASES = node_cases()


def frozen(model: onnx.ModelProto, inputs: list[np.ndarray]):
    """The model with its non-data inputs turned into initializers; the data inputs' arrays."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    ops = {n.op_type for n in graph.node}
    keep = []
    data = []
    for index, (value, array) in enumerate(zip(list(graph.input), inputs)):
        if index == 0 or ops <= ALL_DATA:
            keep.append(value)
            data.append(array)
        else:
            graph.initializer.append(numpy_helper.from_array(np.asarray(array), value.name))
    del graph.input[:]
    graph.input.extend(keep)
    return model, data


def as_arrays(values) -> list[np.ndarray]:
    return [numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v) for v in values]


def refusal(case) -> str | None:
    return next((reason for pattern, reason in REFUSED if re.search(pattern, case.name)), None)


def skip_reason(case) -> str | None:
    if refusal(case):
        return None
    different = next((reason for pattern, reason in DIFFERENT if re.search(pattern, case.name)), None)
    if different:
        return different
    inputs, outputs = (as_arrays(part) for part in case.data_sets[0])
    data_types = [value.type.tensor_type.elem_type for value in case.model.graph.input[:1]]
    if data_types != [onnx.TensorProto.FLOAT] or any(a.dtype != np.float32 for a in outputs):
        return "not float32 (cnngraph computes in float32 only)"
    model, data = frozen(case.model, list(inputs))
    if any(a.dtype != np.float32 for a in data):
        return "a data input that is not float32"
    if any(a.ndim == 0 for a in data):
        return "a scalar graph input"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case(case):
    reason = skip_reason(case)
    if reason:
        pytest.skip(reason)
    for inputs, expected in case.data_sets:
        model, data = frozen(case.model, as_arrays(inputs))
        if refusal(case):
            with pytest.raises(CnnGraphError):
                cg.load_onnx(model)
            return
        graph = cg.load_onnx(model)
        got = cg.run(graph, *data)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for name, a, b in zip(graph.outputs, got, expected):
            assert_close(a, np.asarray(b), f"{case.name}: output {name!r}")


def test_cases_cover_the_importers_ops():
    covered = {n.op_type for c in CASES for n in c.model.graph.node}
    assert mapped_ops() - covered == set(), "ONNX ops the importer maps that no node case exercises"
