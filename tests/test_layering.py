"""The layering contracts in pyproject.toml ([tool.importlinter]) hold, and a broken one is caught."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the package under ``src`` with the project's contracts."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=src, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def linter():
    if not LINT_IMPORTS.exists():
        pytest.fail("import-linter is not installed in this environment: `pip install -e .[dev]` (make setup)")
    return lint_imports


def test_layering_contracts_are_kept(linter):
    run = linter(ROOT / "src")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("core/report.py", "import shopfloor.inspection.images", "Core imports no application"),
    ("inspection/images.py", "from shopfloor.maintenance import windows", "do not import each other"),
    ("plant/inputs.py", "import shopfloor.inspection.images", "do not import each other"),
    ("maintenance/rul/report.py", "from . import task", "No import cycles"),
])
def test_a_broken_contract_fails_the_check(linter, tmp_path, module, line, broken):
    shutil.copytree(ROOT / "src" / "shopfloor", tmp_path / "shopfloor", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "shopfloor" / module
    target.write_text(target.read_text() + f"\n{line}  # injected by the test\n")
    run = linter(tmp_path)
    assert run.returncode != 0, run.stdout
    assert broken in run.stdout
