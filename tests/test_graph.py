"""The IR contract: building errors that name the layer and the shapes, editing (users, use_count,
replace_all_uses_with, erase, set_inputs), lint, copy, stable names, parameters and their PyTorch default
initialisation, and PyTorch's output-size formulas (ceil_mode included)."""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

import cnngraph as cg
from cnngraph.init import manual_seed


def shape_re(*dims) -> str:
    """A regex for a shape as messages print it, tolerant of spacing: shape_re('N', 8, 14, 14)."""
    return r"\(" + r",\s*".join(re.escape(str(d)) for d in dims) + r",?\)"


def assert_mentions(message: str, *parts) -> None:
    for part in parts:
        if part.startswith(r"\("):
            assert re.search(part, message), f"{part!r} not in {message!r}"
        else:
            assert part in message, f"{part!r} not in {message!r}"


def chain(*layers, shape=(None, 3, 28, 28)):
    g = cg.Graph("chain")
    value = g.input("x", shape)
    for layer in layers:
        value = g.apply(layer, value)
    g.output(value)
    return g


# =============================================================================================================
# Building errors name the layer and the shapes
# =============================================================================================================
def test_channel_mismatch_names_layer_source_and_shape():
    g = cg.Graph("net")
    x = g.input("x", (None, 3, 28, 28))
    y = g.apply(cg.MaxPool2d(2), g.apply(cg.Conv2d(3, 8, 3, padding=1), x))
    with pytest.raises(cg.ShapeError) as info:
        g.apply(cg.Conv2d(16, 32, 3), y)
    assert_mentions(str(info.value), "conv2 (Conv2d)", "expects 16 input channels", "got 8", "pool1",
                    shape_re("N", 8, 14, 14))
    assert "conv2" not in g                            # a refused layer leaves nothing behind...
    assert g.apply(cg.Conv2d(8, 4, 1), y).name == "conv2"   # ...not even a used-up automatic name


@pytest.mark.parametrize("layer, shape, parts", [
    (lambda: cg.Conv2d(3, 4, 5), (None, 3, 4, 4), ["conv1 (Conv2d)", "too small", "(5, 5)"]),
    (lambda: cg.Conv2d(3, 4, 3, dilation=3), (None, 3, 6, 9), ["conv1 (Conv2d)", "too small", "dilation"]),
    (lambda: cg.MaxPool2d(4), (None, 3, 3, 8), ["pool1 (MaxPool2d)", "too small"]),
    (lambda: cg.AvgPool2d((1, 5)), (None, 3, 8, 4), ["pool1 (AvgPool2d)", "too small"]),
])
def test_spatial_size_too_small_for_the_kernel(layer, shape, parts):
    g = cg.Graph("small")
    x = g.input("x", shape)
    with pytest.raises(cg.ShapeError) as info:
        g.apply(layer(), x)
    assert_mentions(str(info.value), *parts, shape_re("N", *shape[1:]))


def test_linear_in_features_vs_flattened_size():
    g = cg.Graph("mlp")
    x = g.input("x", (None, 8, 4, 4))
    flat = g.apply(cg.Flatten(), x)
    with pytest.raises(cg.ShapeError) as info:
        g.apply(cg.Linear(100, 10), flat)
    assert_mentions(str(info.value), "fc1 (Linear)", "100", "128", "flatten1", shape_re("N", 128))
    with pytest.raises(cg.ShapeError) as info:            # forgot the Flatten: the message hints at it
        g.apply(cg.Linear(128, 10), x)
    assert_mentions(str(info.value), "fc1 (Linear)", "128", shape_re("N", 8, 4, 4), "Flatten")


def test_add_of_different_shapes():
    g = cg.Graph("add")
    a = g.input("a", (None, 4, 8, 8))
    b = g.input("b", (None, 4, 8, 7))
    with pytest.raises(cg.ShapeError) as info:
        g.apply(cg.Add(), a, b)
    assert_mentions(str(info.value), "add1 (Add)", shape_re("N", 4, 8, 8), shape_re("N", 4, 8, 7))
    with pytest.raises(cg.ShapeError):
        g.apply(cg.Add(), a)                               # a single input


def test_concat_mismatch():
    g = cg.Graph("cat")
    a = g.input("a", (None, 4, 8, 8))
    b = g.input("b", (None, 2, 8, 6))
    with pytest.raises(cg.ShapeError) as info:
        g.apply(cg.Concat(1), a, b)
    assert_mentions(str(info.value), "concat1 (Concat)", shape_re("N", 4, 8, 8), shape_re("N", 2, 8, 6))
    c = g.input("c", (None, 4, 8))
    with pytest.raises(cg.ShapeError):
        g.apply(cg.Concat(1), a, c)                        # different ranks
    with pytest.raises(cg.ShapeError):
        g.apply(cg.Concat(4), a, a)                        # axis out of range
    assert g.type_of(g.apply(cg.Concat(1), a, g.input("d", (None, 3, 8, 8)))).shape == ("N", 7, 8, 8)


