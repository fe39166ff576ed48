"""What every test module shares: the helpers several of them used to copy, hypothesis profiles, markers.

Import the helpers by name, from any folder under tests/:  ``from conftest import as_tuple, inputs_for``
and ``from reference import reference_run`` (this file puts tests/ on sys.path; keep it the only conftest.py
outside a package, or ``conftest`` becomes ambiguous).

Hypothesis runs the ``ci`` profile by default; ``CNNGRAPH_LONG=1`` (or ``HYPOTHESIS_PROFILE=long``) runs ten
times as many examples. A test states its CI count with ``@examples(n)``, which the profile scales.
Tests marked ``slow`` still run in a plain ``python -m pytest`` (and in CI); ``-m "not slow"`` leaves them out
while iterating.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from hypothesis import HealthCheck, settings

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:                    # `reference` and `conftest` importable from tests/<package>/
    sys.path.insert(0, TESTS)

import cnngraph as cg  # noqa: E402
from cnngraph.tolerance import assert_close  # noqa: E402

# --- hypothesis ------------------------------------------------------------------------------------------------
CI_EXAMPLES = 100          # the ci profile's max_examples: examples(n) gives n × max_examples / CI_EXAMPLES
settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", settings.get_profile("ci"), max_examples=10 * CI_EXAMPLES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("long" if os.environ.get("CNNGRAPH_LONG") else "ci"))


def examples(n: int) -> settings:
    """A test's example count, n in the ci profile and proportionally more in a longer one."""
    return settings(max_examples=max(1, n * settings.default.max_examples // CI_EXAMPLES))


# --- arrays and runs -------------------------------------------------------------------------------------------
def as_tuple(result) -> tuple:
    """cg.run returns one array for one output, a tuple for several: always a tuple."""
    return result if isinstance(result, tuple) else (result,)


def randn(rng, shape, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def drawn_conv(case: dict, rng) -> cg.Conv2d:
    """A Conv2d with a drawn case's channels, kernel, stride, dilation, groups and bias, random weights."""
    layer = cg.Conv2d(case["cin"], case["cout"], case["kernel"], stride=case["stride"], dilation=case["dilation"],
                      groups=case["groups"], bias=case["bias"])
    layer.weight = randn(rng, layer.weight.shape)
    if case["bias"]:
        layer.bias = randn(rng, layer.bias.shape)
    return layer


def inputs_for(graph, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal float32 inputs, every symbolic dimension set to ``batch``."""
    rng = np.random.default_rng(seed)
    return [randn(rng, [d if isinstance(d, int) else batch for d in graph.type_of(name).shape])
            for name in graph.inputs]


def assert_equivalent(before, after, batches=(1, 3)) -> None:
    """``after`` (a rewritten ``before``) lints, keeps the outputs, gives the same numbers in the NumPy backend,
    and agrees with the naive reference."""
    from reference import reference_run

    after.lint()
    assert after.outputs == before.outputs
    for batch in batches:
        arrays = inputs_for(before, batch, seed=batch)
        expected = as_tuple(cg.run(before, *arrays))
        for name, a, b, r in zip(before.outputs, as_tuple(cg.run(after, *arrays)), expected,
                                 as_tuple(reference_run(after, *arrays))):
            assert_close(a, b, f"output {name!r} at batch {batch}")
            assert_close(r, b, f"reference of the optimized graph, output {name!r}")


def ort_outputs(model, *arrays) -> list[np.ndarray]:
    """onnxruntime (graph optimizations off) on an ONNX model: a ModelProto, its bytes or its file (a big model
    is best given as a file or bytes: no second copy in memory). Every graph output, in order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else \
        model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in session.get_inputs()], arrays))
    return session.run([o.name for o in session.get_outputs()], feeds)
