"""ONNX export and the onnxruntime backend.

Every op, in small random graphs, exported at opsets 13, 17, 18 and the newest: the model passes
check_model(full_check=True) and onnxruntime computes what the reference computes, at batch 1 and 3. The
reference is tests/reference.py (naive loops) when it exists and runs; otherwise onnx's ReferenceEvaluator on
the same model and the NumPy backend (cg.run).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import cnngraph as cg
from cnngraph import atomic
from cnngraph.backends import onnxruntime_backend as ort_backend
from cnngraph.errors import CnnGraphError, ExportError, InputError
from cnngraph.layer import REGISTRY
from cnngraph.onnx import export as onnx_export
from cnngraph.onnx.export import export_onnx
from cnngraph.tolerance import assert_close

NEWEST = onnx.defs.onnx_opset_version()
OPSETS = sorted({13, 17, 18, NEWEST})
SEEDS = range(4)
SYMBOL_SIZE = 2          # size given to symbolic dims other than the batch


def _load_reference():
    """tests/reference.py's reference_run, if it exists and runs a trivial graph correctly; else None."""
    for module in ("reference", "tests.reference"):
        try:
            reference_run = __import__(module, fromlist=["reference_run"]).reference_run
            graph = cg.Graph("probe")
            graph.output(graph.apply(cg.ReLU(), graph.input("x", (None, 2))))
            if np.array_equal(reference_run(graph, np.array([[-1.0, 2.0]], np.float32)), [[0.0, 2.0]]):
                return reference_run
        except Exception:
            continue
    return None


REFERENCE_RUN = None if os.environ.get("CNNGRAPH_NO_REFERENCE") else _load_reference()


# --- helpers ---------------------------------------------------------------------------------------------------
def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def random_inputs(graph, batch: int, rng, scale: float = 2.0) -> list[np.ndarray]:
    arrays = []
    for name in graph.inputs:
        shape = [d if isinstance(d, int) else (batch if d == "N" else SYMBOL_SIZE) for d in graph.type_of(name).shape]
        arrays.append((rng.uniform(-scale, scale, size=shape)).astype(np.float32))
    return arrays


def evaluator_is_wrong_for(model) -> bool:
    """Models onnx's ReferenceEvaluator (onnx 1.23) computes wrongly, so it is no oracle for them:
    - AveragePool with ceil_mode: even windows inside the input (a 3×3/3 pool of a 4×4 input gives 2.5 where
      the mean is 5);
    - BatchNormalization-9 (opsets 9 to 13): it fills in the default momentum 0.9 and then mixes the batch
      statistics into the running ones, as in training, although version 9 is inference only."""
    opset = model.opset_import[0].version
    return any((n.op_type == "AveragePool" and any(a.name == "ceil_mode" and a.i for a in n.attribute))
               or (n.op_type == "BatchNormalization" and opset < 14) for n in model.graph.node)


def references(graph, model, arrays) -> dict[str, tuple]:
    if REFERENCE_RUN is not None:
        return {"tests/reference.py": as_tuple(REFERENCE_RUN(graph, *arrays))}
    found = {"cg.run (NumPy backend)": as_tuple(cg.run(graph, *arrays))}
    if not evaluator_is_wrong_for(model):
        found["onnx ReferenceEvaluator"] = tuple(ReferenceEvaluator(model).run(None, dict(zip(graph.inputs, arrays))))
    return found


