"""Operator CLI for statewide rollouts.

    python starter.py dev                      # Postgres + Temporal (Web UI) in the foreground
    python starter.py migrate                  # bring the database schema to the latest version
    python starter.py seed-communities [--state TX]

Every error is one line on stderr and a non-zero exit; nothing is changed on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console
from temporalio.client import Client

from cli import control
from cli.devstack import start_emulator, start_worker, worker_environment
from rollout.communities import SchemaMissingError, seed_from_data_file
from rollout.db.errors import DatabaseUnavailableError, is_connection_error, unavailable
from rollout.dto import ProgressDocument, RolloutSettings
from rollout.logsetup import configure_logging
from rollout.settings import Settings, get_settings
from rollout.stack import EmbeddedStack, StackConfig, StackError, terminate_on_sigterm
from rollout.states import STATE_NAMES, UnknownStateError, normalize_state_code

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


def cmd_dev(args: argparse.Namespace, settings: Settings) -> None:
    overrides: dict[str, object] = {}
    if args.postgres_port:
        overrides["postgres_port"] = args.postgres_port
    if args.temporal_port:
        overrides["temporal_port"] = args.temporal_port
    if args.ui_port:
        overrides["ui_port"] = args.ui_port
    config = StackConfig.from_settings(settings, **overrides)

    with EmbeddedStack(config) as stack:
        migrate(stack.database_url)
        result = asyncio.run(seed_from_data_file(stack.database_url))
        # Nobody pays for a dev stack: the emulator answers unless PLACES_BASE_URL was set.
        places_url = None
        if "places_base_url" not in settings.model_fields_set:
            places_url = start_emulator(stack, args.placesim_port or settings.stack_placesim_port)
        start_worker(stack, worker_environment(stack, settings, places_url, {}))
        _print_stack(stack, result.communities, places_url or settings.places_base_url)
        # Serve until Ctrl-C / SIGTERM; a service that dies takes the whole stack down.
        while True:
            for process in filter(None, [stack.temporal.process, *stack.extra]):
                if not process.running():
                    raise CommandError(str(process.failure()).splitlines()[0])
            if stack.postgres and stack.postgres.process and not stack.postgres.process.running():
                raise CommandError(str(stack.postgres.process.failure()).splitlines()[0])
            time.sleep(1)


def _print_stack(stack: EmbeddedStack, communities: int, places_url: str) -> None:
    pg = "external (DATABASE_URL)" if stack.config.external_database_url else "embedded"
    console.print("[bold green]statewide rollout dev stack is up[/]")
    console.print(f"  Temporal   {stack.temporal_address}  (namespace {stack.config.namespace})")
    console.print(f"  Web UI     {stack.ui_url}")
    console.print(f"  Postgres   {pg}: {stack.database_url}")
    console.print(f"  Places     {places_url}")
    console.print("  Worker     both task queues (rollout, rollout-places)")
    console.print(f"  Data       {communities:,} communities seeded; logs in {stack.log_dir}")
    console.print("In another shell:")
    for key, value in stack.environment().items():
        console.print(f"  export {key}={value}")
    console.print("  python starter.py start DE && python starter.py progress DE --watch")
    console.print(f"  pids: {' '.join(map(str, stack.pids()))}")
    console.print("Press Ctrl-C to stop everything.", style="dim")


def _budget_arg(value: str) -> Decimal:
    try:
        budget = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"budget {value!r} is not a number") from None
    if not budget.is_finite() or budget <= 0:
        raise argparse.ArgumentTypeError(f"budget {value} must be a positive amount of USD")
    return budget


def cmd_start(args: argparse.Namespace, settings: Settings) -> None:
    rollout = RolloutSettings(
        batch_size=args.batch_size,
        throttle_ms=args.throttle_ms,
        skip_enrichment=args.skip_enrichment,
        priority_communities=args.priority or [],
        budget_usd=args.budget,
    )

    control.check_input(args.state, rollout, initiated_by=getpass.getuser())

    async def go() -> str:
        client = await control.connect(settings)
        handle = await control.start(
            client, settings, args.state, rollout, initiated_by=getpass.getuser()
        )
        return handle.id

    workflow_id = asyncio.run(go())
    console.print(f"started {workflow_id} ({STATE_NAMES[args.state]})")
    console.print(f"  watch:   python starter.py progress {args.state} --watch")
    console.print(f"  pause:   python starter.py pause {args.state} --reason TEXT")
    console.print(
        f"  temporal workflow query -w {workflow_id} --name progress   "
        f"(Web UI: search RolloutStateCode='{args.state}')"
    )


def cmd_pause(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> None:
        client = await control.connect(settings)
        await control.pause(client, args.state, args.reason)

    asyncio.run(go())
    console.print(f"pause sent to {args.state}: running communities finish, no new ones start")


def cmd_resume(args: argparse.Namespace, settings: Settings) -> None:
    async def go() -> None:
        client = await control.connect(settings)
        await control.resume(client, args.state, args.budget)

    asyncio.run(go())
    console.print(f"resume sent to {args.state}")


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
    async def go() -> None:
        client = await control.connect(settings)
        await control.set_batch_size(client, args.state, args.batch_size)

    asyncio.run(go())
    console.print(f"batch size of {args.state} set to {args.batch_size}")


def cmd_progress(args: argparse.Namespace, settings: Settings) -> None:
    from rich.live import Live

    from cli.render import progress_view

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
        with Live(progress_view(document), console=console, refresh_per_second=4) as live:
            while document.rollout.status.value in ("planned", "in_progress", "paused"):
                await asyncio.sleep(args.interval)
                document = await once(client)
                live.update(progress_view(document))

    asyncio.run(go())


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


# --------------------------------------------------------------------------------------
# parsing and error handling
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="starter.py", description="Statewide rollout operator CLI.")
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (default: LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)

    p = sub.add_parser("start", help="start a state rollout")
    p.add_argument("state", type=_state_arg, help="two-letter state code, e.g. TX")
    p.add_argument("--batch-size", type=int, default=5, help="children at once, 1-200 (5)")
    p.add_argument(
        "--throttle-ms", type=int, default=100, help="pause after each Places request (100)"
    )
    p.add_argument("--skip-enrichment", action="store_true", help="skip phase 4 (Pro enrichment)")
    p.add_argument(
        "--priority", type=int, action="append", metavar="ID", help="community id to do first"
    )
    p.add_argument("--budget", type=_budget_arg, help="pause before spending more than USD")
    p.set_defaults(func=cmd_start)

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
    p.add_argument("batch_size", type=int)
    p.set_defaults(func=cmd_set_batch_size)

    p = sub.add_parser("progress", help="show a rollout's progress")
    p.add_argument("state", type=_state_arg)
    p.add_argument("--watch", action="store_true", help="live progress until the rollout ends")
    p.add_argument("--json", action="store_true", help="the progress document as JSON")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_progress)

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
        problem = exc.errors()[0]
        name = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")
        return _fail(f"invalid {name}: {message}", 2)
    configure_logging(args.log_level or settings.log_level)
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


if __name__ == "__main__":
    # Run from anywhere: the project root holds the packages and the .env file.
    os.chdir(Path(__file__).resolve().parent)
    sys.exit(main())
