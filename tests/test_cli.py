"""The command line: every command on a built-in model and on an .onnx file, and clean errors."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import cnngraph as cg
from cnngraph.cli import main
from cnngraph.demo_command import DEMO_MODELS
from cnngraph.tolerance import assert_close


def run_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    assert err.startswith("cnngraph: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    """What `cnngraph demo` printed and the folder it wrote. .ci/run runs the demo as the README's first command
    and hands its output over (CNNGRAPH_DEMO_OUTPUT: a folder holding stdout.txt), so CI runs it once;
    elsewhere the demo runs here."""
    given = os.environ.get("CNNGRAPH_DEMO_OUTPUT")
    if given:
        folder = Path(given)
        return (folder / "stdout.txt").read_text(), folder
    folder = tmp_path_factory.mktemp("demo")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["demo", "--output-dir", str(folder)]) == 0
    return printed.getvalue(), folder


@pytest.mark.slow
def test_demo_tells_the_story_and_writes_its_files(demo_output):
    out, folder = demo_output
    for name in DEMO_MODELS:
        row = re.search(rf"│ {name}\s+│.*", out)
        assert row, f"{name} missing from the demo table"
        for suffix in (".onnx", ".optimized.onnx", ".dot", ".optimized.dot"):
            assert (folder / f"{name}{suffix}").stat().st_size > 0
        diff = re.search(r"(\d\.\de[-+]\d\d) │", row.group(0))
        assert diff and float(diff.group(1)) < 1e-4, row.group(0)
    assert re.search(r"│ seed_m2\s+│\s+1 │ 1 linear fold\s+│ 1.53M -> 596k │\s+1.9k -> 760", out)
    assert "lint seed_m2: L1 (Conv2d 3→16, 3×3) → L2 (Conv2d 16→10, 3×3)" in out
    folded = cg.load_onnx(folder / "seed_m2.optimized.onnx")
    assert [n.op for n in folded.layers()][0] == "Conv2d" and folded.param_count() == cg.models.seed_m3().param_count()


@pytest.mark.slow
def test_the_model_files_written_by_demo_are_valid_onnx(demo_output):
    _, folder = demo_output
    for name in DEMO_MODELS:
        for suffix in (".onnx", ".optimized.onnx"):
            onnx.checker.check_model(onnx.load(str(folder / f"{name}{suffix}")), full_check=True)


def test_summary_lists_layers_and_totals(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "summary", "lenet5")
    graph = cg.models.lenet5()
    assert status == 0
    assert re.search(rf"total .* {graph.param_count():,} .* {graph.macs():,}", out)
    for node in graph.layers():
        assert node.name in out
    path = tmp_path / "lenet.onnx"
    cg.export_onnx(graph, path)
    status, from_file, _ = run_cli(capsys, "summary", str(path))
    assert status == 0 and f"{graph.param_count():,}" in from_file


def test_optimize_writes_the_model_and_prints_the_report(capsys, tmp_path):
    out_path = tmp_path / "m2.onnx"
    status, out, _ = run_cli(capsys, "optimize", "seed_m2", "-o", str(out_path), "--verify")
    assert status == 0
    assert "fold_linear" in out and "done" in out and "verified" in out
    graph, optimized = cg.models.seed_m2(), cg.load_onnx(out_path)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    assert_close(cg.run(optimized, x), cg.run(graph, x))
    assert len(optimized.layers()) == 3
    status, _, _ = run_cli(capsys, "optimize", "seed_m2", "-o", str(tmp_path / "none.onnx"), "--level", "0")
    assert status == 0 and len(cg.load_onnx(tmp_path / "none.onnx").layers()) == 4


def test_optimize_refuses_an_unknown_pass_in_one_line(capsys, tmp_path):
    status, _, err = run_cli(capsys, "optimize", "seed_m2", "-o", str(tmp_path / "x.onnx"), "--disable", "fuse_relu")
    assert_one_line_error(status, err, "fuse_relu", "fuse_activation")
    assert not list(tmp_path.iterdir())


def test_lint_exit_status_guards_a_ci(capsys):
    status, out, _ = run_cli(capsys, "lint", "seed_m2")
    assert status == 1 and "linear-chain" in out and "equivalent to a single Conv2d(3→10, 5×5)" in out
    status, out, _ = run_cli(capsys, "lint", "seed_m1")
    assert status == 0 and "no findings" in out


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_run_on_given_input_saves_what_cg_run_computes(capsys, tmp_path, backend):
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    status, out, _ = run_cli(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"), "--backend", backend,
                             "-o", str(tmp_path / "y.npy"))
    assert status == 0 and "shape (3, 10)" in out
    assert_close(np.load(tmp_path / "y.npy"), cg.run(cg.models.lenet5(), x))


def test_run_on_random_input_with_a_batch(capsys):
    status, out, _ = run_cli(capsys, "run", "seed_m3", "--batch", "4")
    assert status == 0 and "shape (4, 10)" in out


def test_run_refuses_an_input_of_the_wrong_shape(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 28, 28), np.float32))
    status, _, err = run_cli(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"))
    assert_one_line_error(status, err, "channel")


def test_draw_writes_dot_with_shapes_and_fused_layers_marked(capsys, tmp_path):
    path = tmp_path / "m1.dot"
    status, _, _ = run_cli(capsys, "draw", "seed_m1", "-o", str(path), "--optimized")
    assert status == 0
    dot = path.read_text()
    assert dot.startswith('digraph "seed_m1"') and "(N, 16, 30, 30)" in dot
    assert "Conv2d+ReLU" in dot and "palegreen" in dot
    status, _, _ = run_cli(capsys, "draw", "seed_m2", "-o", str(tmp_path / "m2.dot"), "--optimized")
    assert status == 0 and "folded: L1 + L2" in (tmp_path / "m2.dot").read_text()


def test_draw_svg_without_graphviz_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    from cnngraph import draw
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    status, _, err = run_cli(capsys, "draw", "seed_m1", "-o", str(tmp_path / "m1.svg"))
    assert_one_line_error(status, err, "apt install graphviz", ".dot")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_draw_svg_with_graphviz(capsys, tmp_path):
    status, _, _ = run_cli(capsys, "draw", "seed_m2", "-o", str(tmp_path / "m2.svg"), "--optimized")
    svg = (tmp_path / "m2.svg").read_text()
    assert status == 0 and svg.lstrip().startswith("<?xml") and "folded: L1 + L2" in svg


def test_bench_prints_the_four_cases(capsys):
    status, out, _ = run_cli(capsys, "bench", "seed_m2", "--rounds", "1", "--repeats", "1")
    assert status == 0
    for case in ("NumPy backend", "NumPy backend, optimized", "onnxruntime, original", "onnxruntime, our optimized export"):
        assert case in out


@pytest.mark.parametrize("argv,fragments", [
    (["summary", "no_such_model"], ["unknown model 'no_such_model'", "resnet18"]),
    (["summary", "missing.onnx"], ["missing.onnx", "no such file"]),
    (["run", "lenet5", "--batch", "0"], ["--batch"]),
    (["optimize", "seed_m2"], ["-o"]),
    (["draw", "seed_m2", "-o", "picture.jpg"], [".dot, .svg, .png"]),
    (["no-such-command"], ["invalid choice"]),
    (["optimize", "seed_m2", "-o", "x.onnx", "--level", "7"], ["--level"]),
])
def test_errors_are_one_line_on_stderr_with_status_2(capsys, argv, fragments):
    status, _, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, *fragments)


def test_a_malformed_model_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf" * 10)
    status, _, err = run_cli(capsys, "summary", str(bad))
    assert_one_line_error(status, err, "bad.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(cg.export_onnx(cg.models.lenet5()).SerializeToString()[:500])
    status, _, err = run_cli(capsys, "lint", str(truncated))
    assert_one_line_error(status, err, "truncated.onnx")


@pytest.mark.parametrize("argv", [["--debug", "summary", "no_such_model"], ["summary", "no_such_model", "--debug"],
                                  ["summary", "--debug", "no_such_model"]], ids=["first", "last", "middle"])
def test_debug_anywhere_shows_the_traceback_of_the_real_error(argv):
    with pytest.raises(cg.CnnGraphError, match="unknown model 'no_such_model'"):
        main(argv)


def test_debug_leaves_a_usage_error_one_line(capsys):
    """A usage error's traceback is argparse's insides: --debug does not turn it into one."""
    status, _, err = run_cli(capsys, "summary", "--debug")
    assert_one_line_error(status, err, "MODEL")


@pytest.mark.parametrize("option", ["--rounds", "--repeats", "--batch"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_bench_counts_must_be_positive_integers(capsys, option, value):
    status, out, err = run_cli(capsys, "bench", "seed_m2", option, value)
    assert_one_line_error(status, err, option, value)
    assert out == ""


@pytest.mark.parametrize("argv", [
    ["optimize", "seed_m2", "-o", "{missing}/out.onnx"],
    ["draw", "seed_m2", "-o", "{missing}/out.dot"],
    ["run", "lenet5", "-o", "{missing}/out.npy"],
], ids=["optimize", "draw", "run"])
def test_an_output_in_a_missing_folder_is_named_not_its_temporary(capsys, tmp_path, argv):
    argv = [a.format(missing=tmp_path / "missing") for a in argv]
    status, out, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, f"{tmp_path / 'missing'} does not exist")
    assert ".tmp" not in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_write_atomically_names_the_missing_folder(tmp_path):
    from cnngraph.atomic import write_atomically
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        write_atomically(b"data", tmp_path / "missing" / "x.onnx")
    assert ".tmp" not in str(info.value) and "missing" in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        write_atomically(b"data", tmp_path)
    assert ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expected", [
    (["optimize", "seed_m2", "-o", "out.txt"], ".onnx"),
    (["optimize", "seed_m2", "-o", "out"], ".onnx"),
    (["draw", "seed_m2", "-o", "out.onnx"], ".dot, .svg, .png"),
    (["run", "lenet5", "-o", "out.txt"], ".npy"),
    (["run", "lenet5", "-o", "out.npz"], ".npy"),
])
def test_an_output_suffix_that_does_not_match_what_is_written_is_refused(capsys, tmp_path, monkeypatch, argv,
                                                                          expected):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, argv[-1], expected)
    assert out == "" and list(tmp_path.iterdir()) == []


def test_run_with_several_outputs_writes_npz(capsys, tmp_path):
    g = cg.Graph("two")
    x = g.input("x", (None, 2))
    g.output(g.apply(cg.ReLU(), x), g.apply(cg.Tanh(), x))
    cg.export_onnx(g, tmp_path / "two.onnx")
    status, _, err = run_cli(capsys, "run", str(tmp_path / "two.onnx"), "-o", str(tmp_path / "y.npy"))
    assert_one_line_error(status, err, "y.npy", ".npz")
    status, _, _ = run_cli(capsys, "run", str(tmp_path / "two.onnx"), "-o", str(tmp_path / "y.npz"))
    with np.load(tmp_path / "y.npz") as saved:
        assert status == 0 and sorted(saved.files) == sorted(g.outputs)


def test_optimize_at_level_0_says_no_pass_ran(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "optimize", "seed_m2", "-o", str(tmp_path / "m2.onnx"), "--level", "0",
                             "--verify")
    assert status == 0
    assert "verified" not in out and "no pass ran" in out


@pytest.mark.parametrize("command", ["demo", "summary", "optimize", "lint", "run", "draw", "bench"])
def test_every_command_has_help_with_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"example: cnngraph {command}" in capsys.readouterr().out
