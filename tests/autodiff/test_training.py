"""cg.gradients, cg.optim, cg.Trainer and cg.datasets.digits."""
import numpy as np
import pytest
from gradcheck import check_gradients

import cnngraph as cg
from cnngraph.tolerance import assert_close


def small_net(seed=0, dropout=0.0) -> cg.Graph:
    """Every op family the built-in models use, at digits size: conv (+BN, ReLU), pools, concat, add, linear."""
    cg.manual_seed(seed)
    g = cg.Graph("small")
    x = g.input("x", (None, 1, 8, 8))
    a = g.apply(cg.ReLU(), g.apply(cg.BatchNorm2d(4), g.apply(cg.Conv2d(1, 4, 3, padding=1, bias=False), x)))
    b = g.apply(cg.ReLU6(), g.apply(cg.Conv2d(1, 2, 1), x))
    c = g.apply(cg.Concat(1), a, b)
    d = g.apply(cg.Add(), g.apply(cg.Conv2d(6, 6, 3, padding=1, groups=3), c), c)
    p = g.apply(cg.MaxPool2d(2), d)
    q = g.apply(cg.AvgPool2d(3, 1, 1, count_include_pad=False), p)
    f = g.apply(cg.Flatten(), q)
    if dropout:
        f = g.apply(cg.Dropout(dropout), f)
    g.output(g.apply(cg.Linear(6 * 4 * 4, 10), f, name="fc"))
    return g


def split_digits(count=600):
    x, y = cg.datasets.digits()
    order = np.random.default_rng(0).permutation(len(x))
    return (x[order[:count]], y[order[:count]]), (x[order[count:count + 300]], y[order[count:count + 300]])


# --- datasets ---------------------------------------------------------------------------------------------------
def test_digits():
    x, y = cg.datasets.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and np.all(x * 16 == np.round(x * 16))
    np.testing.assert_array_equal(y[:10], np.arange(10))           # scikit-learn's order
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


# --- whole networks: finite differences in float64, both modes ------------------------------------------------
@pytest.mark.parametrize("train", [False, True])
def test_small_net_gradients_against_finite_differences(train):
    graph = small_net(1, dropout=0.25)
    rng = np.random.default_rng(2)
    for node in graph.layers():
        if node.op == "BatchNorm2d":
            graph.set_params(node.name, running_mean=rng.standard_normal(4).astype(np.float32),
                             running_var=rng.uniform(0.5, 2, 4).astype(np.float32),
                             weight=rng.standard_normal(4).astype(np.float32))
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    masks = {"dropout1": (rng.random((3, 96)) > 0.25).astype(np.float32) / 0.75} if train else None
    check_gradients(graph, [x], loss="cross_entropy", target=[1, 7, 3], train=train, masks=masks)


# --- cg.gradients -------------------------------------------------------------------------------------------------
def test_gradients_api():
    graph = small_net()
    (x, y), _ = split_digits(8)
    result = cg.gradients(graph, x, target=y)
    logits = cg.run(graph, x)
    shifted = logits - logits.max(1, keepdims=True)
    expected = -np.mean(shifted[np.arange(8), y] - np.log(np.exp(shifted).sum(1)))
    assert result.loss == pytest.approx(expected, rel=1e-5)
    learnable = {(n.name, k) for n in graph.layers() for k in n.params if k not in n.layer.buffers}
    assert set(result.params) == learnable
    for (node, key), array in result.params.items():
        assert array.shape == graph.node(node).params[key].shape
    assert len(result.inputs) == 1 and result.inputs[0].shape == x.shape
    trained = cg.gradients(graph, x, target=y, train=True)
    assert trained.loss != result.loss                      # batch statistics instead of the running ones
    with pytest.raises(cg.InputError, match="integer class indices"):
        cg.gradients(graph, x, target=y.astype(np.float32))
    with pytest.raises(cg.InputError, match=r"class indices in \[0, 10\)"):
        cg.gradients(graph, x, target=y + 10)


def test_mse_gradients_of_a_linear_map():
    """Hand-derived: L = mean((xWᵀ + b − t)²) gives ∂W = 2/M · rᵀx, ∂b = 2/M · Σ r, ∂x = 2/M · rW."""
    graph = cg.Graph("lin")
    graph.output(graph.apply(cg.Linear(3, 2), graph.input("x", (None, 3)), name="fc"))
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    w, b = graph.node("fc").params["weight"].astype(np.float64), graph.node("fc").params["bias"].astype(np.float64)
    r = x @ w.T + b - t
    result = cg.gradients(graph, x, target=t, loss="mse")
    assert result.loss == pytest.approx(np.mean(r ** 2), rel=1e-5)
    assert_close(result.params[("fc", "weight")], 2 / r.size * r.T @ x)
    assert_close(result.params[("fc", "bias")], 2 / r.size * r.sum(0))
    assert_close(result.inputs[0], 2 / r.size * r @ w)


# --- optimizers and schedules: PyTorch's update rules, worked by hand on f(p) = p²/2 (gradient p) ---------------
def run_steps(optimizer, steps, p=1.0, gradient=lambda p: p):
    p = np.array([p])
    for _ in range(steps):
        p = optimizer.update("p", p, gradient(p))
        optimizer.end_step()
    return float(p[0])


