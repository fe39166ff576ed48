"""The command line: the demo a newcomer runs first, and clean errors."""
import re

import pytest

from cnngraph.cli import DEMO_MODELS, main


def test_demo_runs_every_story_model_and_agrees_with_onnxruntime(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in DEMO_MODELS:
        assert re.search(rf"^{name}\s", out, re.M), f"{name} missing from the demo table"
        assert (tmp_path / f"{name}.onnx").stat().st_size > 0
    worst = float(re.search(r"largest difference .*: (\S+)", out).group(1))
    assert worst < 1e-4


def test_errors_are_one_line_on_stderr_with_status_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--output-dir", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnngraph: error:") and err.count("\n") == 1


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
