"""The per-layer benchmark (backends/layer_benchmark.py): its rows and goal lines, on a small model."""
from __future__ import annotations

import cnngraph as cg
from cnngraph.backends import layer_benchmark
from cnngraph.backends.numpy_backend import fused_pool
from cnngraph.backends.numpy_backend.plan import Plan


def test_steps_onnxruntime_fuses_join_the_producer_it_runs_last():
    """A residual Add and its ReLU have no onnxruntime node of their own: they join the row of whichever
    producer onnxruntime ran last (the one it fused them into), not the last in our order."""
    g = cg.Graph("block")
    x = g.input("x", (None, 2, 5, 5))
    a = g.apply(cg.Conv2d(2, 2, 3, padding=1), x, name="a")
    b = g.apply(cg.Conv2d(2, 2, 1), x, name="b")
    g.output(g.apply(cg.ReLU(), g.apply(cg.Add(), a, b, name="add"), name="relu"))
    plan = Plan(g, {"N": 1})
    for order, fused_into in ((["b", "a"], "a"), (["a", "b"], "b")):
        rows = dict(layer_benchmark.rows(g, plan, order))
        assert [label.split(" (")[0] for label in rows[fused_into]] == [fused_into, "add", "relu"]


def test_prints_a_row_per_layer_and_the_goal_lines(capsys, monkeypatch):
    """lenet5's first convolution runs its max pool inside its step (fused_pool.py): one row, against the sum of
    onnxruntime's two nodes, and one goal; with the fusion off, a row and a goal each."""
    assert layer_benchmark.main(["lenet5", "--pairs", "1", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "relu1 (Conv2d)" in out and "fc3 (Linear)" in out and "whole run" in out     # optimized: fused names
    assert "relu3 (Linear)" in out and "fused" not in out          # onnxruntime's "fused relu3" is our relu3
    assert "relu1 (Conv2d) + pool1 (MaxPool2d) [ort: relu1 + pool1]" in out and "pool1 (onnxruntime only)" not in out
    assert ("goal: stem + max pool relu1 + pool1 (Conv2d 5×5/1 + MaxPool2d 2×2/2, one step; onnxruntime: the sum "
            "of its two nodes)") in out and "goal: max pool" not in out
    assert "stem's bare GEMM (np.matmul of its im2col shapes by 3136 columns, 1 thread(s))" in out
    monkeypatch.setattr(fused_pool, "ENABLED", False)
    assert layer_benchmark.main(["lenet5", "--pairs", "1", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "goal: stem relu1 (Conv2d 5×5/1)" in out and "goal: max pool pool1 (MaxPool2d 2×2/2)" in out
    assert "[ort:" not in out