def test_sgd():
    assert run_steps(cg.optim.SGD(lr=0.1), 2) == pytest.approx(0.81)
    assert run_steps(cg.optim.SGD(lr=0.1, momentum=0.9), 2) == pytest.approx(0.72)           # buffers 1, 1.8
    assert run_steps(cg.optim.SGD(lr=0.1, momentum=0.9, nesterov=True), 2) == pytest.approx(0.5751)
    assert run_steps(cg.optim.SGD(lr=0.1, weight_decay=0.1), 1, gradient=np.zeros_like) == pytest.approx(0.99)


def test_adam_and_adamw():
    assert run_steps(cg.optim.Adam(lr=0.1), 3, gradient=np.ones_like) == pytest.approx(0.7)  # lr per step
    assert run_steps(cg.optim.Adam(lr=0.1, weight_decay=1.0), 1, gradient=np.zeros_like) == pytest.approx(0.9)
    assert run_steps(cg.optim.AdamW(lr=0.1, weight_decay=0.1), 1, gradient=np.zeros_like) == pytest.approx(0.99)


def test_schedules():
    sgd = cg.optim.SGD(lr=0.1)
    step = cg.optim.StepLR(sgd, step_size=2, gamma=0.5)
    seen = []
    for _ in range(4):
        step.step()
        seen.append(sgd.lr)
    assert seen == pytest.approx([0.1, 0.05, 0.05, 0.025])
    adam = cg.optim.Adam(lr=1.0)
    cosine = cg.optim.CosineAnnealingLR(adam, T_max=4)
    cosine.step()
    cosine.step()
    assert adam.lr == pytest.approx(0.5)
    cosine.step()
    cosine.step()
    assert adam.lr == pytest.approx(0.0)


# --- the Trainer ----------------------------------------------------------------------------------------------------
def test_trainer_learns_digits_and_returns_a_new_inference_graph():
    graph = small_net(dropout=0.1)
    before = {(n.name, k): v.copy() for n in graph.layers() for k, v in n.params.items()}
    (x, y), (xv, yv) = split_digits()
    trainer = cg.Trainer(graph, optimizer=cg.optim.SGD(lr=0.05, momentum=0.9))
    history = trainer.fit(x, y, epochs=3, batch_size=32, validation=(xv, yv))
    assert len(history.loss) == len(history["val_accuracy"]) == 3
    assert history.loss[-1] < 0.6 * history.loss[0]
    assert history.val_accuracy[-1] > 0.6
    for (name, key), value in before.items():                   # the given graph is untouched
        np.testing.assert_array_equal(graph.node(name).params[key], value)
    trained = trainer.graph
    trained.lint()
    assert trained is not graph and trained.outputs == graph.outputs
    assert not np.array_equal(trained.node("fc").params["weight"], before[("fc", "weight")])
    # the same predictions as the trained weights set into a fresh copy of the model
    fresh = small_net(dropout=0.1)
    for node in trained.layers():
        fresh.set_params(node.name, **node.params)
    assert_close(cg.run(trained, xv), cg.run(fresh, xv))
    predictions = cg.run(trained, xv).argmax(1)
    assert np.mean(predictions == yv) == pytest.approx(history.val_accuracy[-1])


def test_trainer_updates_batchnorm_running_statistics_like_pytorch():
    """One step on one batch: running = 0.9·running + 0.1·batch, the batch variance unbiased."""
    graph = cg.Graph("bn")
    x = graph.input("x", (None, 2, 3, 3))
    graph.output(graph.apply(cg.Linear(18, 3), graph.apply(cg.Flatten(), graph.apply(cg.BatchNorm2d(2), x, name="bn"))))
    data = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32) * 3 + 1
    trainer = cg.Trainer(graph, optimizer=cg.optim.SGD(lr=0.01))
    trainer.fit(data, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, shuffle=False)
    params = trainer.graph.node("bn").params
    assert_close(params["running_mean"], 0.1 * data.mean(axis=(0, 2, 3)))
    assert_close(params["running_var"], 0.9 + 0.1 * data.var(axis=(0, 2, 3), ddof=1))


def test_training_step_benchmark_runs(capsys):
    from cnngraph.autodiff.benchmark import main
    main(["seed_m1", "--size", "8", "--batch", "2", "--rounds", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "seed_m1 at 8×8, batch 2" in out and "× the forward" in out and "MiB" in out
    assert "lane(s)" in out and ("goal ≤ 3.5× the forward: met" in out or "goal ≤ 3.5× the forward: not met" in out)


def test_fit_reports_progress_with_the_running_loss_and_accuracy():
    (x, y), _ = split_digits(70)
    calls = []
    trainer = cg.Trainer(small_net(), optimizer=cg.optim.SGD(lr=0.05))
    history = trainer.fit(x, y, epochs=1, batch_size=32, progress=lambda *args: calls.append(args))
    assert [c[:3] for c in calls] == [(0, 1, 3), (0, 2, 3), (0, 3, 3)]
    assert calls[-1][3] == pytest.approx(history.loss[0]) and calls[-1][4] == pytest.approx(history.accuracy[0])
