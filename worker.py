"""The rollout worker: every task queue in one process.

    python worker.py        # uses TEMPORAL_ADDRESS, DATABASE_URL, PLACES_* from the environment

- `rollout`: the workflows, the bookkeeping activities and phases 2, 3, 5 and 6;
- `rollout-places-search-text`, `rollout-places-search-nearby`, `rollout-places-get-place`:
  one Places HTTP request per activity (phase 1's searches and purchases, phase 4's Place
  Details), on the queue of its API method, each rate limited server-side for the whole
  queue at 96.5% of its method's per-minute quota / 60 per second (see PLACES_QUOTA_SHARE),
  so any number of workers holds each method's quota;
- `rollout-places`: the queue all methods shared before, polled until the activities
  scheduled on it are done.

At start it creates the `places-retention` schedule (daily PlacesRetentionWorkflow) and the
`outbox-relay` schedule (OutboxRelayWorkflow every minute) unless they exist; one with
another spec or action is updated, paused or not as the operator left it.

SIGINT / SIGTERM stop polling, let running activities finish (graceful shutdown), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import metrics
from activities.billing import BillingLog
from activities.children import ChildWatchActivities
from activities.discovery import DiscoveryActivities
from activities.enrichment import EnrichmentActivities
from activities.news_sources import NewsSourceActivities
from activities.outages import OutageInterceptor, ServiceProbeActivities
from activities.outbox_relay import OutboxRelayActivities
from activities.records import RolloutRecordActivities
from activities.retention import RetentionActivities, RetentionRun
from activities.seeding import SeedingActivities
from activities.verification import VerificationActivities
from activities.website_scan import WebsiteScanActivities
from rollout.contract import (
    OUTBOX_RELAY_RUN_ID_PREFIX,
    OUTBOX_RELAY_SCHEDULE_ID,
    PLACES_TASK_QUEUE,
    PLACES_TASK_QUEUES,
    RETENTION_RUN_ID_PREFIX,
    RETENTION_SCHEDULE_ID,
    ROLLOUT_TASK_QUEUE,
    WorkflowType,
)
from rollout.db.session import create_engine, session_factory
from rollout.db.usage_spool import UsageSpool, flush_forever
from rollout.logsetup import configure_logging
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.events import sync_business_events
from rollout.phases.seeding.payloads import RelayRun
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.places.client import PlacesClient
from rollout.retention import CONTENT_DAYS
from rollout.settings import (
    WORKER_GRACEFUL_SHUTDOWN_S,
    Settings,
    describe_settings_error,
    get_settings,
)
from workflows.community_rollout import CommunityRolloutWorkflow
from workflows.discovery import CommunityDiscoveryWorkflow
from workflows.enrichment import CommunityEnrichmentWorkflow
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.retention import PlacesRetentionWorkflow
from workflows.state_rollout import StateRolloutWorkflow

log = logging.getLogger("worker")

WORKFLOWS = [
    StateRolloutWorkflow,
    CommunityRolloutWorkflow,
    CommunityDiscoveryWorkflow,
    CommunityEnrichmentWorkflow,
    PlacesRetentionWorkflow,
    OutboxRelayWorkflow,
]
GRACEFUL_SHUTDOWN = timedelta(seconds=WORKER_GRACEFUL_SHUTDOWN_S)


def sandbox_runner() -> SandboxedWorkflowRunner:
    # The rollout core's DTOs are deterministic; passing them (and the libraries some of
    # its modules import) through avoids re-importing them for every workflow run.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "rollout", "sqlalchemy", "httpx", "pydantic_settings"
        )
    )


def prometheus_config(bind_address: str) -> PrometheusConfig:
    """Prometheus's conventions, which Temporal's SDK dashboard queries: `_total` counters,
    durations in seconds with the unit in the name; the cost histogram bucketed by price."""
    return PrometheusConfig(
        bind_address=bind_address,
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
        histogram_bucket_overrides={metrics.COST_HISTOGRAM: metrics.cost_buckets()},
    )


async def connect(settings: Settings) -> Client:
    runtime = None
    if settings.metrics_port:
        # Metrics are configured on the runtime, before any client exists.
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=prometheus_config(f"{settings.metrics_bind}:{settings.metrics_port}")
            )
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )


# The retention run: daily at 03:00 UTC (an interval's offset counts from the Unix epoch,
# midnight UTC), a quiet hour for US rollouts. A run missed while Temporal was down is made
# up if it is back within a day; older misses are dropped, since the next run purges all
# they would have.
RETENTION_EVERY = timedelta(days=1)
RETENTION_HOUR_UTC = 3
# A run stuck longer than this is ended, so it cannot hold back (SKIP) the next day's.
RETENTION_RUN_TIMEOUT = timedelta(hours=12)


def retention_schedule() -> Schedule:
    """The `places-retention` schedule: PlacesRetentionWorkflow daily on `rollout`, a run
    skipped while the previous one still runs."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            PlacesRetentionWorkflow.run,
            RetentionRun(),
            id=RETENTION_RUN_ID_PREFIX,
            task_queue=ROLLOUT_TASK_QUEUE,
            execution_timeout=RETENTION_RUN_TIMEOUT,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(
                    every=RETENTION_EVERY, offset=timedelta(hours=RETENTION_HOUR_UTC)
                )
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=RETENTION_EVERY),
    )