def test_unknown_value_name():
    g = cg.Graph("g")
    g.input("x", (None, 3, 4, 4))
    with pytest.raises(cg.GraphError) as info:
        g.apply(cg.ReLU(), "nope")
    assert_mentions(str(info.value), "nope")
    with pytest.raises(cg.GraphError):
        g.output("nope")
    with pytest.raises(cg.GraphError) as info:
        g.add("NoSuchOp", ["x"])
    assert_mentions(str(info.value), "NoSuchOp")


def test_value_from_another_graph():
    g, h = cg.Graph("g"), cg.Graph("h")
    g.input("x", (None, 3, 4, 4))
    y = h.input("x", (None, 3, 4, 4))                      # same name, other graph
    with pytest.raises(cg.GraphError) as info:
        g.apply(cg.ReLU(), y)
    assert_mentions(str(info.value), "'h'", "'g'")
    with pytest.raises(cg.GraphError):
        g.output(y)


def test_duplicate_node_name():
    g = cg.Graph("g")
    x = g.input("x", (None, 3, 4, 4))
    g.apply(cg.ReLU(), x, name="act")
    with pytest.raises(cg.GraphError) as info:
        g.apply(cg.Sigmoid(), x, name="act")
    assert_mentions(str(info.value), "act")
    with pytest.raises(cg.GraphError):
        g.input("x", (None, 3, 4, 4))
    with pytest.raises(cg.GraphError):
        g.apply(cg.ReLU(), x, name="")


def test_add_with_incomplete_attributes_names_the_node():
    """g.add takes a raw attribute dict (as an importer builds it): a missing attribute is a building error that
    names the node and the attribute, not a bare KeyError, and it does not use up the automatic name."""
    g = cg.Graph("g")
    x = g.input("x", (None, 3, 8, 8))
    with pytest.raises(cg.CnnGraphError) as info:
        g.add("Conv2d", [x], {}, {})
    assert_mentions(str(info.value), "Conv2d", "kernel_size")
    assert len(g) == 1 and g.apply(cg.Conv2d(3, 3, 1), x).name == "conv1"


def test_arity():
    g = cg.Graph("g")
    x = g.input("x", (None, 3))
    with pytest.raises(cg.ShapeError) as info:
        g.add("ReLU", [x, x])
    assert_mentions(str(info.value), "relu1 (ReLU)", "1", "2")
    with pytest.raises(cg.ShapeError):
        g.add("Add", [x])


def test_failed_output_call_adds_nothing():
    g = cg.Graph("g")
    y = g.apply(cg.ReLU(), g.input("x", (None, 3)))
    with pytest.raises(cg.GraphError):
        g.output(y, "nope")
    assert g.outputs == []
    g.output(y)
    assert g.outputs == [y.name]


def test_graph_output_twice_is_refused():
    g = cg.Graph("g")
    x = g.input("x", (None, 3))
    y = g.apply(cg.ReLU(), x)
    g.output(y)
    with pytest.raises(cg.GraphError):
        g.output(y)


# =============================================================================================================
# Editing
# =============================================================================================================
def diamond():
    """x -> conv1 -> relu1 -> add1(relu1, conv1) -> output; conv1 also feeds sigmoid1 (a second output)."""
    g = cg.Graph("diamond")
    x = g.input("x", (None, 2, 5, 5))
    c = g.apply(cg.Conv2d(2, 2, 3, padding=1), x)
    r = g.apply(cg.ReLU(), c)
    a = g.apply(cg.Add(), r, c)
    s = g.apply(cg.Sigmoid(), c)
    g.output(a, s)
    return g


def test_users_and_use_count():
    g = diamond()
    assert g.users("conv1") == ["relu1", "add1", "sigmoid1"]
    assert g.users("add1") == [] and g.use_count("add1") == 1          # a graph output counts
    assert g.use_count("conv1") == 3 and g.use_count("x") == 1
    twice = g.apply(cg.Add(), "relu1", "relu1")                         # x + x reads relu1 twice
    assert g.users("relu1") == ["add1", twice.name]
    assert g.use_count("relu1") == 3
    g.output(twice, "relu1")
    assert g.use_count("relu1") == 4


def test_set_inputs_rewires_and_refuses_a_cycle():
    g = diamond()
    g.set_inputs("sigmoid1", ["relu1"])
    assert g.node("sigmoid1").inputs == ("relu1",) and g.users("relu1") == ["add1", "sigmoid1"]
    g.lint()
    with pytest.raises(cg.GraphError) as info:
        g.set_inputs("relu1", ["add1"])                                 # add1 reads relu1
    assert_mentions(str(info.value), "relu1", "add1", "cycle")
    with pytest.raises(cg.GraphError):
        g.set_inputs("relu1", ["relu1"])                                # reading itself
    assert g.node("relu1").inputs == ("conv1",)
    g.lint()


