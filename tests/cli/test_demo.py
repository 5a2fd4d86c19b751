"""`./scripts/demo` (`starter.py demo`) from zero, the README's main command: the whole
embedded stack, a real rollout to the end, a summary whose figures match the database and the
emulator's own bill, the Web UI left up by `--keep`, and Ctrl-C leaving nothing behind (also
mid-rollout).

`--communities 2` keeps it to Delaware's two largest communities (about a minute); the full
56-community demo takes under four minutes and is measured by hand (see README).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from rollout.communities import largest, load_communities
from rollout.settings import embedded_database_url
from tests.conftest import PROJECT_ROOT
from tests.support.processes import alive, descendants, own_stack_env, processes_using, wait_gone

# Each test starts a whole embedded stack of its own.
pytestmark = pytest.mark.integration


@dataclass
class Demo:
    """A running `starter.py demo`, its output collected line by line in the background."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching `pattern`; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self.changed.wait(min(left, 1))
        pytest.fail(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))

    @property
    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def port(self, name: str) -> int:
        return int(self.env[f"STACK_{name}_PORT"])


@contextlib.contextmanager
def running_demo(stack_dir: Path, *args: str) -> Iterator[Demo]:
    env = own_stack_env(stack_dir, LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        # The README's command itself (it execs `starter.py demo`, so the pid is the CLI's).
        [str(PROJECT_ROOT / "scripts" / "demo"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # Ctrl-C must reach it even when the test runner was started with SIGINT ignored
        # (a background job), which a child would otherwise inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    demo = Demo(proc, env)
    reader = threading.Thread(target=demo._read, daemon=True)
    reader.start()
    try:
        yield demo
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()


def ctrl_c(demo: Demo) -> None:
    """Ctrl-C: exit 130, every process it started gone, no file of the stack held open."""
    children = descendants(demo.proc.pid)
    # Postgres, the Temporal dev server, the emulator and the worker at least.
    assert len(children) >= 4, children
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(90) == 130, demo.output
    assert wait_gone(children, timeout=30) == []
    assert not alive(demo.proc.pid)


def table_value(output: str, label: str) -> str:
    """The right-hand cell of a row of the summary table."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*(.+?)\s*│", output)
    assert match, f"no {label!r} row in:\n{output}"
    return match.group(1)


def cents(amount: str) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_demo_runs_a_rollout_from_zero_keeps_the_stack_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    with running_demo(tmp_path, "DE", "--communities", "2", "--keep") as demo:
        demo.wait_for(r"^stack up in \d+s: .* the 2 largest communities of Delaware$", 120)
        demo.wait_for(r"^DE completed: 2/2 communities \(completed 2, failed 0", 420)
        demo.wait_for(r"^--keep: the stack stays up", 60)
        out = demo.output
        assert "error" not in out.lower(), out
        assert "Traceback" not in out, out

        # The summary's figures are the database's...
        assert table_value(out, "communities") == "2 completed, 0 failed"
        businesses = number(table_value(out, "businesses"))
        with_websites = number(table_value(out, "  with websites"))
        news_sources = number(table_value(out, "news sources"))
        assert businesses > with_websites > 0
        assert news_sources > 0
        database = embedded_database_url(demo.port("POSTGRES"), "rollout_demo")

        async def from_database() -> tuple[asyncpg.Record, list[int], int]:
            conn = await asyncpg.connect(database.replace("+asyncpg", ""))
            try:
                rollout = await conn.fetchrow(
                    "SELECT status, total_communities, total_businesses, total_news_sources,"
                    " (SELECT sum(businesses_with_websites) FROM community_rollouts) AS websites"
                    " FROM state_rollouts WHERE state_code = 'DE'"
                )
                assert rollout is not None
                rolled = [
                    r["community_id"]
                    for r in await conn.fetch(
                        "SELECT community_id FROM community_rollouts"
                        " WHERE status = 'completed' ORDER BY position"
                    )
                ]
                sources = await conn.fetchval("SELECT count(*) FROM news_sources")
                return rollout, rolled, int(sources)
            finally:
                await conn.close()

        rollout, rolled, sources = asyncio.run(from_database())
        assert rollout["status"] == "completed"
        assert rollout["total_communities"] == 2
        assert rolled == [c.id for c in largest(load_communities("DE"), 2)]
        assert rollout["total_businesses"] == businesses
        assert rollout["websites"] == with_websites
        assert rollout["total_news_sources"] == news_sources == sources

        # ...and its cost by SKU is what the emulator billed, request for request.
        bill = httpx.get(f"http://127.0.0.1:{demo.port('PLACESIM')}/sim/billing", timeout=10).json()
        assert bill["skus"], bill
        for sku, billed in bill["skus"].items():
            row = re.fullmatch(r"([\d,]+) requests, \$([\d,.]+)", table_value(out, f"  {sku}"))
            assert row, sku
            assert number(row[1]) == billed["requests"], sku
            assert Decimal(row[2].replace(",", "")) == cents(billed["cost"]), sku
        assert table_value(out, "Places cost (list price)") == f"${cents(bill['total_cost']):,}"

        # --keep: the Web UI the summary points at is still up and shows the rollout and its
        # two children, found by the search attribute the printed link uses.
        link = demo.wait_for(r"^\s+(http://\S+/workflows)\?query=RolloutStateCode%3D%22DE%22", 5)
        ui_base = link.group(1).replace("/namespaces/", "/api/v1/namespaces/")
        found = httpx.get(ui_base, params={"query": "RolloutStateCode='DE'"}, timeout=10).json()
        by_id = {e["execution"]["workflowId"]: e for e in found["executions"]}
        assert set(by_id) == {"state-rollout-DE"} | {
            f"state-rollout-DE/community-{community}" for community in rolled
        }
        assert all(e["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED" for e in by_id.values())

        ctrl_c(demo)
    assert processes_using(tmp_path) == []


def test_demo_ctrl_c_mid_rollout_stops_everything(tmp_path: Path) -> None:
    with running_demo(tmp_path, "DE") as demo:
        demo.wait_for(r"^DE in_progress: .*in flight [1-9]", 180)
        ctrl_c(demo)
        assert "stopped" in demo.output
        assert "Traceback" not in demo.output, demo.output
    assert processes_using(tmp_path) == []
