"""The outbox relay on the real stack: OutboxRelayWorkflow on the session's Temporal dev
server (a worker of the test's own, on a task queue of its own), real Postgres, and a real
HTTP receiver that checks signatures, applies events in version order and each event id
once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer, Worker

from activities.outbox_relay import OutboxRelayActivities
from activities.seeding import SeedingActivities
from devstack.embedded import EmbeddedStack
from rollout.db.models import Business, PlatformOutbox
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.events import sync_business_events
from rollout.phases.seeding.payloads import RelayCounts, RelayRun
from rollout.phases.seeding.relay import claim_due
from rollout.phases.seeding.webhooks import (
    DELIVERY_HEADER,
    REPLAY_WINDOW_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Claim,
    WebhookSender,
    sign,
)
from tests.conftest import PROJECT_ROOT
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout
from tests.support.platform_receiver import PlatformReceiver, platform_receiver
from worker import WORKFLOWS, sandbox_runner
from workflows.outbox_relay import OutboxRelayWorkflow

SECRET = "relay-secret-for-tests"
# Short waits, so a row is due again within a test; the schedule's runs use the defaults.
QUICK = RelayRun(batch_size=4, backoff_initial_s=0.2, backoff_maximum_s=1.0)
HISTORIES = PROJECT_ROOT / "tests" / "workflows" / "histories"


@asynccontextmanager
async def relay(
    stack: EmbeddedStack, seeded: Seeded, settings: PhaseSettings
) -> AsyncIterator[tuple[Client, str]]:
    """A worker running OutboxRelayWorkflow and its activity on a task queue of its own."""
    client = await Client.connect(
        stack.temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    queue = f"relay-test-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        activities = OutboxRelayActivities(seeded.sessions, settings, http)
        async with Worker(
            client,
            task_queue=queue,
            workflows=[OutboxRelayWorkflow],
            activities=[activities.relay_batch],
            workflow_runner=sandbox_runner(),
        ):
            yield client, queue


async def run_relay(client: Client, queue: str, inp: RelayRun = QUICK) -> tuple[RelayCounts, str]:
    workflow_id = f"outbox-relay-test-{uuid.uuid4().hex[:8]}"
    counts = await client.execute_workflow(
        OutboxRelayWorkflow.run,
        inp,
        id=workflow_id,
        task_queue=queue,
        execution_timeout=dt.timedelta(minutes=2),
    )
    return counts, workflow_id


async def relay_until(
    client: Client, queue: str, done: Callable[[], bool], *, within: float = 60, what: str
) -> None:
    """Relay runs (as the schedule starts them, back to back) until `done()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, f"timed out: {what}"
        await run_relay(client, queue)


async def outbox(seeded: Seeded) -> dict[int, PlatformOutbox]:
    async with seeded.sessions() as session:
        return {r.id: r for r in (await session.scalars(select(PlatformOutbox))).all()}


async def seed_and_phase6(seeded: Seeded) -> dict[str, int]:
    """Three businesses seeded by phase 6 without webhooks: their rows stay pending for the
    relay (the platforms' fast path is tested in test_seeding.py)."""
    ids = {
        "cafe": await add_business(seeded, "p-cafe", "Cafe", phone="(302) 555-0100"),
        "books": await add_business(seeded, "p-books", "Books", website="http://b.example/"),
        "deli": await add_business(seeded, "p-deli", "Deli"),
    }
    acts = SeedingActivities(seeded.sessions, PhaseSettings())
    try:
        await ActivityEnvironment().run(acts.seed_platforms, seeded.phase_input())
    finally:
        await acts.aclose()
    return ids


def webhook_settings(receiver: PlatformReceiver) -> PhaseSettings:
    return PhaseSettings(
        platform_webhook_urls=receiver.urls(),
        platform_webhook_secret=SecretStr(SECRET),
        platform_webhook_max_attempts=5,
    )


async def test_relay_redelivers_after_an_outage_and_applies_each_event_once(
    stack: EmbeddedStack, engine: AsyncEngine
) -> None:
    seeded = await seed_rollout(engine)
    ids = await seed_and_phase6(seeded)
    rows = await outbox(seeded)
    assert len(rows) == 3 + 3 + 2  # the cafe and the books shop have a CRM contact
    async with (
        platform_receiver(SECRET) as receiver,
        relay(stack, seeded, webhook_settings(receiver)) as (client, queue),
    ):
        # The platforms are down: every row is tried once, then backs off. (Two batches
        # take the eight rows never tried, which come first; a third could find the first
        # batch's rows due again already.)
        receiver.outage = True
        one_pass = QUICK.model_copy(update={"max_batches": 2})
        counts, outage_run = await run_relay(client, queue, one_pass)
        assert counts == RelayCounts(batches=2, claimed=8, retrying=8)
        backing_off = await outbox(seeded)
        assert {(r.status, r.attempts) for r in backing_off.values()} == {("pending", 1)}
        assert all(r.next_attempt_at is not None for r in backing_off.values())
        assert all(r.claimed_until is None for r in backing_off.values())
        assert receiver.applied == []

        # They are back: the next runs deliver every row once its backoff has passed.
        receiver.outage = False
        await relay_until(
            client, queue, lambda: len(receiver.applied) == 8, what="every event delivered"
        )
        delivered = await outbox(seeded)
        assert {r.status for r in delivered.values()} == {"delivered"}
        assert sorted(a["delivery_id"] for a in receiver.applied) == sorted(
            f"{row_id}.1" for row_id in rows
        )
        assert set(receiver.applications.values()) == {1}
        assert all(receiver.requests[f"{row_id}.1"] >= 2 for row_id in rows)  # 503, then 200
        assert receiver.bad_signatures == 0

        # A lease that lapsed while a post was under way: the row is posted again, and the
        # receiver's de-duplication by event id makes it harmless.
        repeat = next(iter(rows))
        async with seeded.sessions.begin() as session:
            await session.execute(
                update(PlatformOutbox)
                .where(PlatformOutbox.id == repeat)
                .values(status="pending", next_attempt_at=None)
            )
        counts, _ = await run_relay(client, queue)
        assert (counts.claimed, counts.delivered) == (1, 1)
        assert receiver.duplicates == 1
        assert receiver.applications[f"{repeat}.1"] == 1
        assert len(receiver.applied) == 8

        # An update: the cafe's phone changed, its three rows go out at version 2.
        async with seeded.sessions.begin() as session:
            await session.execute(
                update(Business)
                .where(Business.id == ids["cafe"])
                .values(national_phone_number="(302) 555-0199")
            )
            changed = await sync_business_events(session, list(ids.values()))
        assert (changed.updates, changed.tombstones, changed.unchanged) == (3, 0, 5)
        counts, _ = await run_relay(client, queue)
        assert (counts.claimed, counts.delivered) == (3, 3)
        cafe = {k: v for k, v in receiver.entities.items() if k[2] == ids["cafe"]}
        assert len(cafe) == 3
        assert {(a.version, a.event, a.payload["phone"]) for a in cafe.values()} == {
            (2, "upsert", "(302) 555-0199")
        }

        # A tombstone: the deli closed for good. Sent once, whatever runs after.
        async with seeded.sessions.begin() as session:
            await session.execute(
                update(Business)
                .where(Business.id == ids["deli"])
                .values(closed_at=func.now(), closed_reason="closed_permanently")
            )
            closed = await sync_business_events(session, [ids["deli"]])
        assert closed.tombstones == 2
        await run_relay(client, queue)
        async with seeded.sessions.begin() as session:
            assert (await sync_business_events(session, [ids["deli"]])).tombstones == 0
        counts, _ = await run_relay(client, queue)
        assert counts.claimed == 0
        deli = [a for k, a in receiver.entities.items() if k[2] == ids["deli"]]
        assert {(a.version, a.event, a.payload["reason"]) for a in deli} == {
            (2, "tombstone", "closed")
        }
        assert set(receiver.applications.values()) == {1}

        # Events of one entity out of order (a retry of version 1 held up past version 2):
        # the older one is answered but not applied.
        sender = WebhookSender(httpx.AsyncClient(), webhook_settings(receiver))
        url = receiver.urls()["crm"]
        try:
            for version in (2, 1):
                event = Claim(999, "crm", "business", 424242, "upsert", version, {"v": version}, 0)
                assert (await sender.post(event, url))[0] is None
        finally:
            await sender.client.aclose()
        assert receiver.stale == 1
        assert receiver.entities[("crm", "business", 424242)].payload == {"v": 2}

        # The outage run's history replays against today's code; RECORD_HISTORIES=1 keeps
        # it for tests/workflows/test_replay.py.
        history = await client.get_workflow_handle(outage_run).fetch_history()
        await Replayer(
            workflows=WORKFLOWS,
            data_converter=pydantic_data_converter,
            workflow_runner=sandbox_runner(),
        ).replay_workflow(history)
        if os.environ.get("RECORD_HISTORIES") == "1":
            target = HISTORIES / "OutboxRelayWorkflow__outage.json"
            target.write_text(
                json.dumps({"workflow_id": outage_run, "history": history.to_json_dict()})
            )


async def test_claims_are_disjoint_and_wait_for_their_backoff(engine: AsyncEngine) -> None:
    seeded = await seed_rollout(engine)
    await seed_and_phase6(seeded)
    platforms = ["downtownguide", "alphasite", "crm", "goeventcity"]
    # Two relays at once: the first holds its rows (FOR UPDATE, then the lease), the
    # second takes the others.
    async with seeded.sessions.begin() as first, seeded.sessions.begin() as second:
        mine = await claim_due(first, platforms, 3)
        theirs = await claim_due(second, platforms, 100)
    assert len(mine) == 3
    assert len(theirs) == 5
    assert not {c.id for c in mine} & {c.id for c in theirs}
    # Leased: nothing is due until a lease lapses.
    async with seeded.sessions.begin() as session:
        assert await claim_due(session, platforms, 100) == []

    # A row backing off is not due before its time, and is once it has come.
    async with seeded.sessions.begin() as session:
        await session.execute(
            update(PlatformOutbox).values(
                claimed_until=None, next_attempt_at=func.now() + dt.timedelta(hours=1)
            )
        )
        assert await claim_due(session, platforms, 100) == []
        await session.execute(
            update(PlatformOutbox)
            .where(PlatformOutbox.id == mine[0].id)
            .values(next_attempt_at=func.now() - dt.timedelta(seconds=1), status="failed")
        )
        due = await claim_due(session, platforms, 100)
    assert [c.id for c in due] == [mine[0].id]
    # Rows of platforms without a webhook are left to be pulled.
    async with seeded.sessions.begin() as session:
        await session.execute(
            update(PlatformOutbox).values(claimed_until=None, next_attempt_at=None)
        )
        assert {c.platform for c in await claim_due(session, ["crm"], 100)} == {"crm"}


async def test_the_receiver_refuses_bad_signatures_and_replays() -> None:
    """What every platform is asked to do, over real HTTP: a request signed with another
    secret, or a captured one sent again outside the replay window, is refused (401) and
    applies nothing."""
    async with platform_receiver(SECRET) as receiver:
        event = Claim(7, "crm", "business", 1, "upsert", 1, {"name": "x"}, 0)
        body = event.body()
        url = receiver.urls()["crm"]
        now = int(time.time())

        async def post(secret: str, stamp: int) -> int:
            headers = {
                SIGNATURE_HEADER: sign(secret.encode(), stamp, body),
                TIMESTAMP_HEADER: str(stamp),
                DELIVERY_HEADER: event.event_id,
            }
            async with httpx.AsyncClient() as http:
                return (await http.post(url, content=body, headers=headers)).status_code

        assert await post("another-secret", now) == 401
        assert await post(SECRET, now - REPLAY_WINDOW_S - 60) == 401
        assert await post(SECRET, now + REPLAY_WINDOW_S + 60) == 401
        assert receiver.bad_signatures == 3
        assert receiver.applied == []
        assert await post(SECRET, now) == 200
        assert [a["delivery_id"] for a in receiver.applied] == ["7.1"]