def test_refused_set_inputs_leaves_the_graph_unchanged():
    """A set_inputs refused by shape inference must not leave the node half rewired."""
    g = cg.Graph("g")
    x = g.input("x", (None, 3, 8, 8))
    y = g.input("y", (None, 4, 8, 8))
    conv = g.apply(cg.Conv2d(3, 5, 3), x)
    g.output(conv)
    with pytest.raises(cg.ShapeError):
        g.set_inputs(conv, [y])
    assert g.node(conv).inputs == ("x",)
    assert g.users("x") == ["conv1"] and g.users("y") == []
    g.lint()


def test_set_inputs_refused_downstream_restores_every_type_it_changed():
    """conv and relu take the new shape, then add refuses it: all three nodes must be as before."""
    g = cg.Graph("g")
    x, y = g.input("x", (None, 3, 8, 8)), g.input("y", (None, 3, 6, 6))
    z = g.input("z", (None, 5, 6, 6))
    conv = g.apply(cg.Conv2d(3, 5, 3), x)
    g.output(g.apply(cg.Add(), g.apply(cg.ReLU(), conv), z))
    before, version = snapshot(g), g.version
    with pytest.raises(cg.ShapeError, match="add1"):
        g.set_inputs(conv, [y])
    assert snapshot(g) == before and g.users("y") == []
    assert g.version >= version
    g.lint()


def test_set_inputs_reinfers_the_types_downstream():
    """Changing a node's input may change its output type; the readers' stored types must follow (stale
    shapes after a rewrite: onnx/onnx #4367), so lint still passes."""
    g = cg.Graph("g")
    x = g.input("x", (None, 3, 8, 8))
    y = g.input("y", (None, 3, 6, 6))
    conv = g.apply(cg.Conv2d(3, 5, 3), x)
    relu = g.apply(cg.ReLU(), conv)
    g.output(relu)
    g.set_inputs(conv, [y])
    assert g.type_of(conv).shape == ("N", 5, 4, 4)
    assert g.type_of(relu).shape == ("N", 5, 4, 4)
    g.lint()


def test_replace_all_uses_with_and_erase():
    g = diamond()
    t = g.apply(cg.Tanh(), "x")
    t = g.apply(cg.Conv2d(2, 2, 1), t)
    g.replace_all_uses_with("conv1", t)
    assert g.users("conv1") == [] and g.use_count("conv1") == 0
    assert g.node("add1").inputs == ("relu1", t.name) and g.node("relu1").inputs == (t.name,)
    assert g.node("sigmoid1").inputs == (t.name,)
    g.erase("conv1")
    assert "conv1" not in g
    g.lint()
    with pytest.raises(cg.GraphError) as info:                          # still read
        g.erase("relu1")
    assert_mentions(str(info.value), "relu1", "add1")
    with pytest.raises(cg.GraphError) as info:                          # a graph output
        g.erase("sigmoid1")
    assert_mentions(str(info.value), "sigmoid1", "output")


def test_replace_all_uses_with_a_reader_of_old_is_all_or_nothing():
    """Inserting a node after `old` and redirecting old's other readers (and the graph outputs) to it is the
    common pass edit (torch.fx: replace_all_uses_with(new, delete_user_cb=...)). Either it works, the new node
    still reading `old`, or it is refused leaving the graph as it was: never half done."""
    for old in ("relu1", "sigmoid1"):                 # read by add1 / a graph output
        g = diamond()
        readers = {u: g.node(u).inputs for u in g.users(old)}
        outputs = g.outputs
        new = g.apply(cg.Tanh(), old)
        try:
            g.replace_all_uses_with(old, new)
        except cg.GraphError:
            assert {u: g.node(u).inputs for u in readers} == readers and g.outputs == outputs
        else:
            assert g.users(old) == [new.name] and old not in g.outputs
            assert g.outputs == [new.name if o == old else o for o in outputs]
        assert g.node(new).inputs == (old,)
        g.lint()


def test_erase_an_unused_input():
    g = cg.Graph("g")
    x = g.input("x", (None, 3))
    g.input("unused", (None, 3))
    g.output(g.apply(cg.ReLU(), x))
    g.erase("unused")
    assert g.inputs == ["x"]
    g.lint()


def test_topological_order_after_rewiring():
    g = cg.Graph("g")
    x = g.input("x", (None, 2, 4, 4))
    first = g.apply(cg.ReLU(), x)
    second = g.apply(cg.Sigmoid(), x)
    g.set_inputs(first, [second])
    g.output(first)
    order = g.topo_order()
    assert order.index("sigmoid1") < order.index("relu1")
    assert [n.name for n in g.nodes] == order


