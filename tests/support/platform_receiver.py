"""A downstream platform's webhook endpoint, as the contract asks platforms to build it: a
real HTTP server on 127.0.0.1 (tests/support/phase_fixtures.SiteServer) that

- refuses a request whose signature does not match or whose timestamp is outside the replay
  window (401);
- applies each event id ("<outbox id>.<version>") at most once: a repeat is answered 200
  and not applied again;
- applies an entity's events in version order: an event older than the one applied is
  answered 200 and ignored;
- answers each platform's path as told: `ok`, `down` (503), `reject` (400) or `flaky`
  (503 the first time it sees an event id, then as `ok`); `outage` makes every path 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from rollout.phases.seeding.webhooks import (
    DELIVERY_HEADER,
    REPLAY_WINDOW_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from rollout.status import Platform
from tests.support.phase_fixtures import Request, SiteServer, head

Behaviour = Literal["ok", "down", "reject", "flaky"]
Entity = tuple[str, str, int]  # platform, entity type, entity id


@dataclass(frozen=True, slots=True)
class Applied:
    event_id: str
    version: int
    event: str
    payload: dict[str, Any]


class PlatformReceiver:
    def __init__(self, server: SiteServer, secret: str) -> None:
        self.server = server
        self.secret = secret.encode()
        self.behaviour: dict[str, Behaviour] = {p.value: "ok" for p in Platform}
        self.outage = False
        # The state each entity is in, as the platform would show it.
        self.entities: dict[Entity, Applied] = {}
        # Every event applied, in the order applied (an event id appears at most once).
        self.applied: list[dict[str, Any]] = []
        self.applications: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.duplicates = 0
        self.stale = 0
        self.bad_signatures = 0
        for platform in Platform:
            server.route(self.path(platform), self._handle)

    @staticmethod
    def path(platform: Platform) -> str:
        return f"/{platform.value}"

    def urls(self) -> dict[str, str]:
        """PLATFORM_WEBHOOK_URLS for every platform."""
        return {p.value: self.server.url(self.path(p)) for p in Platform}

    async def wait_for(self, predicate: Any, *, within: float = 60, what: str = "") -> None:
        """Until `predicate()` holds; fails after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            assert loop.time() < deadline, f"timed out waiting for {what or predicate}"
            await asyncio.sleep(0.05)

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(self._status(request), {}, 0))

    def _status(self, request: Request) -> int:
        if not verify_signature(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER.lower(), ""),
            request.body,
            request.headers.get(SIGNATURE_HEADER.lower(), ""),
            window_s=REPLAY_WINDOW_S,
        ):
            self.bad_signatures += 1
            return 401
        event_id = request.headers.get(DELIVERY_HEADER.lower(), "")
        self.requests[event_id] += 1
        behaviour = self.behaviour[request.path.lstrip("/")]
        if self.outage or behaviour == "down":
            return 503
        if behaviour == "reject":
            return 400
        if behaviour == "flaky" and self.requests[event_id] == 1:
            return 503
        envelope = json.loads(request.body)
        if envelope["delivery_id"] != event_id:
            return 400
        if self.applications[event_id]:
            self.duplicates += 1
            return 200
        entity: Entity = (envelope["platform"], envelope["entity_type"], envelope["entity_id"])
        current = self.entities.get(entity)
        if current is not None and envelope["version"] <= current.version:
            self.stale += 1
            return 200
        self.entities[entity] = Applied(
            event_id, envelope["version"], envelope["event"], envelope["payload"]
        )
        self.applications[event_id] += 1
        self.applied.append(envelope)
        return 200


@contextlib.asynccontextmanager
async def platform_receiver(secret: str) -> AsyncIterator[PlatformReceiver]:
    async with SiteServer() as server:
        yield PlatformReceiver(server, secret)
