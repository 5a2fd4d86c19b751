"""Operator CLI for statewide rollouts.

    python starter.py dev                      # Postgres + Temporal (Web UI) in the foreground
    python starter.py migrate                  # bring the database schema to the latest version
    python starter.py seed-communities [--state TX]

Every error is one line on stderr and a non-zero exit; nothing is changed on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console
from temporalio.client import Client

from cli import control
from devstack.embedded import EmbeddedStack, StackConfig, StackError, terminate_on_sigterm
from devstack.services import DEMO_DISCOVERY, start_emulator, start_worker, worker_environment
from rollout.communities import SchemaMissingError, seed_from_data_file
from rollout.contract import RETENTION_SCHEDULE_ID, state_workflow_id
from rollout.db.errors import DatabaseUnavailableError, is_connection_error, unavailable
from rollout.logsetup import configure_logging
from rollout.payloads import (
    MAX_BATCH_SIZE,
    MIN_BATCH_SIZE,
    CommandAnswer,
    ProgressDocument,
    RolloutSettings,
    RolloutSummary,
    cents,
)
from rollout.phases.seeding.events import sync_business_events
from rollout.retention import (
    CONTENT_DAYS,
    PLACE_ID_REFRESH_DAYS,
    REFRESH_AFTER_DAYS,
    RetentionPlan,
    purge_expired_page,
    retention_plan,
)
from rollout.settings import Settings, describe_settings_error, get_settings
from rollout.states import STATE_NAMES, UnknownStateError, normalize_state_code

DEMO_STATE = "DE"  # 56 communities: a whole state in a few minutes
# The demo talks to the emulator only, so it may go faster than Google's default quota.
DEMO_PLACES_QPM = 12_000
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class CommandError(Exception):
    """An error the operator can act on: printed as one line, exit code 1."""


class OneLineArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line is easier to act on.
        self.exit(2, f"error: {message} (see `python starter.py {self.prog.split()[-1]} --help`)\n")


def _state_arg(value: str) -> str:
    try:
        return normalize_state_code(value)
    except UnknownStateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_size_arg(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch size {value!r} is not a number") from None
    if not MIN_BATCH_SIZE <= size <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"batch size {size} is outside {MIN_BATCH_SIZE}-{MAX_BATCH_SIZE}"
        )
    return size


def _port_arg(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1-65535")
    return port


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


def migrate(database_url: str) -> None:
    from rollout.db.migrate import upgrade

    try:
        upgrade(database_url)
    except Exception as exc:
        if is_connection_error(exc):
            raise CommandError(str(unavailable(database_url, exc))) from None
        raise


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    migrate(settings.database_url)
    console.print("database schema is at the latest version")


def cmd_seed_communities(args: argparse.Namespace, settings: Settings) -> None:
    started = time.monotonic()
    result = asyncio.run(seed_from_data_file(settings.database_url, args.state))
    where = STATE_NAMES[args.state] if args.state else f"{result.states} states and DC"
    console.print(
        f"seeded {result.communities:,} communities of {where} with their primary regions "
        f"in {time.monotonic() - started:.1f}s (GeoNames, CC BY 4.0)"
    )


@contextlib.contextmanager
def embedded_stack(
    args: argparse.Namespace,
    settings: Settings,
    *,
    places_qpm: int | None = None,
    worker_env: dict[str, str] | None = None,
    demo: bool = False,
    seed_only: tuple[str, int] | None = None,
) -> Iterator[tuple[EmbeddedStack, int, str]]:
    """Postgres, Temporal (Web UI), schema, communities, the emulator and a worker.

    `seed_only` (state, n) seeds just that state's n largest communities instead of all.
    Yields the stack, the number of communities seeded and the Places URL in use."""
    overrides: dict[str, object] = {}
    for option, field in (
        ("postgres_port", "postgres_port"),
        ("temporal_port", "temporal_port"),
        ("ui_port", "ui_port"),
    ):
        if getattr(args, option, None):
            overrides[field] = getattr(args, option)
    if demo:
        # From zero every time, beside (not in) the dev stack's data: its own database and
        # an in-memory Temporal.
        overrides |= {
            "database_name": "rollout_demo",
            "fresh_database": True,
            "persist_temporal": False,
        }
    config = StackConfig.from_settings(settings, **overrides)
    with EmbeddedStack(config) as stack:
        migrate(stack.database_url)
        if seed_only:
            state, limit = seed_only
            result = asyncio.run(seed_from_data_file(stack.database_url, state, limit=limit))
        else:
            result = asyncio.run(seed_from_data_file(stack.database_url))
        # Nobody pays for a local stack: the emulator answers unless PLACES_BASE_URL was set.
        places_url = None
        extra: dict[str, str] = dict(worker_env or {})
        if "places_base_url" not in settings.model_fields_set:
            qpm = places_qpm or settings.places_qpm
            places_url = start_emulator(
                stack, args.placesim_port or settings.stack_placesim_port, qpm=qpm
            )
            extra["PLACES_QPM"] = str(qpm)
        start_worker(stack, worker_environment(stack, settings, places_url, extra))
        yield stack, result.communities, places_url or settings.places_base_url


def _watch_services(stack: EmbeddedStack) -> None:
    """Raise when a service of the stack has died (it takes the whole stack down)."""
    for process in filter(None, [stack.temporal.process, *stack.extra]):
        if not process.running():
            raise CommandError(str(process.failure()).splitlines()[0])
    if stack.postgres and stack.postgres.process and not stack.postgres.process.running():
        raise CommandError(str(stack.postgres.process.failure()).splitlines()[0])


def cmd_dev(args: argparse.Namespace, settings: Settings) -> None:
    with embedded_stack(args, settings) as (stack, communities, places_url):
        _print_stack(stack, communities, places_url)
        while True:  # serve until Ctrl-C / SIGTERM
            _watch_services(stack)
            time.sleep(1)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from rich.live import Live

    from cli.render import ProgressLines, progress_view

    started = time.monotonic()
    rollout = RolloutSettings(batch_size=args.batch_size, throttle_ms=0)
    control.check_input(args.state, rollout, initiated_by="demo")
    with embedded_stack(
        args,
        settings,
        places_qpm=DEMO_PLACES_QPM,
        worker_env=DEMO_DISCOVERY,
        demo=True,
        seed_only=(args.state, args.communities) if args.communities else None,
    ) as (
        stack,
        communities,
        places_url,
    ):
        seeded = (
            f"the {communities:,} largest communities of {STATE_NAMES[args.state]}"
            if args.communities
            else f"{communities:,} communities"
        )
        console.print(
            f"[bold green]stack up[/] in {time.monotonic() - started:.0f}s: Temporal "
            f"{stack.temporal_address}, Web UI {stack.ui_url}, Places {places_url}, {seeded}",
            soft_wrap=True,
        )
        stack_settings = settings.model_copy(
            update={
                "temporal_address": stack.temporal_address,
                "database_url": stack.database_url,
            }
        )

        async def run_rollout() -> RolloutSummary:
            client = await control.connect(stack_settings)
            handle, _ = await control.start(  # a fresh database: nothing to reconcile
                client, stack_settings, args.state, rollout, initiated_by="demo"
            )
            result = asyncio.ensure_future(handle.result())

            async def follow(show: Callable[[ProgressDocument], None]) -> None:
                while not result.done():
                    await asyncio.wait([result], timeout=1)
                    _watch_services(stack)
                    show(await control.progress(client, stack_settings, args.state))

            document = await control.progress(client, stack_settings, args.state)
            if console.is_terminal:
                with Live(progress_view(document), console=console, refresh_per_second=4) as live:
                    await follow(lambda doc: live.update(progress_view(doc)))
            else:
                # Piped or logged: a plain line whenever something changed (a live bar
                # would print its last frame glued to the summary).
                lines = ProgressLines(console, from_first_community=True)
                lines.show(document)
                await follow(lines.show)
            summary: RolloutSummary = result.result()
            return summary

        summary = asyncio.run(run_rollout())
        report = asyncio.run(control.rollout_report(stack_settings, summary.rollout_id))
        _print_demo_summary(args.state, summary, report, time.monotonic() - started, stack)
        if args.keep:
            console.print("--keep: the stack stays up; press Ctrl-C to stop everything.")
            while True:
                _watch_services(stack)
                time.sleep(1)


def _usd(amount: Decimal) -> str:
    return f"${cents(amount):,}"


def _print_demo_summary(
    state: str,
    summary: RolloutSummary,
    report: control.RolloutReport,
    elapsed: float,
    stack: EmbeddedStack,
) -> None:
    from rich.table import Table

    table = Table(
        title=f"{STATE_NAMES[state]} rollout #{summary.rollout_id}: {summary.status.value}"
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("communities", f"{summary.completed:,} completed, {summary.failed:,} failed")
    table.add_row("businesses", f"{summary.businesses:,}")
    table.add_row("  with websites", f"{report.with_websites:,}")
    table.add_row("news sources", f"{summary.news_sources:,}")
    for sku, requests, cost in report.cost_by_sku:
        table.add_row(f"  {sku}", f"{requests:,} requests, {_usd(cost)}")
    table.add_row("Places cost (list price)", _usd(summary.cost_usd))
    table.add_row("elapsed", f"{elapsed:,.0f} s")
    console.print(table)
    workflow = f"{stack.ui_url}/namespaces/{stack.config.namespace}/workflows"
    console.print(f"Web UI: {workflow}/{state_workflow_id(state)}", soft_wrap=True)
    console.print(
        f"        {workflow}?query=RolloutStateCode%3D%22{state}%22 (the rollout and its children)",
        soft_wrap=True,
    )


def _print_stack(stack: EmbeddedStack, communities: int, places_url: str) -> None:
    pg = "external (DATABASE_URL)" if stack.config.external_database_url else "embedded"
    console.print("[bold green]statewide rollout dev stack is up[/]")
    console.print(f"  Temporal   {stack.temporal_address}  (namespace {stack.config.namespace})")
    console.print(f"  Web UI     {stack.ui_url}")
    console.print(f"  Postgres   {pg}: {stack.database_url}")
    console.print(f"  Places     {places_url}")
    console.print("  Worker     every task queue (rollout, and one per Places method)")
    console.print(f"  Data       {communities:,} communities seeded; logs in {stack.log_dir}")
    console.print("In another shell:")
    for key, value in stack.environment().items():
        console.print(f"  export {key}={value}")
    console.print("  python starter.py start DE && python starter.py progress DE --watch")
    console.print(f"  pids: {' '.join(map(str, stack.pids()))}")
    console.print("Press Ctrl-C to stop everything.", style="dim")


def _positive_arg(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def _budget_arg(value: str) -> Decimal:
    try:
        budget = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"budget {value!r} is not a number") from None
    if not budget.is_finite() or budget <= 0:
        raise argparse.ArgumentTypeError(f"budget {value} must be a positive amount of USD")
    return budget


def cmd_start(args: argparse.Namespace, settings: Settings) -> None:
    start_rollout(args, settings, only=[])


def cmd_retry_failed(args: argparse.Namespace, settings: Settings) -> None:
    failed = asyncio.run(control.failed_to_retry(settings, args.state))
    console.print(f"retrying {len(failed)} failed communities of {args.state}")
    start_rollout(args, settings, only=failed)


def cmd_rerun(args: argparse.Namespace, settings: Settings) -> None:
    start_rollout(args, settings, only=[args.community])


def start_rollout(args: argparse.Namespace, settings: Settings, *, only: list[int]) -> None:
    """`start`, `retry-failed` and `rerun`: a new rollout of the state (of `only` when
    given), after closing a rollout row its workflow left active."""
    rollout = RolloutSettings(
        batch_size=args.batch_size,
        throttle_ms=args.throttle_ms,
        skip_enrichment=args.skip_enrichment,
        priority_communities=getattr(args, "priority", None) or [],
        budget_usd=args.budget,
        only_communities=only,
    )

    control.check_input(args.state, rollout, initiated_by=getpass.getuser())

    async def go() -> tuple[str, list[control.Reconciled]]:
        client = await control.connect(settings)
        handle, closed = await control.start(
            client, settings, args.state, rollout, initiated_by=getpass.getuser()
        )
        return handle.id, closed

    workflow_id, closed = asyncio.run(go())
    print_reconciled(closed)
    console.print(f"started {workflow_id} ({STATE_NAMES[args.state]})")
    console.print(f"  watch:   python starter.py progress {args.state} --watch")
    console.print(f"  pause:   python starter.py pause {args.state} --reason TEXT")
    console.print(
        f"  temporal workflow query -w {workflow_id} --name progress   "
        f"(Web UI: search RolloutStateCode='{args.state}')"
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=5, help="children at once, 1-200 (5)")
    p.add_argument(
        "--throttle-ms", type=int, default=100, help="pause before each Places request (100)"
    )
    p.add_argument("--skip-enrichment", action="store_true", help="skip phase 4 (Pro enrichment)")
    p.add_argument("--budget", type=_budget_arg, help="pause before spending more than USD")


def cmd_failures(args: argparse.Namespace, settings: Settings) -> None:
    found = asyncio.run(control.failures(settings, args.state))
    if args.json:
        console.print_json(
            json.dumps(
                {
                    "rollout_id": found.rollout_id,
                    "status": found.status,
                    "failed": [dataclasses.asdict(c) for c in found.communities],
                },
                default=str,
            )
        )
        return
    if not found.communities:
        console.print(
            f"no failed communities in {args.state}'s last rollout "
            f"(#{found.rollout_id}, {found.status})"
        )
        return
    from rich.table import Table

    table = Table(
        title=f"Failed communities of {args.state}'s rollout #{found.rollout_id} ({found.status})"
    )
    for column in ("community", "id", "phase", "attempts", "error", "verification"):
        table.add_column(column, overflow="fold")
    for c in found.communities:
        report = c.verification or {}
        flags = report.get("failures") or ("passed" if report.get("passed") else None)
        table.add_row(
            c.name,
            str(c.community_id),
            str(c.failed_phase or "-"),
            str(c.attempts),
            c.error or "",
            json.dumps(flags) if flags else "",
        )
    console.print(table)
    console.print(
        f"run them again: python starter.py retry-failed {args.state}; "
        f"one of them: python starter.py rerun {args.state} --community ID"
    )


def print_reconciled(closed: list[control.Reconciled]) -> None:
    for item in closed:
        console.print(
            f"closed rollout #{item.rollout_id} of {item.state_code}: {item.was} -> "
            f"{item.now.value} ({item.reason})",
            soft_wrap=True,
        )


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> list[control.Reconciled]:
        client = await control.connect(settings)
        return await control.reconcile(client, settings, args.state)

    closed = asyncio.run(go())
    print_reconciled(closed)
    if not closed:
        where = args.state or "any state"
        console.print(f"nothing to reconcile: every active rollout of {where} is running")


def cmd_pause(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> CommandAnswer:
        client = await control.connect(settings)
        return await control.pause(client, args.state, args.reason)

    answer = asyncio.run(go())
    console.print(
        f"pause sent to {args.state}: {answer.message}; running communities finish, "
        "no new ones start"
    )


def cmd_resume(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> CommandAnswer:
        client = await control.connect(settings)
        return await control.resume(client, args.state, args.budget)

    answer = asyncio.run(go())
    console.print(f"resume sent to {args.state}: {answer.message}")


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> None:
        client = await control.connect(settings)
        await control.cancel(client, args.state)

    asyncio.run(go())
    console.print(
        f"cancel sent to {args.state}: in-flight communities are cancelled, "
        "the rest marked cancelled"
    )


def cmd_set_batch_size(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> CommandAnswer:
        client = await control.connect(settings)
        return await control.set_batch_size(client, args.state, args.batch_size)

    answer = asyncio.run(go())
    console.print(answer.message)


def cmd_progress(args: argparse.Namespace, settings: Settings) -> None:
    from rich.live import Live

    from cli.render import ProgressLines, progress_view

    def open_status(document: ProgressDocument) -> bool:
        return document.rollout.status.value in ("planned", "in_progress", "paused")

    async def once(client: Client) -> ProgressDocument:
        return await control.progress(client, settings, args.state)

    async def go() -> None:
        client = await control.connect(settings)
        document = await once(client)
        if args.json:
            sys.stdout.write(document.model_dump_json(indent=2) + "\n")
            return
        if not args.watch:
            console.print(progress_view(document))
            return
        if not console.is_terminal:
            # Piped or logged: a line whenever something changed, and the final state.
            lines = ProgressLines(console)
            lines.show(document)
            while open_status(document):
                await asyncio.sleep(args.interval)
                document = await once(client)
                lines.show(document)
            return
        with Live(progress_view(document), console=console, refresh_per_second=4) as live:
            while open_status(document):
                await asyncio.sleep(args.interval)
                document = await once(client)
                live.update(progress_view(document))

    asyncio.run(go())


def cmd_estimate(args: argparse.Namespace, settings: Settings) -> None:
    from rich.table import Table

    from rollout.communities import load_communities
    from rollout.estimate import estimate

    result = estimate(
        load_communities(args.state), settings.discovery, everywhere=load_communities()
    )
    table = Table(
        title=f"Estimate for {STATE_NAMES[args.state]}: {result.communities:,} communities, "
        f"about {result.businesses:,} businesses"
    )
    table.add_column("SKU")
    table.add_column("requests", justify="right")
    table.add_column("list price", justify="right")
    table.add_column("free per month", justify="right")
    if args.free_caps:
        table.add_column("after free caps", justify="right")
    for sku in result.skus:
        cap = "unlimited" if sku.free_monthly_cap is None else f"{sku.free_monthly_cap:,}"
        row = [sku.sku, f"{sku.requests:,}", f"${sku.cost_usd:,.2f}", cap]
        table.add_row(*row, *([f"${sku.after_free_caps:,.2f}"] if args.free_caps else []))
    total = ["total", f"{result.requests:,}", f"${result.cost_usd:,.2f}", ""]
    if args.free_caps:
        total.append(f"${result.after_free_caps:,.2f}")
    table.add_row(*total, style="bold")
    console.print(table)
    console.print(
        f"Keeping Google's content past 30 days (PLACES_CONTENT_POLICY=refresh) would add "
        f"about {result.refresh_requests_per_month:,} {result.refresh_sku} requests, "
        f"${result.refresh_monthly_usd:,.2f} a month (list price); the default policy, "
        "purge, costs nothing."
    )
    console.print(
        "A model, not a quote: densities and category shares are assumptions, calibrated "
        "on the emulator within 15% (rollout/estimate.py). List prices; "
        + (
            "'after free caps' assumes the rollout is the month's only use of each SKU."
            if args.free_caps
            else "--free-caps shows the price after Google's monthly free caps."
        ),
        style="dim",
    )


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    from cli.render import rollouts_table

    async def go() -> list[control.RolloutListing]:
        client = await control.connect(settings)
        return await control.list_rollouts(client)

    rows = asyncio.run(go())
    if args.json:
        sys.stdout.write(
            json.dumps([dataclasses.asdict(r) for r in rows], default=str, indent=2) + "\n"
        )
    elif rows:
        console.print(rollouts_table(rows))
    else:
        console.print("no rollouts yet; start one with `python starter.py start TX`")


def _date_arg(value: str) -> dt.date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date {value!r} is not a YYYY-MM-DD date") from None


def cmd_retention(args: argparse.Namespace, settings: Settings) -> None:
    from rich.table import Table
    from sqlalchemy.exc import ProgrammingError

    from rollout.db.session import create_engine, describe_url, session_factory

    if args.as_of is not None and not args.dry_run:
        # A run purges as of now: purging ahead of time would leave content that discovery
        # still counts as fresh (DISCOVERY_FRESH_DAYS) empty, and behind time keeps it longer
        # than Google's terms allow.
        raise control.InputError("--as-of plans a later run: use it with --dry-run")
    policy = settings.places_content_policy
    log = logging.getLogger("starter")
    if policy == "refresh":
        log.warning(
            "PLACES_CONTENT_POLICY=refresh: whether Google content refreshed every %d days "
            "may be kept is a legal call for the owners, not the code's (docs/places.md, "
            "Storage terms)",
            REFRESH_AFTER_DAYS,
        )
    elif policy == "keep":
        log.warning(
            "PLACES_CONTENT_POLICY=keep (acknowledged): Google content is kept past the %d "
            "days Google's terms allow",
            CONTENT_DAYS,
        )
    # --as-of D: the run at the end of day D (UTC), so it counts everything expiring that day.
    as_of = (
        dt.datetime.combine(args.as_of + dt.timedelta(days=1), dt.time(), dt.UTC)
        if args.as_of is not None
        else dt.datetime.now(dt.UTC)
    )
    purging = not args.dry_run and policy != "keep"

    async def go() -> tuple[RetentionPlan, dict[str | None, int]]:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                plan = await retention_plan(
                    session,
                    policy,
                    as_of,
                    state=args.state,
                    refresh_mask=settings.discovery.details_mask,
                )
            purged: dict[str | None, int] = {}
            after: int | None = 0
            while purging and after is not None:
                # A page per transaction, each with its platforms' tombstones, as the
                # scheduled run purges.
                async with session_factory(engine).begin() as session:
                    page = await purge_expired_page(
                        session, as_of, after_business_id=after, limit=500, state=args.state
                    )
                    await sync_business_events(session, page.business_ids)
                for code, count in page.states.items():
                    purged[code] = purged.get(code, 0) + count
                after = page.next_after_id
            return plan, purged
        except ProgrammingError as exc:
            if "does not exist" in str(exc.orig):
                raise CommandError(
                    f"the database at {describe_url(settings.database_url)} has no retention "
                    "columns; run `python starter.py migrate` first"
                ) from None
            raise
        finally:
            await engine.dispose()

    plan, purged = asyncio.run(go())
    where = f" in {STATE_NAMES[args.state]}" if args.state else ""
    if args.dry_run:
        _print_retention_plan(plan, where)
    elif policy == "keep":
        console.print(
            f"PLACES_CONTENT_POLICY=keep (acknowledged): nothing purged; {plan.expiring:,} "
            f"businesses{where} hold Google content older than {CONTENT_DAYS} days",
            soft_wrap=True,
        )
    elif purged:
        table = Table()
        table.add_column("state")
        table.add_column("businesses", justify="right")
        for code, count in sorted(purged.items(), key=lambda item: item[0] or "~"):
            table.add_row(code or "unknown", f"{count:,}")
        console.print(table)
        console.print(
            f"purged the Google content of {sum(purged.values()):,} businesses; their place "
            "ids and their own websites' profiles are kept",
            soft_wrap=True,
        )
    else:
        console.print(
            f"nothing to purge{where}: no Google content is older than {CONTENT_DAYS} days",
            soft_wrap=True,
        )
    if policy == "refresh" and not args.dry_run:
        console.print(
            "Refreshes are bought by the scheduled run on the Places queue (`temporal "
            f"schedule trigger --schedule-id {RETENTION_SCHEDULE_ID}` starts one now); this "
            f"command purged what is past {CONTENT_DAYS} days.",
            soft_wrap=True,
        )
    elif plan.refresh:
        console.print(
            f"Refresh: {plan.refresh:,} businesses whose Google content is between "
            f"{REFRESH_AFTER_DAYS} and {CONTENT_DAYS} days old, one {plan.refresh_sku} each "
            f"(${plan.refresh_request_usd}): {_usd(plan.refresh_cost_usd)} at list price, "
            "within the run's RETENTION_BUDGET_USD.",
            soft_wrap=True,
        )
    if plan.recheck:
        console.print(
            f"Place ids last confirmed over {PLACE_ID_REFRESH_DAYS} days ago: "
            f"{plan.recheck:,}, re-checked by the run ({plan.recheck_sku}, free).",
            soft_wrap=True,
        )
    if args.dry_run:
        console.print("Dry run: nothing changed.", style="dim")


def _print_retention_plan(plan: RetentionPlan, where: str) -> None:
    from rich.table import Table

    table = Table(
        title=f"Retention{where} as of {plan.as_of:%Y-%m-%d %H:%M} UTC, "
        f"PLACES_CONTENT_POLICY={plan.policy}"
    )
    for column in (
        "state",
        "with Google content",
        f"over {CONTENT_DAYS} days",
        "purge",
        "refresh",
        "refresh cost",
        "re-check ids",
    ):
        table.add_column(column, justify="left" if column == "state" else "right")
    for s in plan.states:
        table.add_row(
            s.state_code or "unknown",
            f"{s.held:,}",
            f"{s.expiring:,}",
            f"{s.purge:,}",
            f"{s.refresh:,}",
            _usd(s.refresh_cost_usd),
            f"{s.recheck:,}",
        )
    table.add_row(
        "total",
        f"{plan.held:,}",
        f"{plan.expiring:,}",
        f"{plan.purge:,}",
        f"{plan.refresh:,}",
        _usd(plan.refresh_cost_usd),
        f"{plan.recheck:,}",
        style="bold",
    )
    console.print(table)
    explained = {
        "purge": f"Google content older than {CONTENT_DAYS} days is cleared; place ids and "
        "the businesses' own website profiles stay.",
        "refresh": f"content older than {REFRESH_AFTER_DAYS} days is bought again with Place "
        f"Details ({plan.refresh_sku}, ${plan.refresh_request_usd * 1000:,.2f} per 1,000 at "
        "list price, before Google's monthly free caps); businesses closed permanently are "
        f"purged at {CONTENT_DAYS} days instead.",
        "keep": "nothing is purged (acknowledged): the businesses over "
        f"{CONTENT_DAYS} days keep Google content longer than Google's terms allow.",
    }
    console.print(f"{plan.policy}: {explained[plan.policy]}", soft_wrap=True)


# --------------------------------------------------------------------------------------
# parsing and error handling
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # "rollout" when installed as the console script, "starter.py" from a checkout.
    prog = "rollout" if Path(sys.argv[0]).name == "rollout" else "starter.py"
    parser = OneLineArgumentParser(prog=prog, description="Statewide rollout operator CLI.")
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (default: LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)

    p = sub.add_parser("start", help="start a state rollout")
    p.add_argument("state", type=_state_arg, help="two-letter state code, e.g. TX")
    add_run_options(p)
    p.add_argument(
        "--priority", type=int, action="append", metavar="ID", help="community id to do first"
    )
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("failures", help="the failed communities of a state's last rollout")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser(
        "retry-failed", help="a new rollout of the failed communities of the last rollout"
    )
    p.add_argument("state", type=_state_arg)
    add_run_options(p)
    p.set_defaults(func=cmd_retry_failed)

    p = sub.add_parser("rerun", help="a new rollout of one community")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--community", type=int, required=True, metavar="ID", help="community id")
    add_run_options(p)
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("pause", help="pause a rollout (running communities finish)")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--reason", help="shown in progress and the Web UI")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="resume a paused rollout")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--budget", type=_budget_arg, help="raise the budget while resuming")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("cancel", help="cancel a rollout")
    p.add_argument("state", type=_state_arg)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("set-batch-size", help="change how many communities run at once")
    p.add_argument("state", type=_state_arg)
    p.add_argument("batch_size", type=_batch_size_arg)
    p.set_defaults(func=cmd_set_batch_size)

    p = sub.add_parser("progress", help="show a rollout's progress")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--watch", action="store_true", help="live progress until the rollout ends")
    p.add_argument("--json", action="store_true", help="the progress document as JSON")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("estimate", help="expected Places requests and cost, before spending")
    p.add_argument("state", type=_state_arg)
    p.add_argument(
        "--free-caps", action="store_true", help="also the price after the monthly free caps"
    )
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser(
        "reconcile",
        help="close rollouts whose workflow is gone (terminated, reset, lost) so they can restart",
    )
    p.add_argument("state", nargs="?", type=_state_arg, help="only this state (default: all)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "retention",
        help="purge Google content past its storage terms (PLACES_CONTENT_POLICY); "
        "--dry-run shows what a run would purge, refresh and spend",
    )
    p.add_argument("state", nargs="?", type=_state_arg, help="only this state (default: all)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument(
        "--as-of",
        type=_date_arg,
        metavar="YYYY-MM-DD",
        help="(with --dry-run) plan the run at the end of this day (UTC)",
    )
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("list", help="list state rollouts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("migrate", help="upgrade the database schema to the latest version")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "seed-communities", help="load US communities (GeoNames) and their primary regions"
    )
    p.add_argument("--state", type=_state_arg, help="only this state (two-letter code)")
    p.set_defaults(func=cmd_seed_communities)

    p = sub.add_parser("dev", help="run Postgres and the Temporal dev server (Web UI) until Ctrl-C")
    p.add_argument("--postgres-port", type=_port_arg, help="default STACK_POSTGRES_PORT or 55432")
    p.add_argument("--temporal-port", type=_port_arg, help="default STACK_TEMPORAL_PORT or 7233")
    p.add_argument("--ui-port", type=_port_arg, help="default STACK_UI_PORT or 8233")
    p.add_argument(
        "--placesim-port", type=_port_arg, help="emulator port (STACK_PLACESIM_PORT or 8765)"
    )
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser(
        "demo", help="start the embedded stack, roll out a small state with live progress, stop"
    )
    p.add_argument("state", nargs="?", type=_state_arg, default=DEMO_STATE, help="(default DE)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--communities",
        type=_positive_arg,
        metavar="N",
        help="only the state's N largest communities (a shorter demo)",
    )
    p.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    for option in ("--postgres-port", "--temporal-port", "--ui-port", "--placesim-port"):
        p.add_argument(option, type=_port_arg, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)
    return parser


def _fail(message: str, code: int = 1) -> int:
    err_console.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # name the setting, not a traceback
        return _fail(describe_settings_error(exc), 2)
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    func: Callable[[argparse.Namespace, Settings], None] = args.func
    try:
        with terminate_on_sigterm():
            func(args, settings)
    except KeyboardInterrupt:
        err_console.print("stopped", style="dim")
        return 130
    except control.InputError as exc:
        return _fail(str(exc), 2)
    except (
        CommandError,
        StackError,
        DatabaseUnavailableError,
        SchemaMissingError,
        control.ControlError,
    ) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except Exception as exc:
        if is_connection_error(exc):
            return _fail(str(unavailable(settings.database_url, exc)))
        raise
    return 0


def exit_now(code: int) -> NoReturn:
    """Leave without interpreter finalization once everything is done and flushed.

    The Temporal client's Rust threads can call into Python while the interpreter
    finalizes, which aborts a short-lived client process with "Fatal Python error:
    PyGILState_Release" (temporalio/sdk-python#300, open): a command that succeeded would
    exit with SIGABRT. Every resource of a command is closed by its own `with` blocks before
    main() returns, so skipping finalization loses nothing once the logs and streams are
    flushed.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cli() -> None:
    """`rollout`, the installed operator CLI: settings from the environment and the .env
    of the directory it is run in, where `dev` also keeps its .stack."""
    exit_now(main())


if __name__ == "__main__":
    # A source checkout, run from anywhere: the project root holds the .env file.
    os.chdir(Path(__file__).resolve().parent)
    exit_now(main())
