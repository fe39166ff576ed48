"""Differential testing of the optimizer: random graphs (tests/random_graphs.py) optimized at levels 1, 2 and 3
with verify=False (this test is the verifier) must lint, keep their output names, compute the same outputs as the
original in the NumPy backend and in onnxruntime, settle (optimizing again changes nothing), never grow MACs,
and at levels 1-2 never grow parameters either.

CI runs 80 derandomized examples (reproducible, a few seconds); CNNGRAPH_LONG=1 runs a campaign of 2000 random ones
(CNNGRAPH_DIFF_EXAMPLES=n sets the count either way). A failing example prints as the script that rebuilds its graph.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import cnngraph as cg
from cnngraph.tolerance import assert_close

try:
    from graph_case import Case
    from random_graphs import cases
except ImportError:                                          # run from the repository root
    from tests.graph_case import Case
    from tests.random_graphs import cases

# fold_branches places a smaller dilated kernel at an offset in input pixels instead of kernel taps (issue 10).
# While True, the property test skips graphs with that pattern; flip it once the fix is merged.
KNOWN_DILATION_BUG = False
# fold_batchnorm gives a bias-less Conv2d/Linear a bias of C_out values when it folds a scalar Mul/Add after it
# (1 value) or a BatchNorm2d before it (2·C_in values): parameters grow at level 2. While True, the property
# test does not count parameters for graphs with that pattern; flip it once the fix is merged.
KNOWN_PARAM_GROWTH_BUG = False

LONG = bool(os.environ.get("CNNGRAPH_LONG"))
EXAMPLES = int(os.environ.get("CNNGRAPH_DIFF_EXAMPLES") or (2000 if LONG else 80))
LEVELS = (1, 2, 3)


def as_tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def signature(graph) -> tuple:
    """Everything that defines a graph: inputs, outputs, and each node's name, op, inputs, attributes, parameters."""
    nodes = tuple((n.name, n.op, n.inputs, repr(sorted(n.attrs.items())),
                   tuple(sorted((k, v.shape, v.tobytes()) for k, v in n.params.items()))) for n in graph.nodes)
    return tuple(graph.inputs), tuple(graph.outputs), nodes


def dilated_branch_in_add(graph) -> bool:
    """The known bug's pattern: an Add with two or more dilated branches, i.e. inputs that are a Conv2d with
    dilation > 1 or reach one through layers that fold into it (BatchNorm, a per-channel constant,
    Identity/Dropout, an unpadded 1×1 conv, which keeps the dilation of the conv before it)."""
    def dilated(name) -> bool:
        node = graph.node(name)
        if node.op == "Conv2d":
            if node.attrs["dilation"] != (1, 1):
                return True
            return node.attrs["kernel_size"] == (1, 1) and not any(node.attrs["pads"]) and dilated(node.inputs[0])
        if node.op in ("BatchNorm2d", "Identity", "Dropout") or (
                node.op in ("Mul", "Add") and any(graph.node(i).op == "Constant" for i in node.inputs)):
            return any(dilated(i) for i in node.inputs if graph.node(i).op != "Constant")
        return False
    return any(n.op == "Add" and not n.attrs.get("broadcast") and sum(map(dilated, n.inputs)) >= 2
               for n in graph.layers())


def bias_gained_in_fold(graph) -> bool:
    """The known parameter growth's pattern: a bias-less Conv2d/Linear read by a Mul/Add with a constant of fewer
    values than its output channels, or reading a BatchNorm2d of fewer than half its output channels."""
    def skip(name):                                      # Identity and Dropout are removed before folding
        node = graph.node(name)
        return skip(node.inputs[0]) if node.layer.inference_identity else node

    def readers(name):
        return [r for user in map(graph.node, graph.users(name))
                for r in (readers(user.name) if user.layer.inference_identity else [user])]

    def constant(name) -> bool:
        node = graph.node(name)
        return node.op == "Constant" or (bool(node.inputs) and all(map(constant, node.inputs)))

    for node in graph.layers():
        if node.op not in ("Conv2d", "Linear") or node.attrs["bias"]:
            continue
        out = node.type.shape[1] if node.op == "Conv2d" else node.attrs["out_features"]
        producer = skip(node.inputs[0])
        if producer.op == "BatchNorm2d" and 2 * producer.attrs["num_features"] < out:
            return True
        for reader in readers(node.name):
            others = [i for i in reader.inputs if skip(i) is not node]
            if reader.op in ("Mul", "Add") and any(constant(i) and np.prod(graph.type_of(i).shape) < out for i in others):
                return True
    return False


def random_inputs(graph, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([d if isinstance(d, int) else batch for d in graph.type_of(name).shape])
            .astype(np.float32) for name in graph.inputs]


def outputs(graph, input_sets, backend: str = "numpy") -> list[np.ndarray]:
    """Each output over every set of inputs, joined along the batch axis: the tolerance's scale (the largest
    |value| of an output) then comes from several samples, not from one sample's value that cancelled to ~0.
    An output without a batch axis (computed from constants) is taken from the first set."""
    runs = [as_tuple(cg.run(graph, *arrays, backend=backend)) for arrays in input_sets]
    batched = [isinstance((graph.type_of(name).shape or (1,))[0], str) for name in graph.outputs]
    return [np.concatenate(parts) if has_batch else parts[0] for has_batch, parts in zip(batched, zip(*runs))]


