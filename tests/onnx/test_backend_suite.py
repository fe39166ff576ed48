"""ONNX's backend test suite (onnx.backend.test.BackendTest) through cnngraph: PyTorch's converted modules and ops.

The suite's ``pytorch-converted`` (torch.nn modules: Conv1d..3d, pools, PReLU, LogSoftmax, ...) and
``pytorch-operator`` (torch functions: chunk, index, pow, repeat, ...) cases, float32 only (a case whose data
inputs or outputs are another type is not ours: cnngraph computes in float32), run on the CPU through
cnngraph.onnx.backend.CnnGraphBackend: cg.load_onnx (after ONNX's version converter lifts the cases' opset 6
to the oldest opset cnngraph imports), the NumPy backend, and the suite's own comparison with its stored outputs.

A case that fails today is in KNOWN_GAPS with its reason and is an xfail(strict=True): when a gap is closed
the case passes, the xfail fails, and the entry must go. A reason starting "refused:" accepts only a clean
CnnGraphError (the importer names the op); any other reason would be wrong numbers, a bug, and accepts only
the suite's AssertionError. Today every gap is a refusal: nothing gives wrong numbers.

The figure (pass count / float32 total per category, and each gap's error) for the lead:

    python tests/onnx/test_backend_suite.py
"""
from __future__ import annotations

import collections
import os
import sys
import unittest

import onnx
import pytest
from onnx.backend.test import BackendTest
from onnx.backend.test.loader import load_model_tests

from cnngraph.errors import CnnGraphError
from cnngraph.onnx.backend import CnnGraphBackend
from cnngraph.tolerance import assert_close

CATEGORIES = {"pytorch-converted": "OnnxBackendPyTorchConvertedModelTest",
              "pytorch-operator": "OnnxBackendPyTorchOperatorModelTest"}

KNOWN_GAPS = {  # case (without the _cpu suffix): why it fails today
}


def is_float32(model_dir: str) -> bool:
    """Every data input (graph input without an initializer) and every output of the case's model is float32."""
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    constants = {t.name for t in model.graph.initializer}
    values = [v for v in model.graph.input if v.name not in constants] + list(model.graph.output)
    return all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in values)


def float32_cases() -> dict[str, list[str]]:
    """The float32 case names of each category, sorted."""
    return {kind: sorted(case.name for case in load_model_tests(kind=kind) if is_float32(case.model_dir))
            for kind in CATEGORIES}


class PyTorchBackendTest(BackendTest):
    """BackendTest with only the PyTorch categories loaded: its __init__ would also generate every node case
    (importing ~200 case modules: about 10 s), which this module does not run. Same test functions."""

    def __init__(self, backend, parent_module=None):
        if not hasattr(self, "_add_model_test"):                 # another onnx: the plain suite, slower
            super().__init__(backend, parent_module)
            return
        self.backend, self._parent_module, self._test_kwargs = backend, parent_module, {}
        self._include_patterns, self._exclude_patterns, self._xfail_patterns = set(), set(), set()
        self._test_items = collections.defaultdict(dict)
        for kind, category in (("pytorch-converted", "PyTorchConverted"), ("pytorch-operator", "PyTorchOperator")):
            for case in load_model_tests(kind=kind):
                self._add_model_test(case, category)


CASES = float32_cases()
SUITE = PyTorchBackendTest(CnnGraphBackend, __name__).test_cases   # category class name -> unittest.TestCase class


def run_case(kind: str, name: str) -> None:
    """The suite's own test function for the case on the CPU: prepare, run, compare with its stored outputs."""
    getattr(SUITE[CATEGORIES[kind]], f"{name}_cpu")(unittest.TestCase())


def params():
    for kind, names in CASES.items():
        for name in names:
            reason = KNOWN_GAPS.get(name)
            marks = () if reason is None else pytest.mark.xfail(
                strict=True, reason=reason, raises=CnnGraphError if reason.startswith("refused") else AssertionError)
            yield pytest.param(kind, name, marks=marks, id=name)


@pytest.mark.parametrize(("kind", "name"), list(params()))
def test_backend_case(kind, name):
    run_case(kind, name)


def test_known_gaps_are_cases():
    """Every KNOWN_GAPS entry names a float32 case of the two categories (no stale entries)."""
    names = {name for names in CASES.values() for name in names}
    assert set(KNOWN_GAPS) <= names, sorted(set(KNOWN_GAPS) - names)
    assert sum(map(len, CASES.values())) >= 100, {kind: len(names) for kind, names in CASES.items()}


def test_backend_adapter():
    """The adapter itself: CPU only, opset 6 refused cleanly without the upgrade, inputs by position or name,
    an optimized graph gives the suite's numbers too."""
    case = next(c for c in load_model_tests(kind="pytorch-converted") if c.name == "test_Conv2d_depthwise")
    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    x = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(case.model_dir, "test_data_set_0", "input_0.pb")))
    y = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(case.model_dir, "test_data_set_0", "output_0.pb")))
    assert CnnGraphBackend.supports_device("CPU") and not CnnGraphBackend.supports_device("CUDA")
    with pytest.raises(CnnGraphError, match="opset 6"):
        CnnGraphBackend.prepare(model, upgrade=False)
    rep = CnnGraphBackend.prepare(model, level=2)
    (name,) = rep.graph.inputs
    for inputs in ([x], x, {name: x}):
        (out,) = rep.run(inputs)
        assert_close(out, y, "optimized at level 2")
    assert_close(CnnGraphBackend.run_model(model, [x])[0], y, "run_model")


def report() -> int:
    """Run every float32 case; print, per category, passes / total and every failure with its error."""
    exit_code = 0
    for kind, names in CASES.items():
        failures = []
        for name in names:
            try:
                run_case(kind, name)
            except CnnGraphError as error:
                failures.append((name, "refused", str(error).replace("<ModelProto>: ", "").splitlines()[0][:150]))
            except Exception as error:                  # noqa: BLE001  wrong numbers or a crash: report it
                failures.append((name, "WRONG" if isinstance(error, AssertionError) else "CRASH",
                                 f"{type(error).__name__}: {str(error).strip().splitlines()[0][:150]}"))
        passed = len(names) - len(failures)
        print(f"{kind}: {passed} / {len(names)} float32 cases pass ({100 * passed / len(names):.0f}%)")
        for name, what, message in failures:
            known = "" if name in KNOWN_GAPS else "   [not in KNOWN_GAPS]"
            print(f"    {name:45} {what:8} {message}{known}")
            exit_code |= what != "refused"
    return exit_code


if __name__ == "__main__":
    sys.exit(report())
