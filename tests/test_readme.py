"""The README's tour runs as written, and its two set-up commands are the ones .ci/run executes."""
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tour_code_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["y"].shape == (8, 10)
    assert os.path.getsize(tmp_path / "lenet.onnx") > 0
    assert namespace["back"].outputs == namespace["fast"].outputs


def test_ci_runs_the_readme_commands():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "pip install -e . && cnngraph demo" in readme and "pip install -e . && cnngraph demo" in ci
    assert "pip install -e '.[test]' && python -m pytest" in readme and "pip install -e '.[test]' && python -m pytest" in ci
    # the demo runs once in CI: the tests check what the first command printed and wrote (test_cli.demo_output)
    assert 'export CNNGRAPH_DEMO_OUTPUT="$demo"' in ci and 'cnngraph demo --output-dir "$demo"' in ci
