"""Adding an op is one checklist, checked here for every registered op: the op's family module defines the layer
(documented, with shape inference and, when it has parameters, their initialisation and its cost) and its ONNX
mapping both ways; the NumPy backend has its kernel; tests/reference.py its naive reference. One failure lists
every missing piece of every op."""
import numpy as np
import pytest

import cnngraph as cg
from cnngraph.backends.numpy_backend import KERNELS
from cnngraph.layer import Layer
from cnngraph.onnx.mapping import EXPORTERS
from cnngraph.tolerance import assert_close

try:
    from reference import REFERENCE_OPS
except ImportError:
    from tests.reference import REFERENCE_OPS


def example_graph(op: str) -> cg.Graph:
    """A graph of one ``op`` node (the layer's ``example``), its output the graph's output."""
    layer, shapes = cg.REGISTRY[op].example()
    graph = cg.Graph(f"one_{op}")
    graph.output(graph.apply(layer, *(graph.input(f"x{i}", shape) for i, shape in enumerate(shapes))))
    return graph


def _overrides(cls, method: str) -> bool:
    return getattr(cls, method).__func__ is not getattr(Layer, method).__func__


def _read_back(op: str) -> str | None:
    """None when exporting the op's example and importing the file gives the op back (possibly after the
    level-1 cleanups; an op that is an identity at inference may come back as Identity); else what went wrong."""
    try:
        graph = cg.load_onnx(cg.export_onnx(example_graph(op)))
        found = {n.op for n in graph.layers()} | {n.op for n in cg.optimize(graph, level=1).layers()}
    except cg.CnnGraphError as error:
        return f"the round trip through ONNX fails: {error}"
    wanted = {op, "Identity"} if cg.REGISTRY[op].inference_identity else {op}
    wanted |= set(getattr(cg.REGISTRY[op], "exported_as", ()))     # no ONNX node: reads back as what it equals
    return None if found & wanted else f"not reachable from ONNX: its export reads back as {sorted(found)}"


def missing_pieces(op: str) -> list[str]:
    cls, missing = cg.REGISTRY[op], []
    if op not in KERNELS:
        missing.append("no NumPy kernel (backends/numpy_backend, @kernel)")
    if op not in EXPORTERS and not cls.training_only:
        missing.append("no ONNX export (@exports in its family module)")
    if cls.training_only and op in EXPORTERS:
        missing.append("a training-only op with an ONNX export")
    if op not in REFERENCE_OPS:
        missing.append("no naive reference (tests/reference.py, REFERENCE_OPS)")
    if not (cls.__dict__.get("__doc__") or "").strip():
        missing.append("no docstring")
    if not _overrides(cls, "infer"):
        missing.append("no shape inference (infer)")
    if _overrides(cls, "param_shapes") and not _overrides(cls, "init_params"):
        missing.append("parameters without an initialisation (init_params)")
    if cls.weighted and not _overrides(cls, "macs"):
        missing.append("a weighted op without a cost (macs)")
    if op in EXPORTERS:
        problem = _read_back(op)
        if problem:
            missing.append(problem)
    return missing


def test_every_registered_op_is_complete():
    report = {op: missing_pieces(op) for op in sorted(cg.REGISTRY)}
    report = {op: pieces for op, pieces in report.items() if pieces}
    assert not report, "incomplete ops:\n" + "\n".join(f"  {op}: {'; '.join(p)}" for op, p in report.items())


def test_kernels_rules_and_references_exist_only_for_registered_ops():
    assert set(KERNELS) - set(cg.REGISTRY) == set()
    assert set(EXPORTERS) - set(cg.REGISTRY) == set()
    assert set(REFERENCE_OPS) - set(cg.REGISTRY) == set()


@pytest.mark.parametrize("op", sorted(op for op, cls in cg.REGISTRY.items() if cls.linear))
def test_ops_flagged_linear_are_affine(op):
    """The folding passes compose ops flagged ``linear``: each must be affine in its data inputs,
    f(a·x + (1−a)·y) = a·f(x) + (1−a)·f(y)."""
    graph = example_graph(op)
    rng = np.random.default_rng(0)
    shapes = [[d if isinstance(d, int) else 2 for d in graph.type_of(name).shape] for name in graph.inputs]
    xs = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    ys = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    mixed = cg.run(graph, *(0.3 * x + 0.7 * y for x, y in zip(xs, ys)))
    assert_close(mixed, 0.3 * cg.run(graph, *xs) + 0.7 * cg.run(graph, *ys), f"{op} is flagged linear")
