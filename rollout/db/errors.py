"""Turn connection failures into one line an operator can act on."""

from __future__ import annotations

import socket

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from rollout.db.session import describe_url


class DatabaseUnavailableError(RuntimeError):
    pass


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        (
            OSError,
            socket.gaierror,
            TimeoutError,
            asyncpg.exceptions.InvalidCatalogNameError,
            asyncpg.exceptions.InvalidAuthorizationSpecificationError,
            asyncpg.exceptions.CannotConnectNowError,
        ),
    )


def unavailable(database_url: str, exc: BaseException) -> DatabaseUnavailableError:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return DatabaseUnavailableError(
        f"cannot reach Postgres at {describe_url(database_url)}: {reason}"
    )
