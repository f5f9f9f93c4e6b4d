"""ruff check, ruff format and mypy --strict are clean (mypy on the installed layout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> None:
    if shutil.which(name, path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")


def test_ruff() -> None:
    _tool("ruff")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "core", "plugins", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    _tool("ruff")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "core", "plugins", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy(tmp_path: Path) -> None:
    _tool("mypy")
    # mypy cannot see setuptools' package-dir mapping, so lay the package out as it installs.
    package = tmp_path / "loopauth"
    package.mkdir()
    for path in (ROOT / "core").iterdir():
        if path.suffix in (".py", ".typed") or (path / "__init__.py").is_file():
            (package / path.name).symlink_to(path)
    (package / "plugins").symlink_to(ROOT / "plugins")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "-p",
            "loopauth",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
