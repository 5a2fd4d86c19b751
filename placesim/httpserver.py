"""A small HTTP/1.1 server on asyncio streams: enough for httpx and scanners, no dependency.

Supports keep-alive connections (many at once, each served by its own task), Content-Length
request bodies (no chunked uploads: clients here never send them), HEAD, and two special
answers the emulator needs for fault injection: hang without answering, and reset the
connection (TCP RST).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
IDLE_TIMEOUT_S = 75.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    hang_s: float | None = None  # hang this long (or until the client leaves), never answer
    reset: bool = False  # abort the connection with a TCP reset, never answer


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.connections_accepted = 0
        self.requests_served = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def stats(self) -> dict[str, int]:
        return {
            "connections_accepted": self.connections_accepted,
            "connections_open": len(self._connections),
            "requests": self.requests_served,
        }

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_accepted += 1
        try:
            await self._connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request
        except asyncio.CancelledError:
            # Only close() cancels these tasks. Ending normally keeps asyncio's stream
            # callback from logging the cancellation as an error at shutdown.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # closed or idle between requests: the normal end of keep-alive
            except asyncio.LimitOverrunError:
                await self._write(writer, "GET", Response(431), keep_alive=False)
                return
            try:
                request, keep_alive = await self._parse(head, reader)
            except _BadRequestError as exc:
                log.debug("bad request: %s", exc)
                await self._write(writer, "GET", Response(exc.status), keep_alive=False)
                return
            self.requests_served += 1
            try:
                response = await self._handler(request)
            except Exception:
                log.exception("handler failed for %s %s", request.method, request.path)
                response = Response(500, b"internal error\n")
            if response.reset:
                _reset(writer)
                return
            if response.hang_s is not None:
                # Read until the client gives up (EOF) or the hang ends; answer nothing.
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.read(), response.hang_s)
                return
            await self._write(writer, request.method, response, keep_alive=keep_alive)
            if not keep_alive:
                return

    async def _parse(self, head: bytes, reader: asyncio.StreamReader) -> tuple[Request, bool]:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
            raise _BadRequestError(400, "undecodable head") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequestError(400, f"bad request line {lines[0]!r}")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequestError(400, f"bad header line {line!r}")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequestError(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequestError(400, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequestError(413, f"body of {length} bytes")
        body = await reader.readexactly(length) if length else b""
        split = urlsplit(target)
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        request = Request(
            method=method.upper(),
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        return request, keep_alive

    async def _write(
        self, writer: asyncio.StreamWriter, method: str, response: Response, *, keep_alive: bool
    ) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        names = {name.lower() for name, _ in response.headers}
        lines += [f"{name}: {value}" for name, value in response.headers]
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(response.body)}")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        lines.append("Server: placesim")
        lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD" and response.body:
            writer.write(response.body)
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN ("connection reset")."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