def _schedule_shape(schedule: Schedule) -> tuple[object, ...]:
    """What the worker owns of a schedule: its timing, its action and its overlap policy
    (the server describes an interval without an offset as offset 0)."""
    action = schedule.action
    started = (
        (action.workflow, action.id, action.task_queue, action.execution_timeout)
        if isinstance(action, ScheduleActionStartWorkflow)
        else (type(action).__name__,)
    )
    intervals = tuple((i.every, i.offset or timedelta(0)) for i in schedule.spec.intervals)
    spec = schedule.spec
    return (
        intervals,
        tuple(spec.calendars),
        tuple(spec.cron_expressions),
        started,
        schedule.policy.overlap,
        schedule.policy.catchup_window,
    )


# The outbox relay: every minute, so an event waits about a minute at most once its
# backoff is over. A missed run is not made up (the next one delivers all it would have).
OUTBOX_RELAY_EVERY = timedelta(minutes=1)
# A run ends after RelayRun.max_batches; one stuck longer than this is ended, so it cannot
# hold back (SKIP) the runs after it.
OUTBOX_RELAY_RUN_TIMEOUT = timedelta(hours=1)


def relay_schedule() -> Schedule:
    """The `outbox-relay` schedule: OutboxRelayWorkflow every minute on `rollout`, a run
    skipped while the previous one still runs."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            OutboxRelayWorkflow.run,
            RelayRun(),
            id=OUTBOX_RELAY_RUN_ID_PREFIX,
            task_queue=ROLLOUT_TASK_QUEUE,
            execution_timeout=OUTBOX_RELAY_RUN_TIMEOUT,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=OUTBOX_RELAY_EVERY)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=OUTBOX_RELAY_EVERY
        ),
    )


async def ensure_schedule(client: Client, schedule_id: str, wanted: Schedule) -> str:
    """Create the schedule, or bring an existing one to `wanted`'s spec and action; safe
    with any number of workers starting at once. Returns what it did: created, updated or
    unchanged."""
    try:
        await client.create_schedule(schedule_id, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        outcome = "unchanged"

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
            nonlocal outcome
            existing = current.description.schedule
            if _schedule_shape(existing) == _schedule_shape(wanted):
                return None
            outcome = "updated"
            # The state is the operator's (paused, with a note): kept.
            return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=existing.state))

        await handle.update(update)
        return outcome


async def ensure_retention_schedule(client: Client) -> str:
    """The `places-retention` schedule, created or brought to this worker's spec."""
    outcome = await ensure_schedule(client, RETENTION_SCHEDULE_ID, retention_schedule())
    log.info(
        "schedule %s %s: %s daily at %02d:00 UTC",
        RETENTION_SCHEDULE_ID,
        outcome,
        WorkflowType.PLACES_RETENTION.value,
        RETENTION_HOUR_UTC,
    )
    return outcome


async def ensure_relay_schedule(client: Client) -> str:
    """The `outbox-relay` schedule, created or brought to this worker's spec."""
    outcome = await ensure_schedule(client, OUTBOX_RELAY_SCHEDULE_ID, relay_schedule())
    log.info(
        "schedule %s %s: %s every %s",
        OUTBOX_RELAY_SCHEDULE_ID,
        outcome,
        WorkflowType.OUTBOX_RELAY.value,
        OUTBOX_RELAY_EVERY,
    )
    return outcome