def test_a_node_added_to_feed_an_earlier_one_moves_just_before_it():
    """What a pass does (add a node, make an existing one read it): the new node takes its place right before
    its reader and every other node keeps its place, however often it happens in the same spot (the ranks
    between two nodes run out after ~50 halvings; the graph is then renumbered)."""
    g = cg.Graph("g")
    x = g.input("x", (None, 4))
    reader = g.apply(cg.ReLU(), g.apply(cg.Tanh(), x))
    g.output(g.apply(cg.Sigmoid(), reader), g.apply(cg.Abs(), x))
    expected = g.topo_order()
    for _ in range(80):
        source = g.node(reader.name).inputs[0]
        fed = g.apply(cg.Identity(), source)
        g.set_inputs(reader, [fed])
        expected.insert(expected.index(reader.name), fed.name)
        assert g.topo_order() == expected
    g.lint()
    assert [n.name for n in g.copy().nodes] == expected
    with pytest.raises(cg.GraphError, match="cycle"):
        g.set_inputs(g.node(reader.name).inputs[0], [reader])


def test_reading_a_later_node_that_reads_later_ones_renumbers_topologically():
    g = cg.Graph("g")
    x = g.input("x", (None, 4))
    first = g.apply(cg.ReLU(), x)
    between = g.apply(cg.Tanh(), x)
    late = g.apply(cg.Sigmoid(), g.apply(cg.Abs(), x))
    g.output(first, between)
    g.set_inputs(first, [late])
    order = g.topo_order()
    assert order.index("abs1") < order.index("sigmoid1") < order.index("relu1")
    g.lint()


# =============================================================================================================
# lint
# =============================================================================================================
def test_lint_passes_on_good_graphs():
    diamond().lint()
    chain(cg.Conv2d(3, 8, 3), cg.BatchNorm2d(8), cg.ReLU(), cg.MaxPool2d(2, ceil_mode=True), cg.Flatten(),
          cg.Linear(8 * 13 * 13, 10), cg.Softmax()).lint()
    for model in ("lenet5",):
        cg.models.MODELS[model]().lint()


def corrupt(g, name, **fields):
    """What an editor reaching around the Graph methods would leave behind. Nodes are frozen, so only a write
    into the graph's private node table can do it: lint must still catch it."""
    g._nodes[name] = dataclasses.replace(g.node(name), **fields)


def test_lint_catches_an_altered_type():
    g = diamond()
    corrupt(g, "relu1", type=cg.graph.TensorType(("N", 2, 5, 4)))
    with pytest.raises(cg.GraphError) as info:
        g.lint()
    assert_mentions(str(info.value), "relu1", shape_re("N", 2, 5, 4), shape_re("N", 2, 5, 5))


def test_lint_catches_a_wrong_parameter_put_directly_in_params():
    g = diamond()
    corrupt(g, "conv1", params=dict(g.node("conv1").params, weight=np.zeros((2, 2, 2, 2), np.float32)))
    with pytest.raises(cg.GraphError) as info:
        g.lint()
    assert_mentions(str(info.value), "conv1", "weight", shape_re(2, 2, 3, 3), shape_re(2, 2, 2, 2))


def test_lint_catches_missing_or_extra_parameters_and_no_outputs():
    g = diamond()
    corrupt(g, "conv1", params={"weight": g.node("conv1").params["weight"]})
    with pytest.raises(cg.GraphError, match="bias"):
        g.lint()
    g = diamond()
    corrupt(g, "relu1", params={"weight": np.zeros(1, np.float32)})
    with pytest.raises(cg.GraphError, match="relu1"):
        g.lint()
    g = cg.Graph("empty")
    g.apply(cg.ReLU(), g.input("x", (None, 3)))
    with pytest.raises(cg.GraphError, match="no outputs"):
        g.lint()


def test_lint_catches_an_input_rewired_behind_the_graphs_back():
    g = diamond()
    corrupt(g, "sigmoid1", inputs=("relu1",))               # edges no longer match the inputs
    with pytest.raises(cg.GraphError, match="sigmoid1"):
        g.lint()
    g = diamond()
    corrupt(g, "sigmoid1", inputs=("ghost",))
    with pytest.raises(cg.GraphError, match="ghost"):
        g.lint()


def test_lint_lists_every_problem():
    g = diamond()
    corrupt(g, "relu1", type=cg.graph.TensorType(("N", 1)))
    corrupt(g, "sigmoid1", type=cg.graph.TensorType(("N", 2)))
    with pytest.raises(cg.GraphError) as info:
        g.lint()
    assert_mentions(str(info.value), "relu1", "sigmoid1")


