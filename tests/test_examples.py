"""Each example runs as a newcomer would run it, asserts what it claims, and leaves no file in the repo."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "quickstart.py": "same outputs in NumPy and onnxruntime",
    "seed_question.py": "M2 folded: 1,898 -> 760 parameters (M3 has 760)",
    "optimize_onnx.py": "onnxruntime gives the same outputs",
    "custom_pass.py": "drop_double_activation ran under cg.optimize, verified",
    "seed_training.py": "100% of predictions unchanged",
    "repvgg_training.py": "identical predictions on the 450 validation digits",
}
ARGUMENTS = {"seed_training.py": ["--quick"]}     # its full run trains for minutes; --quick runs every line


def repo_state():
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True).stdout


@pytest.mark.slow                    # a fresh interpreter each: seconds apiece
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_and_says_what_it_shows(name):
    before = repo_state()
    command = [sys.executable, str(ROOT / "examples" / name), *ARGUMENTS.get(name, [])]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert EXAMPLES[name] in completed.stdout
    assert repo_state() == before, "the example left files in the repository"


def test_every_example_is_tested():
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == set(EXAMPLES)
