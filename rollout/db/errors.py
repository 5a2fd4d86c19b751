"""Turn connection failures into one line an operator can act on."""

from __future__ import annotations

import socket

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from rollout.db.session import describe_url


class DatabaseUnavailableError(RuntimeError):
    pass


# SQLSTATE classes of a server going away rather than of a statement's fault: 08
# (connection exception) and 57 (operator intervention: admin or crash shutdown, "cannot
# connect now" while it starts or stops).
_OUTAGE_SQLSTATE_CLASSES = ("08", "57")


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    # SQLAlchemy wraps asyncpg's error in an adapter error; the server's code is on either.
    for err in (cause, getattr(cause, "__cause__", None)):
        sqlstate = str(getattr(err, "sqlstate", "") or "")
        if sqlstate.startswith(_OUTAGE_SQLSTATE_CLASSES):
            return True
    return isinstance(
        cause,
        (
            OSError,
            socket.gaierror,
            TimeoutError,
            asyncpg.exceptions.InvalidCatalogNameError,
            asyncpg.exceptions.InvalidAuthorizationSpecificationError,
            asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
        ),
    )


def unavailable(database_url: str, exc: BaseException) -> DatabaseUnavailableError:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return DatabaseUnavailableError(
        f"cannot reach Postgres at {describe_url(database_url)}: {reason}"
    )