def check_model_runs(graph, opset: int, rng, batches=(1, 3), scale: float = 2.0) -> onnx.ModelProto:
    """Export, full check, run in onnxruntime at each batch size and compare with every reference."""
    model = export_onnx(graph, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    session = ort_backend.make_session(model)
    for batch in batches:
        arrays = random_inputs(graph, batch, rng, scale)
        got = session.run(graph.outputs, dict(zip(graph.inputs, arrays)))
        for who, expected in references(graph, model, arrays).items():
            assert len(expected) == len(got)
            for name, a, b in zip(graph.outputs, got, expected):
                assert_close(a, b, f"{graph.name} opset {opset} batch {batch} output {name!r} vs {who}")
    return model


def graph_of(layer, *shapes, name="g"):
    graph = cg.Graph(name)
    values = [graph.input(f"x{i}", shape) for i, shape in enumerate(shapes)]
    graph.output(graph.apply(layer, *values))
    return graph


def choice(rng, options):
    return options[int(rng.integers(len(options)))]


def batch_shape(rng, rank: int, low: int = 1, high: int = 5):
    return (None, *(int(d) for d in rng.integers(low, high, size=rank - 1)))


# --- one random graph per op and seed --------------------------------------------------------------------------
def build_conv(rng, seed):
    groups = choice(rng, [1, 1, 2, 4])
    cin, cout = groups * choice(rng, [1, 2]), groups * choice(rng, [1, 2, 3])
    kernel = tuple(int(k) for k in rng.integers(1, 4, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 3, size=4))          # asymmetric (top, left, bottom, right)
    layer = cg.Conv2d(cin, cout, kernel, stride=tuple(int(s) for s in rng.integers(1, 3, size=2)), padding=pads,
                      dilation=tuple(int(d) for d in rng.integers(1, 3, size=2)), groups=groups, bias=seed % 2 == 0)
    return graph_of(layer, (None, cin, int(rng.integers(5, 9)), int(rng.integers(5, 9))))


def build_linear(rng, seed):
    rank = [2, 3, 1, 4][seed % 4]
    fin, fout = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    shape = (fin,) if rank == 1 else (*batch_shape(rng, rank - 1), fin)
    return graph_of(cg.Linear(fin, fout, bias=seed % 3 != 1), shape)


def build_batchnorm(rng, seed):
    rank = [4, 2, 3, 4][seed % 4]
    c = int(rng.integers(1, 5))
    layer = cg.BatchNorm2d(c, eps=choice(rng, [1e-5, 1e-3]))
    layer.weight, layer.bias = rng.normal(size=c), rng.normal(size=c)
    layer.running_mean, layer.running_var = rng.normal(size=c), rng.uniform(0.2, 2.0, size=c)
    return graph_of(layer, (None, c, *(int(d) for d in rng.integers(1, 5, size=rank - 2))))


def _pool_args(rng):
    kernel = tuple(int(k) for k in rng.integers(1, 4, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    return kernel, stride, (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))


def build_maxpool(rng, seed):
    kernel, stride, padding = _pool_args(rng)
    dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
    padding = tuple(min(p, ((k - 1) * d + 1) // 2) for p, k, d in zip(padding, kernel, dilation))
    layer = cg.MaxPool2d(kernel, stride, padding, dilation=dilation, ceil_mode=seed % 2 == 1)
    return graph_of(layer, (None, 2, int(rng.integers(5, 10)), int(rng.integers(5, 10))))


def build_avgpool(rng, seed):
    kernel, stride, padding = _pool_args(rng)
    layer = cg.AvgPool2d(kernel, stride, padding, ceil_mode=seed % 2 == 1, count_include_pad=seed < 2)
    return graph_of(layer, (None, 3, int(rng.integers(4, 10)), int(rng.integers(4, 10))))


def build_flatten(rng, seed):
    rank = int(rng.integers(1, 6))
    shape = list(batch_shape(rng, rank)) if rank > 1 else [int(rng.integers(1, 5))]
    if seed == 3 and rank > 2:
        shape[1] = None                                                  # a second symbolic dim ("d1")
    start = int(rng.integers(0, rank))
    end = int(rng.integers(start, rank))
    start, end = (1, -1) if seed == 0 and rank > 1 else (start - rank * int(rng.integers(0, 2)), end)
    return graph_of(cg.Flatten(start, end), tuple(shape))


def build_softmax(rng, seed):
    rank = int(rng.integers(1, 5))
    shape = batch_shape(rng, rank) if rank > 1 else (int(rng.integers(1, 6)),)
    return graph_of(cg.Softmax(int(rng.integers(-rank, rank))), shape)


def build_add(rng, seed):
    shape = batch_shape(rng, int(rng.integers(1, 5)))
    if seed == 0:                                                        # x + x: one value read twice
        graph = cg.Graph("g")
        x = graph.input("x", shape)
        graph.output(graph.add("Add", [x, x]))
        return graph
    return graph_of(cg.Add(), *[shape] * (seed + 1))                     # 2, 3 and 4 inputs (Add, Sum)


def build_concat(rng, seed):
    rank = int(rng.integers(2, 5))
    axis = int(rng.integers(1, rank))
    base = list(batch_shape(rng, rank))
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        base[axis] = int(rng.integers(1, 5))
        shapes.append(tuple(base))
    return graph_of(cg.Concat(axis - rank * (seed % 2)), *shapes)


def elementwise(make):
    def build(rng, seed):
        return graph_of(make(rng), batch_shape(rng, int(rng.integers(1, 5))))
    return build


def _operand(graph, rng, shape, name, constant: bool, low=-2.0, high=2.0):
    """A second operand: another input, or a Constant node."""
    if constant:
        value = rng.uniform(low, high, size=[d if isinstance(d, int) else 1 for d in shape])
        return graph.apply(cg.Constant(value), name=name)
    return graph.input(name, shape)


def _broadcast_partner(rng, shape):
    """A shape broadcasting against ``shape``: some axes 1, maybe fewer leading axes."""
    drop = int(rng.integers(0, len(shape)))
    return tuple(1 if rng.integers(2) else d for d in shape[drop:]) or (1,)


def build_binary(layer):
    def build(rng, seed):
        graph = cg.Graph("g")
        shape = batch_shape(rng, int(rng.integers(2, 5)))
        x = graph.input("x", shape)
        partner = _broadcast_partner(rng, tuple(shape)) if seed else tuple(shape)
        partner = tuple("N" if d is None else d for d in partner)
        if layer is cg.Div:                                  # denominators away from zero
            y = graph.apply(cg.Constant(rng.choice([-1, 1], size=[d if isinstance(d, int) else 1 for d in partner])
                                        * rng.uniform(0.5, 2.0, size=[d if isinstance(d, int) else 1 for d in partner])),
                            name="y")
        else:
            y = _operand(graph, rng, partner, "y", constant=seed % 2 == 1)
        operands = (y, x) if seed == 3 else (x, y)
        graph.output(graph.apply(layer(), *operands))
        return graph
    return build


def build_constant(rng, seed):
    graph = cg.Graph("g")
    x = graph.input("x", batch_shape(rng, 3))
    scale = graph.apply(cg.Constant(rng.normal(size=(graph.type_of(x).shape[1], 1))), name="scale")
    graph.output(graph.apply(cg.Mul(), x, scale))
    if seed == 3:                                            # a constant that is a graph output
        graph.output(scale)
    return graph


def build_transpose(rng, seed):
    rank = int(rng.integers(2, 6))
    return graph_of(cg.Transpose(rng.permutation(rank)), batch_shape(rng, rank))


def build_reshape(rng, seed):
    n, a, b, c = (None, *(int(d) for d in rng.integers(1, 5, size=3)))
    targets = [(0, -1), ("N", a * b, c), (-1, c), (0, c, 1, b, a), ("N", -1, 1)]
    return graph_of(cg.Reshape(targets[seed % len(targets)] if seed < 4 else targets[4]), (n, a, b, c))


def build_pad(rng, seed):
    shape = (None, int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(2, 6)))
    mode = ["constant", "reflect", "edge", "constant"][seed % 4]
    low = -1 if mode == "constant" else 0
    pads = [0, 0, *(int(rng.integers(low, 3)) for _ in range(2)), 0, 0, *(int(rng.integers(low, 3)) for _ in range(2))]
    if mode == "reflect":
        pads = [min(p, shape[2 + i % 2] - 1) if i % 4 >= 2 else p for i, p in enumerate(pads)]
    return graph_of(cg.Pad(pads, mode, float(rng.normal())), shape)


def build_reduce_mean(rng, seed):
    rank = int(rng.integers(2, 5))
    axes = [a - rank * int(rng.integers(2)) for a in range(rank) if rng.integers(2)] if seed else []
    return graph_of(cg.ReduceMean(axes, keepdims=seed % 2 == 0), batch_shape(rng, rank))


def build_matmul(rng, seed):
    m, k, n = (int(d) for d in rng.integers(1, 5, size=3))
    graph = cg.Graph("g")
    a = graph.input("a", (None, m, k))
    b = _operand(graph, rng, ((None, k, n), (k, n), (k,), (1, k, n))[seed % 4], "b", constant=seed % 2 == 1)
    graph.output(graph.apply(cg.MatMul(), a, b))
    return graph


def build_lrn(rng, seed):
    layer = cg.LocalResponseNorm(int(rng.choice([1, 3, 5])), float(rng.uniform(1e-4, 1.0)), float(rng.uniform(0.5, 1)),
                                 float(rng.uniform(1.0, 2.0)))
    return graph_of(layer, (None, int(rng.integers(1, 7)), int(rng.integers(1, 4)), int(rng.integers(1, 4))))


BUILDERS = {
    "Conv2d": build_conv,
    "Linear": build_linear,
    "ReLU": elementwise(lambda rng: cg.ReLU()),
    "LeakyReLU": elementwise(lambda rng: cg.LeakyReLU(float(rng.uniform(0.01, 0.5)))),
    "ReLU6": elementwise(lambda rng: cg.ReLU6()),
    "Sigmoid": elementwise(lambda rng: cg.Sigmoid()),
    "Tanh": elementwise(lambda rng: cg.Tanh()),
    "Softmax": build_softmax,
    "BatchNorm2d": build_batchnorm,
    "MaxPool2d": build_maxpool,
    "AvgPool2d": build_avgpool,
    "GlobalAvgPool2d": lambda rng, seed: graph_of(cg.GlobalAvgPool2d(), (None, 3, *map(int, rng.integers(1, 6, 2)))),
    "Flatten": build_flatten,
    "Add": build_add,
    "Concat": build_concat,
    "Identity": elementwise(lambda rng: cg.Identity()),
    "Dropout": elementwise(lambda rng: cg.Dropout(float(rng.uniform(0, 1)))),
    "Constant": build_constant,
    "Mul": build_binary(cg.Mul),
    "Sub": build_binary(cg.Sub),
    "Div": build_binary(cg.Div),
    "Transpose": build_transpose,
    "Reshape": build_reshape,
    "Pad": build_pad,
    "ReduceMean": build_reduce_mean,
    "MatMul": build_matmul,
    "GlobalMaxPool2d": lambda rng, seed: graph_of(cg.GlobalMaxPool2d(), (None, 3, *map(int, rng.integers(1, 6, 2)))),
    "LocalResponseNorm": build_lrn,
    "Hardtanh": elementwise(lambda rng: cg.Hardtanh(float(rng.uniform(-2, 0)), float(rng.uniform(0, 2)))),
}


def example_builder(op: str):
    """The op's own small example (Layer.example), for ops without a random builder above."""
    def build(rng, seed):
        layer, shapes = REGISTRY[op].example()
        return graph_of(layer, *shapes)
    return build


for _op in REGISTRY:
    if not REGISTRY[_op].training_only:          # gradients and losses exist in training graphs only
        BUILDERS.setdefault(_op, example_builder(_op))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", sorted(BUILDERS))
def test_op_matches_reference(op, seed, opset):
    rng = np.random.default_rng([seed, sum(map(ord, op))])
    graph = BUILDERS[op](rng, seed)
    assert op in {n.op for n in graph.layers()}
    check_model_runs(graph, opset, rng, scale=8.0 if op == "ReLU6" else 2.0)


# --- random small networks -------------------------------------------------------------------------------------
def random_network(rng, name: str):
    """Conv/BN/activation/pool blocks with a residual Add and a Concat, then Flatten, Linear, Softmax."""
    graph = cg.Graph(name)
    c, size = int(rng.integers(1, 4)), int(rng.integers(8, 13))
    x = graph.input("image", (None, c, size, size))
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.integers(2, 6))
        x = graph.apply(cg.Conv2d(c, out, 3, padding=1, bias=bool(rng.integers(2))), x)
        c = out
        if rng.integers(2):
            bn = cg.BatchNorm2d(c)
            bn.running_mean, bn.running_var = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
            x = graph.apply(bn, x)
        x = graph.apply(choice(rng, [cg.ReLU(), cg.ReLU6(), cg.LeakyReLU(0.1), cg.Tanh(), cg.Sigmoid()]), x)
        branch = rng.integers(3)
        if branch == 1:
            x = graph.apply(cg.Add(), x, graph.apply(cg.Conv2d(c, c, 1), x))
        elif branch == 2:
            x = graph.apply(cg.Concat(1), x, graph.apply(cg.Identity(), x))
            c *= 2
        if rng.integers(2) and graph.type_of(x).shape[2] >= 4:
            x = graph.apply(choice(rng, [cg.MaxPool2d(2, ceil_mode=True), cg.AvgPool2d(3, 2, 1)]), x)
    if rng.integers(2):
        x = graph.apply(cg.GlobalAvgPool2d(), x)
    x = graph.apply(cg.Flatten(), x)
    x = graph.apply(cg.Dropout(0.2), x)
    features = graph.type_of(x).shape[1]
    x = graph.apply(cg.Linear(features, int(rng.integers(2, 7))), x)
    graph.output(graph.apply(cg.Softmax(), x))
    return graph


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("seed", range(4))
def test_random_network_matches_reference(seed, opset):
    rng = np.random.default_rng(100 + seed)
    check_model_runs(random_network(rng, f"net{seed}"), opset, rng)


# --- pooling: ceil_mode where ONNX and PyTorch disagree --------------------------------------------------------
# (H, W, kernel, stride, padding): form expected for (max, avg with count_include_pad)
POOL_CASES = {
    (5, 5, 3, 3, 1): "floor",       # PyTorch drops the ceil window starting in the right padding; ONNX keeps it
    (5, 5, 2, 2, 1): "floor",
    (6, 7, 3, 3, 0): "ceil",        # W: a window that overhangs the input (no padding)
    (6, 6, 3, 2, 1): "ceil",        # a window that overhangs the padding: explicit Pad for the average
    (6, 7, 2, 3, 0): "mixed",       # H needs floor (a drop), W needs ceil: no single ceil_mode fits
    (5, 6, 3, 3, 1): "mixed",
}


@pytest.mark.parametrize("opset", [13, NEWEST])
@pytest.mark.parametrize("kind", ["max", "avg_include_pad", "avg_exclude_pad"])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_ceil_mode_pooling(case, kind, opset):
    h, w, k, s, p = case
    layer = (cg.MaxPool2d(k, s, p, ceil_mode=True) if kind == "max" else
             cg.AvgPool2d(k, s, p, ceil_mode=True, count_include_pad=kind == "avg_include_pad"))
    graph = graph_of(layer, (None, 2, h, w))
    model = check_model_runs(graph, opset, np.random.default_rng(7))
    ops = [n.op_type for n in model.graph.node]
    ceil = [a.i for n in model.graph.node for a in n.attribute if a.name == "ceil_mode"]
    form = POOL_CASES[case]
    if form == "floor":
        assert ceil == [0]
    if form == "mixed":
        assert ops == (["Pad", "MaxPool"] if kind == "max" else ["Conv", "Mul"])
    if form == "ceil":
        assert ceil == [1]
        assert ops == (["Pad", "AveragePool"] if kind == "avg_include_pad" and case[4] else [ops[-1]])
    assert model.graph.node[-1].name == "pool1" and model.graph.node[-1].output == ["pool1"]


def test_average_pool_dilation_needs_opset_19():
    graph = cg.Graph("g")
    x = graph.input("x", (None, 2, 9, 9))
    attrs = dict(cg.AvgPool2d(3, 1, 1).attrs, dilation=(2, 2))
    graph.output(graph.add("AvgPool2d", [x], attrs, name="dilated"))
    with pytest.raises(ExportError, match="dilated"):
        export_onnx(graph, opset=18)
    model = export_onnx(graph, opset=NEWEST)
    node, = model.graph.node
    assert [list(a.ints) for a in node.attribute if a.name == "dilations"] == [[2, 2]]
    array = np.random.default_rng(0).random((2, 2, 9, 9), dtype=np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": array})[0]
    assert_close(ort_backend.make_session(model).run(None, {"x": array})[0], expected)


# --- the model's interface -------------------------------------------------------------------------------------
def small_graph():
    graph = cg.Graph("small")
    x = graph.input("images", (None, 3, 8, 8))
    y = graph.apply(cg.Conv2d(3, 4, 3, padding=1), x, name="stem")
    y = graph.apply(cg.BatchNorm2d(4), y, name="stem_bn")
    y = graph.apply(cg.ReLU6(), y, name="act")
    y = graph.apply(cg.Flatten(2, 3), y, name="merge_hw")             # a Reshape, batch kept symbolic
    y = graph.apply(cg.Linear(64, 5), y, name="head")                  # rank 3: MatMul + Add
    z = graph.apply(cg.Flatten(0, -1), y, name="all")                  # merges the batch too
    graph.output(y, z)
    return graph


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_batch_dimension_is_symbolic():
    graph = small_graph()
    model = export_onnx(graph)
    assert dims(model.graph.input[0]) == ["N", 3, 8, 8]
    assert [dims(o) for o in model.graph.output] == [["N", 4, 5], [graph.type_of("all").shape[0]]]
    for init in model.graph.initializer:                               # no Reshape shape holds a batch size
        if init.data_type == onnx.TensorProto.INT64:
            values = onnx.numpy_helper.to_array(init).tolist()
            assert values in ([0, 0, 64], [-1]), (init.name, values)     # 0 copies the batch
    session = ort_backend.make_session(model)
    for batch in (1, 3):
        x = np.random.default_rng(batch).random((batch, 3, 8, 8), dtype=np.float32)
        head, flat = session.run(None, {"images": x})
        assert head.shape == (batch, 4, 5) and flat.shape == (batch * 20,)
        expected = cg.run(graph, x)
        assert_close(head, expected[0])
        assert_close(flat, expected[1])


def test_names_are_kept():
    graph = small_graph()
    model = export_onnx(graph)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["head", "all"]
    by_name = {n.name: n for n in model.graph.node}
    for node in graph.layers():
        assert by_name[node.name].output == [node.name]
    assert by_name["stem"].input == ["images", "stem.weight", "stem.bias"]
    assert by_name["stem_bn"].input[1:] == ["stem_bn.weight", "stem_bn.bias", "stem_bn.running_mean",
                                            "stem_bn.running_var"]
    assert model.graph.name == "small"
    assert model.producer_name == "cnngraph" and model.producer_version == cg.__version__
    assert {v.name for v in model.graph.value_info} == {"stem", "stem_bn", "act", "merge_hw"}


def test_initializer_names_are_unique():
    graph = cg.Graph("clash")
    x = graph.input("x", (None, 2, 5, 5))
    y = graph.apply(cg.Conv2d(2, 2, 3), x, name="conv")
    y = graph.apply(cg.Identity(), y, name="conv.weight")              # a value named like conv's initializer
    y = graph.apply(cg.Conv2d(2, 2, 1), y, name="conv.bias.x")
    graph.output(graph.apply(cg.ReLU6(), y, name="conv.weight_1"))
    model = check_model_runs(graph, 18, np.random.default_rng(0))
    initializers = [i.name for i in model.graph.initializer]
    values = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    assert len(set(initializers)) == len(initializers)
    assert not set(initializers) & values
    conv, = [n for n in model.graph.node if n.name == "conv"]
    assert conv.input[1] != "conv.weight" and conv.input[1].startswith("conv.weight")


def test_multi_node_expansions_have_unique_names():
    graph = cg.Graph("g")
    x = graph.input("x", (None, None, 3, None))
    graph.output(graph.apply(cg.Flatten(1, 2), x, name="f"),                # dynamic shape: Shape/Slice/...
                 graph.apply(cg.ReLU(), graph.apply(cg.Identity(), x, name="f/Shape")))
    model = check_model_runs(graph, 13, np.random.default_rng(0))
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names)
    outputs = [o for n in model.graph.node for o in n.output]
    assert len(set(outputs)) == len(outputs)


@pytest.mark.parametrize("opset", [0, 12, NEWEST + 1, "18", 18.0, True, None])
def test_opset_out_of_range_is_refused(opset):
    with pytest.raises(CnnGraphError, match="opset"):
        export_onnx(small_graph(), opset=opset)
    with pytest.raises(CnnGraphError, match="opset"):
        cg.export_onnx(small_graph(), opset=opset)


# --- writing files ---------------------------------------------------------------------------------------------
def test_export_writes_a_loadable_file(tmp_path):
    path = tmp_path / "model.onnx"
    model = cg.export_onnx(small_graph(), path)
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == model.SerializeToString()
    assert os.listdir(tmp_path) == ["model.onnx"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the old model")

    def fail(*args, **kwargs):
        raise OSError(f"simulated failure in os.{failing}")
    monkeypatch.setattr(atomic.os, failing, fail)
    with pytest.raises(OSError, match="simulated"):
        export_onnx(small_graph(), path)
    monkeypatch.undo()
    assert path.read_bytes() == b"the old model"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_failed_serialization_writes_nothing(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the old model")

    class Unserializable:
        def SerializeToString(self):
            raise ValueError("message too large")
    with pytest.raises(ExportError, match="serialize"):
        onnx_export.write_atomically(Unserializable(), path)
    assert path.read_bytes() == b"the old model"
    assert os.listdir(tmp_path) == ["model.onnx"]


# --- the onnxruntime backend -----------------------------------------------------------------------------------
def test_onnxruntime_backend_convention_and_cache():
    graph = small_graph()
    x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    head, flat = cg.run(graph, x, backend="onnxruntime")
    expected = cg.run(graph, x)
    assert_close(head, expected[0])
    assert_close(flat, expected[1])
    session = ort_backend.session(graph)
    assert ort_backend.session(graph) is session                         # cached while unchanged
    single = graph_of(cg.ReLU(), (None, 3))
    out = cg.run(single, [[-1, 0, 2]], backend="onnxruntime")            # lists and ints are coerced
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 2]])
    single.output(single.apply(cg.Sigmoid(), "x0"))                      # a change bumps Graph.version
    assert isinstance(cg.run(single, [[-1, 0, 2]], backend="onnxruntime"), tuple)


def test_onnxruntime_backend_checks_inputs_like_numpy():
    graph = small_graph()
    for bad in [(np.zeros((2, 3, 8, 7), np.float32),), (), (np.zeros((2, 3, 8, 8)), np.zeros(1))]:
        with pytest.raises(InputError) as numpy_error:
            cg.run(graph, *bad)
        with pytest.raises(InputError) as ort_error:
            cg.run(graph, *bad, backend="onnxruntime")
        assert str(ort_error.value) == str(numpy_error.value)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="onnxruntime"):
        cg.run(small_graph(), np.zeros((1, 3, 8, 8), np.float32), backend="tvm")