# =============================================================================================================
# copy and names
# =============================================================================================================
def snapshot(g):
    return (g.topo_order(), g.outputs, g.inputs,
            {n.name: (n.inputs, n.type, dict(n.attrs), {k: id(v) for k, v in n.params.items()}) for n in g.nodes})


def test_copy_is_independent_and_shares_arrays():
    g = diamond()
    h = g.copy()
    assert h.nodes is not g.nodes and [n.name for n in h.nodes] == [n.name for n in g.nodes]
    assert h.node("conv1").params["weight"] is g.node("conv1").params["weight"]      # arrays shared
    before = snapshot(g)
    t = h.apply(cg.Tanh(), "x")
    h.replace_all_uses_with("conv1", h.apply(cg.Conv2d(2, 2, 1), t))
    h.erase("conv1")
    h.set_inputs("sigmoid1", ["relu1"])
    h.set_params("conv2", weight=np.zeros((2, 2, 1, 1)))
    h.output("relu1")
    h.input("another", (None, 1))
    assert snapshot(g) == before
    assert "conv1" in g and "conv1" not in h and "another" not in g
    g.lint()
    # names continue in the copy: the next automatic conv is conv3 (conv2 was taken above)
    assert h.apply(cg.Conv2d(2, 2, 1), "relu1").name == "conv3"
    assert g.apply(cg.Conv2d(2, 2, 1), "relu1").name == "conv2"


def test_stable_automatic_names():
    g = cg.Graph("names")
    x = g.input("x", (None, 3, 16, 16))
    layers = [cg.Conv2d(3, 4, 3, padding=1), cg.BatchNorm2d(4), cg.ReLU(), cg.Conv2d(4, 4, 1), cg.ReLU(),
              cg.MaxPool2d(2), cg.AvgPool2d(2), cg.Dropout(0.1), cg.Identity(), cg.Flatten(), cg.Linear(64, 5),
              cg.Sigmoid(), cg.Tanh(), cg.Softmax()]
    value, names = x, []
    for layer in layers:
        value = g.apply(layer, value)
        names.append(value.name)
    assert names == ["conv1", "bn1", "relu1", "conv2", "relu2", "pool1", "pool2", "dropout1", "identity1",
                     "flatten1", "fc1", "sigmoid1", "tanh1", "softmax1"]
    assert g.apply(cg.GlobalAvgPool2d(), "conv1").name == "gap1"
    assert g.apply(cg.Add(), "conv1", "conv2").name == "add1"
    assert g.apply(cg.Concat(), "conv1", "conv2").name == "concat1"
    assert g.apply(cg.LeakyReLU(), "conv1").name == "lrelu1"
    # a user's name is kept, and an automatic name skips it
    assert g.apply(cg.Conv2d(4, 4, 1), "conv2", name="conv3").name == "conv3"
    assert g.apply(cg.Conv2d(4, 4, 1), "conv2").name == "conv4"
    # the same construction gives the same names
    assert [n.name for n in chain(cg.Conv2d(3, 3, 1), cg.ReLU()).nodes] == ["x", "conv1", "relu1"]


def test_sequential_names_and_inlining():
    seq = cg.Sequential(cg.Conv2d(3, 4, 3), cg.ReLU(), cg.Sequential(cg.Conv2d(4, 4, 1), cg.ReLU()))
    g = seq.to_graph((None, 3, 8, 8))
    assert [n.name for n in g.layers()] == ["conv1", "relu1", "conv2", "relu2"]
    assert g.inputs == ["input"] and g.outputs == ["relu2"] and g.type_of("relu2").shape == ("N", 4, 6, 6)


# =============================================================================================================
# Parameters and initialisation
# =============================================================================================================
def test_wrong_parameter_shape_names_layer_and_both_shapes():
    conv = cg.Conv2d(3, 8, 3)
    with pytest.raises(cg.ParameterError) as info:
        conv.weight = np.zeros((8, 3, 2, 2))
    assert_mentions(str(info.value), "Conv2d", "weight", shape_re(8, 3, 3, 3), shape_re(8, 3, 2, 2))
    with pytest.raises(cg.ParameterError) as info:
        conv.bias = np.zeros(7)
    assert_mentions(str(info.value), "Conv2d", "bias", shape_re(8), shape_re(7))
    fc = cg.Linear(4, 2)
    with pytest.raises(cg.ParameterError) as info:
        fc.weight = np.zeros((4, 2))                       # PyTorch layout is (out, in)
    assert_mentions(str(info.value), "Linear", shape_re(2, 4), shape_re(4, 2))
    with pytest.raises(cg.ParameterError):
        fc.weight = np.full((2, 4), "a")
    bn = cg.BatchNorm2d(4)
    with pytest.raises(cg.ParameterError):
        bn.running_var = np.ones(5)
    # in a graph, the node name is given too
    g = cg.Graph("g")
    x = g.input("x", (None, 3, 8, 8))
    with pytest.raises(cg.ParameterError) as info:
        g.add("Conv2d", [x], conv.attrs, {"weight": np.zeros((8, 3, 1, 1)), "bias": np.zeros(8)}, name="stem")
    assert_mentions(str(info.value), "stem", "Conv2d", shape_re(8, 3, 3, 3), shape_re(8, 3, 1, 1))
    assert "stem" not in g


