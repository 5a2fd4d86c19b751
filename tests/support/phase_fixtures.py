"""Shared helpers of the phase 2-6 tests: a scriptable HTTP server and database seeding.

`SiteServer` is a small asyncio HTTP/1.1 server bound to 127.0.0.1 (or another loopback
address) on a free port. Each path has a handler, so a test states exactly how a site
misbehaves: slow, dripping, broken mid-answer, redirect loops, huge bodies, redirects to
private addresses. It records every request and the peak concurrency per Host.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rollout.communities import load_communities, seed_communities
from rollout.db.models import (
    Business,
    BusinessRegion,
    CommunityRegion,
    CommunityRollout,
    Region,
    StateRollout,
)
from rollout.db.session import session_factory
from rollout.payloads import PhaseInput
from rollout.phase_settings import PhaseSettings
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.phases.website_scan.ssrf import AddressPolicy, IPAddress

# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def host(self) -> str:
        return self.headers.get("host", "").rsplit(":", 1)[0]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def head(status: int, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def page(
    body: str | bytes, status: int = 200, content_type: str = "text/html; charset=utf-8"
) -> Handler:
    data = body.encode() if isinstance(body, str) else body

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, {"Content-Type": content_type}, len(data)) + data)

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, {"Location": location}, 0))

    return handler


def slow(delay_s: float, then: Handler) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay_s)
        await then(request, writer)

    return handler


def drip(total_bytes: int, every_s: float) -> Handler:
    """Headers at once, then one byte per tick: each read is quick, the whole never ends."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, {"Content-Type": "text/html"}, total_bytes))
        for _ in range(total_bytes):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(every_s)

    return handler


def huge(total_bytes: int, chunk: int = 64 * 1024) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, {"Content-Type": "text/html"}, total_bytes))
        writer.write(b"<html><head><title>Huge</title></head><body>")
        sent = 0
        block = b"<p>" + b"a" * (chunk - 7) + b"</p>"
        with contextlib.suppress(ConnectionError):
            while sent < total_bytes:
                writer.write(block)
                await writer.drain()
                sent += len(block)

    return handler


def broken() -> Handler:
    """Promises a body, sends half a status line's worth of junk and hangs up."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<html><ti")

    return handler


def garbage() -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\x01 this is not HTTP at all\r\n\r\n")

    return handler


@dataclass
class SiteServer:
    host: str = "127.0.0.1"
    routes: dict[str, Handler] = field(default_factory=dict)
    default: Handler | None = None
    latency_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    active: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> SiteServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.target == path or r.path == path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        counted: str | None = None
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            request = Request(method, target, headers, body)
            self.requests.append(request)
            counted = request.host
            self.active[counted] += 1
            self.peak[counted] = max(self.peak[counted], self.active[counted])
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            handler = self.routes.get(target) or self.routes.get(request.path) or self.default
            if handler is None:
                handler = page("<h1>not found</h1>", 404)
            await handler(request, writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:
            # Stopping the server cancels slow handlers. Python 3.11's stream callback calls
            # task.exception() on a cancelled task and logs an error, so end normally.
            pass
        finally:
            if counted is not None:
                self.active[counted] -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)


class NoDns:
    """A resolver that knows no name: tests never send a DNS query off this machine."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        raise OSError(f"no DNS in tests ({host})")


def fetcher_for(settings: PhaseSettings) -> WebFetcher:
    policy = AddressPolicy(
        settings.scan_allow_hosts, allowed_ports=settings.scan_allowed_ports, resolver=NoDns()
    )
    return WebFetcher(settings, policy=policy)


# --------------------------------------------------------------------------------------
# Sites with something to find
# --------------------------------------------------------------------------------------


def rss(title: str, link: str, items: int = 3) -> str:
    entries = "".join(
        f"<item><title>Story {i}</title><link>{link}/story-{i}</link></item>" for i in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
        f"<link>{link}</link>{entries}</channel></rss>"
    )