@dataclass
class Resources:
    """What the activities share: one engine, one Places client and one web fetcher per
    process (the fetcher's per-host limits and robots.txt cache span phases 2 and 3)."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    places: PlacesClient
    phase_settings: PhaseSettings
    fetcher: WebFetcher
    seeding: SeedingActivities
    billing: BillingLog


# Connections of one worker process: its Places activities (up to the SDK's 100 at once)
# hold one each only for a statement or two, so 20 (and as many more in a burst) keep up.
WORKER_POOL_SIZE = 20


def worker_engine(database_url: str) -> AsyncEngine:
    # No pre-ping: it tripled the round trips of a Places activity's one write (issue #16).
    # Every activity retries a connection error (a Postgres restart fails only the
    # statements under way), and a billed answer's log row goes to the spool meanwhile.
    return create_engine(database_url, pool_size=WORKER_POOL_SIZE, pre_ping=False)


# Places activities this worker runs at once on each places queue, and the most Places
# connections it keeps. Above the SDK's default of 100: a rollout keeps a batch of
# communities' search streams in flight (20 x 16 at most), and a task that finds no free
# slot waits in the server's backlog (written to its store and read back) instead of being
# handed to a waiting poll. The pool keeps the connections open between requests: with
# httpx's default of 20 kept, a busy worker closed and reopened one for most requests.
PLACES_CONCURRENCY = 320


def places_client(base_url: str, api_key: SecretStr) -> PlacesClient:
    limits = httpx.Limits(
        max_connections=PLACES_CONCURRENCY, max_keepalive_connections=PLACES_CONCURRENCY
    )
    return PlacesClient(base_url, api_key, transport=httpx.AsyncHTTPTransport(limits=limits))


@contextlib.asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = worker_engine(settings.database_url)
    sessions = session_factory(engine)
    places = places_client(settings.places_base_url, settings.places_api_key)
    phase_settings = settings.phases
    fetcher = WebFetcher(phase_settings)
    seeding = SeedingActivities(sessions, phase_settings)
    spool = UsageSpool(settings.usage_spool_path)
    spool_writer = asyncio.create_task(flush_forever(spool, sessions), name="usage spool")
    try:
        yield Resources(
            engine=engine,
            sessions=sessions,
            places=places,
            phase_settings=phase_settings,
            fetcher=fetcher,
            seeding=seeding,
            billing=BillingLog(sessions, spool),
        )
    finally:
        spool_writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await spool_writer
        with contextlib.suppress(Exception):  # a last chance; kept on disk otherwise
            await spool.flush(sessions)
        await seeding.aclose()
        await fetcher.aclose()
        await places.aclose()
        await engine.dispose()


# The share of a method's per-minute quota its queue dispatches. The server's limiter (a
# GCRA, service/matching's simpleLimiter) lets through a burst of one second's worth of
# tasks on top of its rate after any pause, so any 60 s hold at most 61 s of rate, plus
# one; and requests reach Google a little less evenly than the server dispatched them
# (database work before the request, a busy worker). At 96.5%, 61 s of rate is 98.1% of
# the quota, which leaves about a second of that jitter before a 429 (bench/places_quota.py
# on a loaded machine needs it), and a saturated queue still runs at 96.5%, above the 95%
# the rollout is held to. This holds only with ONE partition per
# places queue: each partition limits its own share and bursts on its own
# (devstack/embedded.py, deploy/dynamicconfig).
PLACES_QUOTA_SHARE = 0.965


def places_rate(places_qpm: int) -> float:
    """Activities per second on a places queue for a per-minute Places quota."""
    return places_qpm * PLACES_QUOTA_SHARE / 60


def places_queue_rates(settings: Settings) -> dict[str, float]:
    """Each places task queue's rate limit (activities per second) under `settings`. The
    queue all methods shared before takes the smallest method quota, as it did."""
    rates = {
        queue: places_rate(settings.places_qpm_of(method))
        for method, queue in PLACES_TASK_QUEUES.items()
    }
    rates[PLACES_TASK_QUEUE] = min(rates.values())
    return rates


def create_workers(client: Client, settings: Settings, res: Resources) -> list[Worker]:
    records = RolloutRecordActivities(res.sessions)
    discovery = DiscoveryActivities(res.sessions, res.places, settings.discovery, res.billing)
    scan = WebsiteScanActivities(res.sessions, res.phase_settings, res.fetcher)
    news = NewsSourceActivities(res.sessions, res.phase_settings, res.fetcher)
    enrichment = EnrichmentActivities(res.sessions, res.places, res.phase_settings, res.billing)
    verification = VerificationActivities(res.sessions, res.phase_settings, settings.discovery)
    retention = RetentionActivities(
        res.sessions,
        settings.places_content_policy,
        places=res.places,
        billing=res.billing,
        budget_usd=settings.retention_budget_usd,
        atmosphere=settings.discovery.atmosphere,
        on_changed=sync_business_events,
    )
    relay = OutboxRelayActivities(res.sessions, res.phase_settings, res.seeding.http)
    rollout_worker = Worker(
        client,
        task_queue=ROLLOUT_TASK_QUEUE,
        workflows=WORKFLOWS,
        activities=[
            records.initiate_rollout,
            records.load_community_page,
            records.set_rollout_status,
            records.finalize_rollout,
            records.begin_community,
            records.mark_phase,
            records.finish_community,
            records.close_silent_community,
            ChildWatchActivities(client).closed_children,
            discovery.discovery_plan,
            discovery.discovery_plan_purchases,
            discovery.discovery_cover_check,
            discovery.discovery_finish,
            scan.scan_websites,
            news.setup_news_sources,
            enrichment.targets,
            enrichment.finish,
            verification.verify,
            res.seeding.seed_platforms,
            retention.retention_purge,
            retention.retention_begin,
            retention.retention_purge_page,
            retention.retention_due,
            relay.relay_batch,
        ],
        workflow_runner=sandbox_runner(),
        # Eager execution would bypass task-queue rate limits; keep every activity on
        # the server's dispatch path.
        disable_eager_activity_execution=True,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=[OutageInterceptor()],
    )
    places_activities: list[Callable[..., Any]] = [
        discovery.places_search_page,
        discovery.places_buy,
        enrichment.places_enrich,
        retention.places_retention_request,
        ServiceProbeActivities(res.sessions, res.places).services_available,
    ]
    places_workers = [
        Worker(
            client,
            task_queue=queue,
            activities=places_activities,
            max_concurrent_activities=PLACES_CONCURRENCY,
            interceptors=[OutageInterceptor()],
            # The server enforces it for the whole queue, whichever worker polls: every
            # worker must be given the same quota.
            max_task_queue_activities_per_second=rate,
            disable_eager_activity_execution=True,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
        for queue, rate in places_queue_rates(settings).items()
    ]
    return [rollout_worker, *places_workers]


# The liveness file is touched this often while every worker runs; `--health` calls the
# worker dead when it is older than HEALTH_STALE_S (a stuck event loop, or a stopped worker).
HEALTH_EVERY_S = 10.0
HEALTH_STALE_S = 60.0


async def keep_alive(workers: Sequence[Worker], path: Path) -> None:
    while True:
        if all(w.is_running for w in workers):
            path.touch()  # noqa: ASYNC240 - a few bytes of metadata every ten seconds
        await asyncio.sleep(HEALTH_EVERY_S)


def healthy(path: Path, now: float | None = None) -> bool:
    """Whether a worker touched `path` lately (the container's HEALTHCHECK)."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= HEALTH_STALE_S


async def run_workers(
    workers: Sequence[Worker], stop: asyncio.Event, health_file: Path | None = None
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        log.info(
            "worker polling %s (pid %s)",
            ", ".join(w.task_queue for w in workers),
            os.getpid(),
        )
        # For supervisors (the embedded stack, tests): a file that says "polling now",
        # whatever the log level.
        ready_file = os.environ.get("WORKER_READY_FILE")
        if ready_file:
            Path(ready_file).write_text(str(os.getpid()))  # noqa: ASYNC240 - once, at start
        alive = asyncio.create_task(keep_alive(workers, health_file)) if health_file else None
        await stop.wait()
        if alive:
            alive.cancel()
        log.info("stopping: finishing running activities (up to %s)", GRACEFUL_SHUTDOWN)


async def main(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        sys.stderr.write(f"error: cannot reach Temporal at {settings.temporal_address}: {exc}\n")
        return 1
    await ensure_retention_schedule(client)
    await ensure_relay_schedule(client)
    log_content_policy(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with resources(settings) as res:
        await run_workers(create_workers(client, settings, res), stop, settings.worker_health_file)
    return 0


def log_content_policy(settings: Settings) -> None:
    """Said once at start: a policy other than the terms' letter is the owners' decision."""
    policy = settings.places_content_policy
    if policy == "refresh":
        log.warning(
            "PLACES_CONTENT_POLICY=refresh: the retention run buys Google content again before "
            "it is %d days old (up to $%s a run); whether refreshed content may be kept is a "
            "legal call for the owners, not the code's (docs/places.md, Storage terms)",
            CONTENT_DAYS,
            settings.retention_budget_usd,
        )
    elif policy == "keep":
        log.warning(
            "PLACES_CONTENT_POLICY=keep (acknowledged): Google content is kept past the %d "
            "days Google's terms allow",
            CONTENT_DAYS,
        )


def cli(argv: Sequence[str] | None = None) -> int:
    """`rollout-worker` / `python worker.py`; `--health` answers a container's HEALTHCHECK
    (exit 0 while this machine's worker has been running in the last minute)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--health"]:
        return 0 if healthy(get_settings().worker_health_file) else 1
    if args:
        usage = (
            "usage: rollout-worker [--health]\n"
            "  runs the rollout worker on every task queue (settings from the environment "
            "and ./.env); --health: exit 0 if it is running\n"
        )
        asked = args in (["-h"], ["--help"])
        (sys.stdout if asked else sys.stderr).write(usage)
        return 0 if asked else 2
    try:
        settings = get_settings()
    except ValidationError as exc:  # one line naming the setting, not a traceback
        sys.stderr.write(f"error: {describe_settings_error(exc)}\n")
        return 2
    return asyncio.run(main(settings))


if __name__ == "__main__":
    sys.exit(cli())