def test_parameters_are_float32_and_converted():
    conv = cg.Conv2d(1, 1, 1)
    conv.weight = np.ones((1, 1, 1, 1), dtype=np.float64)
    conv.bias = [2]
    assert conv.weight.dtype == np.float32 and conv.bias.dtype == np.float32 and conv.bias[0] == 2
    assert conv.params["weight"] is conv.weight


def test_setting_the_bias_of_a_bias_free_layer_is_refused():
    """PyTorch refuses a tensor assigned to a bias registered as None; here it must not vanish silently into a
    plain attribute the graph never uses."""
    conv = cg.Conv2d(2, 3, 1, bias=False)
    with pytest.raises((cg.ParameterError, AttributeError)):
        conv.bias = np.zeros(3, np.float32)
    fc = cg.Linear(2, 3, bias=False)
    with pytest.raises((cg.ParameterError, AttributeError)):
        fc.bias = np.zeros(3, np.float32)


def check_uniform(values, bound):
    values = np.asarray(values, dtype=np.float64).ravel()
    assert values.min() >= -bound and values.max() <= bound
    if values.size >= 1000:                           # the spread is the whole interval, not a part of it
        assert values.max() > 0.99 * bound and values.min() < -0.99 * bound
        assert abs(values.std() - bound / math.sqrt(3)) < 0.03 * bound / math.sqrt(3)
        assert abs(values.mean()) < 0.05 * bound


@pytest.mark.parametrize("make, fan_in", [
    (lambda: cg.Conv2d(64, 128, 3), 64 * 9),
    (lambda: cg.Conv2d(16, 32, (3, 5), groups=4), 4 * 15),
    (lambda: cg.Conv2d(32, 64, 3, groups=32), 9),                 # depthwise
    (lambda: cg.Conv2d(3, 8, 7, stride=2, padding=3), 3 * 49),
    (lambda: cg.Linear(500, 300), 500),
    (lambda: cg.Linear(1, 2000), 1),
])
def test_default_initialisation_matches_pytorch(make, fan_in):
    """kaiming_uniform(a=√5) for weights and U(±1/√fan_in) for biases: both bounded by 1/√fan_in."""
    manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    assert layer.weight.dtype == np.float32
    check_uniform(layer.weight, bound)
    check_uniform(layer.bias, bound)
    assert layer.bias.min() < -0.5 * bound and layer.bias.max() > 0.5 * bound


def test_batch_norm_initialisation():
    bn = cg.BatchNorm2d(5)
    assert np.array_equal(bn.weight, np.ones(5)) and np.array_equal(bn.bias, np.zeros(5))
    assert np.array_equal(bn.running_mean, np.zeros(5)) and np.array_equal(bn.running_var, np.ones(5))
    assert all(a.dtype == np.float32 for a in bn.params.values())
    assert bn.running_mean is not bn.bias and bn.running_var is not bn.weight


def test_initialisation_is_deterministic_under_manual_seed():
    def build():
        return [cg.Conv2d(3, 4, 3).weight, cg.Linear(5, 6).bias, cg.Conv2d(4, 4, 1, groups=2).weight]
    manual_seed(123)
    first = build()
    manual_seed(123)
    second = build()
    manual_seed(124)
    third = build()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], third[0])
    manual_seed(123)
    a = cg.Conv2d(3, 4, 3).weight
    b = cg.Conv2d(3, 4, 3).weight
    assert not np.array_equal(a, b)                  # successive layers draw successive numbers


def test_param_count_counts_learnable_parameters_like_pytorch():
    g = chain(cg.Conv2d(3, 8, 3), cg.BatchNorm2d(8), cg.Conv2d(8, 8, 3, groups=8, bias=False), cg.Flatten(),
              cg.Linear(8 * 24 * 24, 10), shape=(None, 3, 28, 28))
    assert g.param_count() == (8 * 27 + 8) + 16 + 8 * 9 + (8 * 576 * 10 + 10)


# =============================================================================================================
# Output sizes: PyTorch's formulas
# =============================================================================================================
def out_hw(layer, h, w=None):
    g = chain(layer, shape=(None, 2, h, h if w is None else w))
    return g.type_of(g.outputs[0]).shape[2:]