def atom(title: str, link: str, entries: int = 2) -> str:
    body = "".join(
        f'<entry><title>Post {i}</title><link href="{link}/post-{i}"/><id>p{i}</id></entry>'
        for i in range(entries)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>{title}</title><link href="{link}"/>{body}</feed>'
    )


def ical(name: str, events: int = 2) -> str:
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:e{i}\r\nSUMMARY:Event {i}\r\nDTSTART:2026120{i + 1}T180000Z\r\n"
        "END:VEVENT\r\n"
        for i in range(events)
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-CALNAME:{name}\r\n{body}END:VCALENDAR\r\n"


def homepage(title: str, head_extra: str = "", body: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head_extra}</head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


# --------------------------------------------------------------------------------------
# Database seeding
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    rollout_id: int
    community_rollout_id: int
    community_id: int
    region_id: int
    latitude: float
    longitude: float
    radius_m: int

    def phase_input(self, **overrides: object) -> PhaseInput:
        data: dict[str, object] = {
            "rollout_id": self.rollout_id,
            "community_rollout_id": self.community_rollout_id,
            "community_id": self.community_id,
            "state_code": "DE",
            "throttle_ms": 0,
        }
        data.update(overrides)
        return PhaseInput.model_validate(data)


async def seed_rollout(engine: AsyncEngine, community_name: str = "Dover") -> Seeded:
    """Delaware's communities, a state rollout and one community rollout row."""
    sessions = session_factory(engine)
    records = load_communities("DE")
    community = next(r for r in records if r.name == community_name)
    async with sessions.begin() as session:
        await seed_communities(session, records)
        rollout = StateRollout(
            state_code="DE",
            state_name="Delaware",
            status="in_progress",
            workflow_id="state-rollout-DE",
            total_communities=1,
        )
        session.add(rollout)
        await session.flush()
        cr = CommunityRollout(
            state_rollout_id=rollout.id,
            community_id=community.id,
            position=1,
            status="processing",
        )
        session.add(cr)
        await session.flush()
        region = (
            await session.execute(
                select(Region)
                .join(CommunityRegion, CommunityRegion.region_id == Region.id)
                .where(CommunityRegion.community_id == community.id)
            )
        ).scalar_one()
        return Seeded(
            engine=engine,
            sessions=sessions,
            rollout_id=rollout.id,
            community_rollout_id=cr.id,
            community_id=community.id,
            region_id=region.id,
            latitude=region.center_latitude,
            longitude=region.center_longitude,
            radius_m=region.radius_m,
        )


async def add_business(
    seeded: Seeded,
    place_id: str,
    name: str | None,
    *,
    website: str | None = None,
    address: str | None = "1 Main St, Dover, DE 19901, USA",
    offset_m: tuple[float, float] = (0.0, 0.0),
    primary_type: str | None = "restaurant",
    types: list[str] | None = None,
    business_status: str | None = "OPERATIONAL",
    phone: str | None = None,
    enriched_at: dt.datetime | None = None,
    link_region: bool = True,
    located: bool = True,
) -> int:
    """A business `offset_m` (north, east) metres from the community's centre."""
    north, east = offset_m
    lat = seeded.latitude + north / 111_320
    lng = seeded.longitude + east / (111_320 * 0.7795)  # cos(38.9 deg), Delaware
    async with seeded.sessions.begin() as session:
        business_id = (
            await session.execute(
                insert(Business)
                .values(
                    place_id=place_id,
                    community_id=seeded.community_id,
                    name=name,
                    formatted_address=address,
                    latitude=lat if located else None,
                    longitude=lng if located else None,
                    primary_type=primary_type,
                    types=types if types is not None else ([primary_type] if primary_type else []),
                    business_status=business_status,
                    website_uri=website,
                    national_phone_number=phone,
                    rating=Decimal("4.5"),
                    enriched_at=enriched_at,
                )
                .returning(Business.id)
            )
        ).scalar_one()
        if link_region:
            await session.execute(
                insert(BusinessRegion).values(business_id=business_id, region_id=seeded.region_id)
            )
    return business_id
