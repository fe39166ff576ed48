"""Gradient rules of the normalisations beyond BatchNorm2d: LayerNorm, GroupNorm, InstanceNorm1d/2d/3d (with and
without their affine map) and BatchNorm1d/3d in both modes, against central finite differences in float64,
hypothesis drawing the attributes the rules read (gradcheck.py says how). Every normalised group holds at least
four values: over two, x̂ = ±1 makes ∂x zero up to eps, a cancellation that float32 cannot check."""
import numpy as np
from conftest import examples
from gradcheck import check_gradients
from hypothesis import given
from hypothesis import strategies as st
from test_gradient_rules import data, one_op, randomize

import cnngraph as cg
from cnngraph.autodiff.backward import build

SEED = st.integers(0, 2**16)


@examples(10)
@given(shape=st.sampled_from([(2, 3, 4), (2, 2, 3, 4), (3, 5)]), trailing=st.integers(1, 2), affine=st.booleans(),
       bias=st.booleans(), eps=st.sampled_from([1e-5, 0.1]), seed=SEED)
def test_layer_norm(shape, trailing, affine, bias, eps, seed):
    rng = np.random.default_rng(seed)
    trailing = min(trailing, len(shape) - 1)
    graph = one_op(cg.LayerNorm(shape[len(shape) - trailing:], eps, affine, bias), (None, *shape[1:]))
    randomize(graph, rng)
    check_gradients(graph, data(rng, shape, scale=2.0), seed=seed)


@examples(10)
@given(groups=st.integers(1, 3), per_group=st.integers(1, 2), spatial=st.sampled_from([(4,), (2, 3), (2, 2)]),
       affine=st.booleans(), eps=st.sampled_from([1e-5, 0.1]), seed=SEED)
def test_group_norm(groups, per_group, spatial, affine, eps, seed):
    rng = np.random.default_rng(seed)
    channels = groups * per_group
    graph = one_op(cg.GroupNorm(groups, channels, eps, affine), (None, channels, *spatial))
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, channels, *spatial), scale=2.0), seed=seed)


@examples(10)
@given(dims=st.integers(1, 3), affine=st.booleans(), eps=st.sampled_from([1e-5, 0.1]), seed=SEED)
def test_instance_norm(dims, affine, eps, seed):
    rng = np.random.default_rng(seed)
    spatial = (4, 2, 2)[:dims]
    layer = getattr(cg, f"InstanceNorm{dims}d")(2, eps, affine=affine)
    graph = one_op(layer, (None, 2, *spatial))
    randomize(graph, rng)
    check_gradients(graph, data(rng, (2, 2, *spatial), scale=2.0), seed=seed)


@examples(10)
@given(case=st.sampled_from([("BatchNorm1d", (4, 3)), ("BatchNorm1d", (2, 3, 3)), ("BatchNorm3d", (2, 2, 2, 3, 2))]),
       train=st.booleans(), seed=SEED)
def test_batch_norm_1d_3d(case, train, seed):
    op, shape = case
    rng = np.random.default_rng(seed)
    graph = one_op(getattr(cg, op)(shape[1]), (None, *shape[1:]))
    randomize(graph, rng)
    check_gradients(graph, data(rng, shape, scale=2.0), train=train, seed=seed)


def test_batch_norm_1d_3d_train_on_batch_statistics():
    for op, shape in (("BatchNorm1d", (None, 3)), ("BatchNorm3d", (None, 3, 2, 2, 2))):
        tg = build(one_op(getattr(cg, op)(3), shape), loss=None, train=True)
        assert [n.op for n in tg.graph.layers() if n.op.startswith("Batch")][:2] == ["BatchStats", "BatchNorm2dTrain"]
