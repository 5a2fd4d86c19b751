"""Engines and sessions.

One engine per process (a worker, the starter); one AsyncSession per unit of work, since a
session is not safe across concurrent tasks.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(database_url: str, *, pool_size: int = 5, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping`: test each connection as it leaves the pool (three round trips: BEGIN, a
    no-op, ROLLBACK). Without it a connection that a Postgres restart broke fails its
    statement instead; the error invalidates every pooled connection of that time, so only
    the statements already under way fail, each retried as a connection error."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        # Fail fast with a clear error rather than hang when the server is unreachable.
        connect_args={"timeout": 10},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def describe_url(database_url: str) -> str:
    """host:port/database of a URL, without user or password, for error messages."""
    url = make_url(database_url)
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