@pytest.mark.parametrize("make, size, expected", [
    (lambda: cg.MaxPool2d(3, 2, ceil_mode=True), 56, 28),
    (lambda: cg.MaxPool2d(3, 2, ceil_mode=False), 56, 27),
    (lambda: cg.MaxPool2d(3, 2, ceil_mode=True), 112, 56),
    (lambda: cg.MaxPool2d(3, 2, ceil_mode=False), 112, 55),
    (lambda: cg.MaxPool2d(3, 2, padding=1), 112, 56),                # ResNet stem
    (lambda: cg.MaxPool2d(2, 2, padding=1, ceil_mode=True), 5, 3),   # pytorch #71549: 3, not 4
    (lambda: cg.AvgPool2d(2, 2, padding=1, ceil_mode=True), 5, 3),
    (lambda: cg.MaxPool2d(2, 2, padding=1, ceil_mode=False), 5, 3),
    (lambda: cg.MaxPool2d(2, ceil_mode=True), 7, 4),
    (lambda: cg.MaxPool2d(2, ceil_mode=False), 7, 3),
    (lambda: cg.AvgPool2d(3, 2, 1, ceil_mode=True), 4, 3),           # last window starts at 3 < 4 + 1
    (lambda: cg.AvgPool2d(3, 3, 1, ceil_mode=True), 6, 3),           # 4th would start at 9 - 1 = 8 >= 6 + 1
    (lambda: cg.AvgPool2d(3, 3, 1, ceil_mode=False), 6, 2),
    (lambda: cg.MaxPool2d(3, 1, 0, dilation=2), 10, 6),
    (lambda: cg.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), 7, 3),
    (lambda: cg.MaxPool2d(2, 3, 0, dilation=2, ceil_mode=True), 8, 3),  # span 5, ceil(5/3) + 1 = 3
    (lambda: cg.MaxPool2d(1, 4, ceil_mode=True), 9, 3),              # ceil(8/4) + 1 = 3
    (lambda: cg.Conv2d(2, 4, 7, stride=2, padding=3), 224, 112),
    (lambda: cg.Conv2d(2, 4, 3, stride=2, padding=1), 7, 4),
    (lambda: cg.Conv2d(2, 4, 3, stride=2), 8, 3),
    (lambda: cg.Conv2d(2, 4, 3, dilation=2), 10, 6),
    (lambda: cg.Conv2d(2, 4, 3, stride=3, padding=2, dilation=2), 10, 4),
    (lambda: cg.Conv2d(2, 4, 5, padding="same"), 9, 9),
    (lambda: cg.Conv2d(2, 4, 4, padding="same", dilation=3), 9, 9),
    (lambda: cg.Conv2d(2, 4, 3, padding="valid"), 9, 7),
    (lambda: cg.GlobalAvgPool2d(), 9, 1),
])
def test_output_sizes(make, size, expected):
    assert out_hw(make(), size) == (expected, expected)


def test_output_sizes_per_axis():
    assert out_hw(cg.Conv2d(2, 4, (3, 5), stride=(2, 1), padding=(1, 2)), 9, 10) == (5, 10)
    assert out_hw(cg.Conv2d(2, 4, (1, 3), dilation=(1, 3)), 4, 7) == (4, 1)
    assert out_hw(cg.MaxPool2d((3, 2), (2, 1), (1, 0), ceil_mode=True), 6, 5) == (4, 4)
    assert out_hw(cg.AvgPool2d((2, 4), padding=(1, 2)), 5, 9) == (3, 3)
    g = cg.Graph("asym")
    x = g.input("x", (None, 1, 6, 6))
    conv = cg.Conv2d(1, 1, 3)
    y = g.add("Conv2d", [x], dict(conv.attrs, pads=(3, 3, 3, 1)), conv.params)   # pads from an ONNX file
    assert g.type_of(y).shape == ("N", 1, 10, 8)


@pytest.mark.parametrize("kernel, dilation, pads", [
    (3, 1, (1, 1, 1, 1)),
    (2, 1, (0, 0, 1, 1)),                  # even kernel: the extra pixel goes right/bottom, as in PyTorch
    (4, 1, (1, 1, 2, 2)),
    (2, 2, (1, 1, 1, 1)),
    ((2, 3), (3, 1), (1, 1, 2, 1)),
    (1, 1, (0, 0, 0, 0)),
])
def test_same_padding(kernel, dilation, pads):
    conv = cg.Conv2d(2, 2, kernel, padding="same", dilation=dilation)
    assert conv.attrs["pads"] == pads
    assert out_hw(conv, 7, 8) == (7, 8)


def test_padding_forms():
    assert cg.Conv2d(1, 1, 3, padding=2).attrs["pads"] == (2, 2, 2, 2)
    assert cg.Conv2d(1, 1, 3, padding=(1, 2)).attrs["pads"] == (1, 2, 1, 2)
    assert cg.Conv2d(1, 1, 3, padding="valid").attrs["pads"] == (0, 0, 0, 0)
    assert cg.MaxPool2d(3, padding=(1, 0)).attrs["pads"] == (1, 0, 1, 0)
    assert cg.MaxPool2d(3).attrs["stride"] == (3, 3) and cg.AvgPool2d((2, 3)).attrs["stride"] == (2, 3)


