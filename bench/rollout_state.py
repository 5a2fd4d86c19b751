"""Benchmark: roll out a whole state (Texas by default) on the embedded stack.

    .venv/bin/python bench/rollout_state.py [--state TX] [--batch-size 20]
        [--dense bakery,florist] [--sparse ...] [--queries ...] [--skip-enrichment]

Starts its own Postgres, Temporal dev server, Places emulator (no latency, a high quota) and
one `python worker.py`, rolls the state out end to end and prints: wall time, Places requests
per second, the largest history of any StateRolloutWorkflow run (target: under 10,240
events, the server's warning level), the number of runs (continue-as-new), and the worker's
peak memory (VmHWM; target: under 400 MB).

The category lists default to a few categories so a 1,268-community state fits a benchmark
run on a 2-core machine; pass the full lists (rollout/phases/discovery/planning.py) for a
complete world.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.embedded import EmbeddedStack, StackConfig, free_port
from devstack.services import start_emulator, start_worker, worker_environment
from rollout.communities import seed_from_data_file
from rollout.contract import state_workflow_id
from rollout.db.migrate import upgrade_async
from rollout.payloads import RolloutSummary, StateRolloutInput
from rollout.settings import Settings
from workflows.state_rollout import StateRolloutWorkflow

console = Console()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        with EmbeddedStack(config) as stack:
            await upgrade_async(stack.database_url)
            await seed_from_data_file(stack.database_url, args.state)
            places_url = start_emulator(
                stack,
                free_port(),
                seed=3,
                qpm=1_000_000,
                # Big cities overlap dozens of communities: keep the whole state's world.
                extra=["--site-slow-s", "1", "--cache-businesses", "600000"],
            )
            extra = {
                "PLACES_QPM": str(args.places_qpm),
                "DISCOVERY_DENSE_CATEGORIES": json.dumps(args.dense),
                "DISCOVERY_SPARSE_CATEGORIES": json.dumps(args.sparse),
                "DISCOVERY_TEXT_QUERIES": json.dumps(args.queries),
                "SCAN_SITE_DEADLINE_S": "5",
                # Every emulator site shares one host:port; real sites have a host each.
                "SCAN_PER_HOST_CONCURRENCY": "32",
                # A few categories leave the smallest towns with no business; with the full
                # lists keep the default threshold (1).
                "VERIFY_MIN_BUSINESSES": str(args.verify_min_businesses),
                "LOG_LEVEL": "WARNING",
            }
            settings = Settings()
            env = worker_environment(stack, settings, places_url, extra)
            worker = start_worker(stack, env, name="bench-worker")
            assert worker.pid is not None

            client = await Client.connect(
                stack.temporal_address, data_converter=pydantic_data_converter
            )
            started = time.monotonic()
            handle = await client.start_workflow(
                StateRolloutWorkflow.run,
                StateRolloutInput(
                    state_code=args.state,
                    batch_size=args.batch_size,
                    throttle_ms=0,
                    skip_enrichment=args.skip_enrichment,
                ),
                id=state_workflow_id(args.state),
                task_queue="rollout",
            )
            last_report = started
            while True:
                try:
                    summary: RolloutSummary = await asyncio.wait_for(handle.result(), 30)
                    break
                except TimeoutError:
                    now = time.monotonic()
                    if now - last_report >= 60:
                        doc = await handle.query(StateRolloutWorkflow.progress)
                        console.print(
                            f"[dim]{now - started:6.0f}s  {doc.progress_percentage:5.1f}%  "
                            f"{doc.total_businesses:,} businesses  "
                            f"worker {peak_rss_mb(worker.pid):.0f} MB peak[/]"
                        )
                        last_report = now
            wall = time.monotonic() - started
            rss = peak_rss_mb(worker.pid)
            async with httpx.AsyncClient(timeout=30) as http:
                bill = (await http.get(f"{places_url}/sim/billing")).json()
            requests = sum(int(s["requests"]) for s in bill["skus"].values())
            runs = [
                w
                async for w in client.list_workflows(
                    f"WorkflowId = '{state_workflow_id(args.state)}'"
                )
            ]
            children = [
                w.history_length
                async for w in client.list_workflows("WorkflowType = 'CommunityRolloutWorkflow'")
            ]
            discovery = [
                w.history_length
                async for w in client.list_workflows("WorkflowType = 'CommunityDiscoveryWorkflow'")
            ]

    table = Table(title=f"{args.state} rollout on the embedded stack (batch {args.batch_size})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    rows = [
        ("communities", f"{summary.completed:,} completed, {summary.failed} failed", ""),
        ("businesses", f"{summary.businesses:,}", ""),
        ("news sources", f"{summary.news_sources:,}", ""),
        ("Places cost (list price)", f"${summary.cost_usd:,.2f}", ""),
        ("wall time", f"{wall:,.0f} s", ""),
        ("Places requests", f"{requests:,}", ""),
        ("Places requests per second", f"{requests / wall:,.1f}", ""),
        ("StateRolloutWorkflow runs", f"{len(runs)}", ""),
        (
            "largest state-workflow history",
            f"{max(w.history_length for w in runs):,} events",
            "< 10,240",
        ),
        ("largest community history", f"{max(children, default=0):,} events", ""),
        ("largest discovery history", f"{max(discovery, default=0):,} events", ""),
        ("worker peak memory (VmHWM)", f"{rss:,.0f} MB", "< 400 MB"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"categories: dense={args.dense} sparse={args.sparse} queries={args.queries}; "
        f"skip_enrichment={args.skip_enrichment}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="TX")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--places-qpm", type=int, default=60_000)
    parser.add_argument("--dense", type=lambda s: s.split(","), default=["bakery", "bank"])
    parser.add_argument("--sparse", type=lambda s: s.split(","), default=["florist"])
    parser.add_argument("--queries", type=lambda s: [q for q in s.split(",") if q], default=[])
    parser.add_argument("--skip-enrichment", action="store_true")
    parser.add_argument("--verify-min-businesses", type=int, default=0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
