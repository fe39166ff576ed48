"""`cnngraph train`: trains, writes the trained model as ONNX and the curves, refuses bad data cleanly."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import cnngraph as cg
from cnngraph.cli import main
from cnngraph.tolerance import assert_close


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    x, y = cg.datasets.digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x[:160], y=y[:160], x_val=x[160:220], y_val=y[160:220])
    return path


def test_train_writes_the_trained_model(capsys, tmp_path, small_digits):
    out = tmp_path / "m3.onnx"
    status = main(["train", "seed_m3", "--data", str(small_digits), "--epochs", "2", "--batch-size", "16",
                   "--optimizer", "adam", "-o", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "epoch   2" in printed and "validation loss" in printed and f"wrote {out}" in printed
    trained = cg.load_onnx(out)
    untrained = cg.models.seed_m3(input_shape=(None, 1, 8, 8), num_classes=10)
    x = cg.datasets.digits()[0][:5]
    assert trained.layers()[0].op == "Conv2d"
    assert not np.allclose(cg.run(trained, x), cg.run(untrained, x))          # the weights moved
    assert_close(cg.run(trained, x), cg.run(trained, x, backend="onnxruntime"))


def test_train_plot_without_matplotlib_prints_a_hint(capsys, tmp_path, small_digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)                       # import matplotlib fails
    status = main(["train", "seed_m3", "--data", str(small_digits), "--epochs", "1", "--plot", str(tmp_path / "c.png")])
    assert status == 0
    assert "needs matplotlib (pip install 'cnngraph[plot]')" in capsys.readouterr().out
    assert not (tmp_path / "c.png").exists()


def test_train_plot(capsys, tmp_path, small_digits):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "curves.png"
    assert main(["train", "seed_m3", "--data", str(small_digits), "--epochs", "2", "--plot", str(picture)]) == 0
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_train_refuses_bad_data(capsys, tmp_path):
    assert main(["train", "seed_m3", "--data", str(tmp_path / "none.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 1, 8, 8)))
    assert main(["train", "seed_m3", "--data", str(bad)]) == 2
    assert "missing arrays ['x', 'y']" in capsys.readouterr().err
    assert main(["train", "seed_m3", "-o", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