@pytest.mark.parametrize("make", [
    lambda: cg.Conv2d(6, 4, 3, groups=4),                  # groups does not divide in_channels
    lambda: cg.Conv2d(4, 6, 3, groups=4),                  # nor out_channels
    lambda: cg.Conv2d(4, 4, 3, groups=0),
    lambda: cg.Conv2d(2, 2, 3, stride=2, padding="same"),  # PyTorch refuses 'same' with stride
    lambda: cg.Conv2d(2, 2, 3, stride=(1, 2), padding="same"),
    lambda: cg.Conv2d(2, 2, 3, padding="full"),
    lambda: cg.Conv2d(2, 2, 3, padding=-1),
    lambda: cg.Conv2d(2, 2, 0),
    lambda: cg.Conv2d(2, 2, 3, stride=0),
    lambda: cg.Conv2d(2, 2, 3, dilation=0),
    lambda: cg.Conv2d(2, 2, (3, 3, 3)),
    lambda: cg.MaxPool2d(3, padding=2),                    # padding > half the kernel
    lambda: cg.MaxPool2d(2, padding=(0, 2)),
    lambda: cg.MaxPool2d(3, dilation=2, padding=3),        # > half the effective kernel (5 // 2 = 2)
    lambda: cg.AvgPool2d(2, padding=2),
    lambda: cg.AvgPool2d(3, padding=-1),
    lambda: cg.AvgPool2d(3, stride=0),
    lambda: cg.Linear(0, 3),
    lambda: cg.BatchNorm2d(0),
    lambda: cg.Dropout(1.5),
])
def test_invalid_layer_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_pool_padding_limit_uses_the_effective_kernel():
    """PyTorch allows pad <= ((k - 1)·d + 1) // 2 for max pooling."""
    assert cg.MaxPool2d(3, dilation=2, padding=2).attrs["pads"] == (2, 2, 2, 2)
    assert cg.MaxPool2d(2, padding=1).attrs["pads"] == (1, 1, 1, 1)


def test_symbolic_batch_is_kept():
    g = chain(cg.Conv2d(3, 4, 3), cg.Flatten(), cg.Linear(4 * 26 * 26, 2))
    assert g.type_of(g.outputs[0]).shape == ("N", 2)
    g = chain(cg.Flatten(0), shape=(None, 3, 2, 2))
    assert g.type_of(g.outputs[0]).shape[0] != 12            # the batch stays part of the product
    g = chain(cg.ReLU(), shape=(4, 3, 2, 2))
    assert g.type_of(g.outputs[0]).shape == (4, 3, 2, 2)


def test_other_shape_errors():
    with pytest.raises(cg.ShapeError, match="softmax1"):
        chain(cg.Softmax(4), shape=(None, 3, 2, 2))
    with pytest.raises(cg.ShapeError, match="flatten1"):
        chain(cg.Flatten(2, 1), shape=(None, 3, 2, 2))
    with pytest.raises(cg.ShapeError, match="bn1"):
        chain(cg.BatchNorm2d(4), shape=(None, 3, 2, 2))
    with pytest.raises(cg.ShapeError, match="conv1"):
        chain(cg.Conv2d(3, 4, 1), shape=(None, 3, 8))            # rank 3
    with pytest.raises(cg.ShapeError, match="gap1"):
        chain(cg.GlobalAvgPool2d(), shape=(None, 3))
    with pytest.raises(cg.GraphError):
        cg.Graph("g").input("x", (None, 3), dtype="float64")


@pytest.mark.parametrize("op,bad", [("Conv2d", dict(stride=(0, 1))), ("Conv2d", dict(dilation=(1, 0))),
                                    ("Conv2d", dict(pads=(-1, 0, 0, 0))), ("Conv2d", dict(groups=3)),
                                    ("MaxPool2d", dict(stride=(1, 0))), ("AvgPool2d", dict(kernel_size=(0, 2)))])
def test_add_refuses_impossible_window_attributes(op, bad):
    """Graph.add (what the ONNX importer calls) checks what the constructors check: no ZeroDivisionError later."""
    graph = cg.Graph("g")
    x = graph.input("x", (None, 4, 8, 8))
    layer = cg.Conv2d(4, 4, 3, bias=False) if op == "Conv2d" else getattr(cg, op)(2)
    attrs = {**layer.attrs, **bad}
    params = dict(layer.params)
    if "groups" in bad:
        params["weight"] = np.zeros((4, 1, 3, 3), np.float32)
    with pytest.raises(cg.ShapeError, match=next(iter(bad))):
        graph.add(op, [x], attrs, params)
    assert len(graph.layers()) == 0
