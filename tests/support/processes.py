"""Which processes are alive, and waiting for them to go (Linux /proc)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from devstack.embedded import free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (postgres -D <dir>, temporal --db-filename)."""
    found = []
    for pid in _pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and alive(pid):
            found.append(pid)
    return found


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (children, theirs, ...)."""
    parents: dict[int, int] = {}
    for child in _pids():
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields resume after the last ")".
        try:
            parents[child] = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and alive(child):
                found.append(child)
                frontier.append(child)
    return found


def own_stack_env(stack_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a `starter.py dev`/`demo` subprocess with a stack of its own:
    its own directory and free ports, and none of the outer services' addresses."""
    env = {
        **os.environ,
        "STACK_DIR": str(stack_dir),
        "STACK_POSTGRES_PORT": str(free_port()),
        "STACK_TEMPORAL_PORT": str(free_port()),
        "STACK_UI_PORT": str(free_port()),
        "STACK_PLACESIM_PORT": str(free_port()),
        **extra,
    }
    for name in ("DATABASE_URL", "PLACES_BASE_URL", "PLACES_API_KEY", "TEMPORAL_ADDRESS"):
        env.pop(name, None)
    return env