def check_optimizations(graph, batch: int = 2) -> None:
    """The properties, for every level; the assertion message names the level, the backend and the output.
    A level that gives the same graph as the original or as a lower level is not run again (levels 2 and 3
    mostly agree): the same graph gives the same numbers."""
    before = signature(graph)
    input_sets = [random_inputs(graph, batch, seed=0), random_inputs(graph, 4, seed=1)]
    expected = outputs(graph, input_sets)
    for name, got, want in zip(graph.outputs, outputs(graph, input_sets, "onnxruntime"), expected):
        assert_close(got, want, f"the original graph in onnxruntime, output {name!r}")
    ran = {before}
    for level in LEVELS:
        optimized = cg.optimize(graph, level=level, verify=False)
        optimized.lint()
        assert optimized.outputs == graph.outputs, f"level {level} renamed the outputs"
        result = signature(optimized)
        for backend in ("numpy", "onnxruntime") if result not in ran else ():
            for name, got, want in zip(graph.outputs, outputs(optimized, input_sets, backend), expected):
                assert_close(got, want, f"level {level}, {backend}, output {name!r}")
        ran.add(result)
        assert optimized.macs() <= graph.macs(), f"level {level} grew MACs {graph.macs()} -> {optimized.macs()}"
        if level <= 2 and not (KNOWN_PARAM_GROWTH_BUG and bias_gained_in_fold(graph)):
            assert optimized.param_count() <= graph.param_count(), \
                f"level {level} grew parameters {graph.param_count()} -> {optimized.param_count()}"
        again = cg.optimize(optimized, level=level, verify=False)
        assert signature(again) == result, f"level {level}: optimizing again changed the graph"
    assert signature(graph) == before, "optimize() changed its input graph"


def dilation_bug_case() -> Case:
    """Issue 10's reproducer: a 1×1 and a 3×3 conv, both dilation 2, summed."""
    case = Case()
    x = case.input((None, 1, 6, 6))
    a = case.apply("cg.Conv2d(1, 2, 1, dilation=2, bias=False)", x)
    b = case.apply('cg.Conv2d(1, 2, 3, padding="same", dilation=2, bias=False)', x)
    case.run(f"g.output({case.apply('cg.Add()', a, b)})")
    return case


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@example(case=dilation_bug_case(), batch=2)
@given(case=cases(), batch=st.integers(1, 3))
def test_optimized_random_graphs_compute_the_same(case, batch):
    if KNOWN_DILATION_BUG:
        assume(not dilated_branch_in_add(case.graph))
    check_optimizations(case.graph, batch)


@pytest.mark.xfail(KNOWN_DILATION_BUG, strict=True, reason="fold_branches embeds the 1×1 kernel at an offset in input "
                   "pixels, not in taps of the dilated 3×3 (issue 10); fixed on the passes branch")
def test_dilated_branches_fold_exactly():
    check_optimizations(dilation_bug_case().graph)


def test_the_known_bugs_patterns_are_recognised_and_nothing_else():
    assert dilated_branch_in_add(dilation_bug_case().graph)
    assert bias_gained_in_fold(scalar_scale_case().graph) and bias_gained_in_fold(batchnorm_in_front_case().graph)
    plain = Case()
    x = plain.input((None, 1, 6, 6))
    a = plain.apply("cg.Conv2d(1, 2, 1, bias=False)", x)
    b = plain.apply('cg.Conv2d(1, 2, 3, padding="same", bias=False)', x)
    scale = plain.apply("random_constant((1, 2, 1, 1), rng)")
    plain.run(f"g.output({plain.apply('cg.Mul()', plain.apply('cg.Add()', a, b), scale)})")
    assert not dilated_branch_in_add(plain.graph) and not bias_gained_in_fold(plain.graph)


def test_a_case_prints_as_the_script_that_rebuilds_it():
    case = dilation_bug_case()
    scope: dict = {}
    exec(case.script(), scope)
    assert signature(scope["g"]) == signature(case.graph)


def scalar_scale_case() -> Case:
    """A bias-less conv times a scalar: 36 + 1 parameters before, 36 + 4 after (the conv gains 4 zero biases)."""
    case = Case()
    y = case.apply("cg.Conv2d(1, 4, 3, bias=False)", case.input((None, 1, 5, 5)))
    case.run(f"g.output({case.apply('cg.Mul()', y, case.apply('random_constant((), rng)'))})")
    return case


def batchnorm_in_front_case() -> Case:
    """BatchNorm2d(1) in front of a bias-less conv with 4 outputs: 2 + 36 parameters before, 36 + 4 after."""
    case = Case()
    x = case.apply("random_bn(1, rng)", case.input((None, 1, 5, 5)))
    case.run(f"g.output({case.apply('cg.Conv2d(1, 4, 3, bias=False)', x)})")
    return case


@pytest.mark.parametrize("make", [scalar_scale_case, batchnorm_in_front_case])
@pytest.mark.xfail(KNOWN_PARAM_GROWTH_BUG, strict=True, reason="fold_batchnorm adds a bias of C_out values to a "
                   "bias-less layer for a scalar constant or a BatchNorm2d of fewer than C_out/2 channels: level 2 "
                   "grows parameters")
def test_level_2_folds_never_grow_parameters(make):
    graph = make().graph
    assert cg.optimize(graph, level=2).param_count() <= graph.param_count()
