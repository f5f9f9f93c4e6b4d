"""The wheel installs `loopauth` and `loopauth.plugins` only, and works outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    [built] = out.glob("loopauth-*.whl")
    return built


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"loopauth", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "loopauth/py.typed" in names
    assert "loopauth/plugins/oauth2.py" in names and "loopauth/cli/__init__.py" in names
    entry = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "loopauth = loopauth.cli:main" in entry


def test_wheel_install_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import loopauth, loopauth.plugins.oauth2 as o; "
        "from loopauth.plugin_manager import provider_types; "
        "print(loopauth.__file__); print(sorted(provider_types())); "
        # Package data: Google's published discovery document ships inside the wheel.
        "from loopauth.plugins.google import published_metadata; "
        "print(published_metadata()['authorization_endpoint'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(target))
    assert "['github', 'google', 'microsoft', 'oauth2', 'tiktok_shop']" in run.stdout
    assert "https://accounts.google.com/o/oauth2/v2/auth" in run.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "loopauth", "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert cli.stdout.strip().startswith("loopauth ")


def test_editable_install_maps_the_repo_layout() -> None:
    import loopauth
    import loopauth.plugins

    assert Path(loopauth.__file__).parent == ROOT / "core"
    assert Path(loopauth.plugins.__file__).parent == ROOT / "plugins"
    for name in ("core", "plugins"):
        proc = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, cwd="/", timeout=30
        )
        assert proc.returncode != 0, f"`import {name}` must not work outside the repo"
