"""Server-side request forgery guard for fetching business websites.

Business websites come from a third party (Places data) and from the sites themselves
(redirects, links), so any URL may point at this machine, the private network or a cloud
metadata service. The guard works at two levels:

- `AddressPolicy.check_url` refuses what is wrong before any lookup: schemes other than
  http(s), credentials in the URL, unusual ports, metadata host names.
- `GuardedBackend` is the httpcore network backend of the scanner's httpx client. Every TCP
  connection, including each redirect hop and every robots.txt or feed request, goes through
  `connect_tcp`, which resolves the host itself, refuses the connection if ANY resolved address
  is private, loopback, link-local, multicast, reserved, unspecified, not globally routable or
  a known metadata address, and then connects to the vetted address (not the name), so a DNS
  answer that changes between the check and the connect (rebinding) cannot slip through.

The only exception is an explicit allow-list (SCAN_ALLOW_HOSTS): the emulator's host:port in
tests, demos and benchmarks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata and platform endpoints. Most are link-local or private anyway, but Azure's
# wireserver (168.63.129.16) is a public address, so it must be named.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "168.63.129.16",  # Azure wireserver
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A DNS name as it goes on the wire (IDNA already applied): labels of letters, digits,
# hyphens (and underscores, which some real hosts use). Anything else is not looked up.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$"
)

DEFAULT_PORTS = {"http": 80, "https": 443}


class BlockedAddressError(Exception):
    """A URL or a connection the guard refused. Raised before any byte is sent."""

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class InvalidHostError(BlockedAddressError):
    """A host that is no valid DNS name or IP address (never looked up)."""


def blocked_reason(address: IPAddress) -> str | None:
    """Why an address must not be contacted, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 one are judged by it (::ffff:127.0.0.1 is loopback).
        if address.ipv4_mapped is not None:
            return blocked_reason(address.ipv4_mapped)
        if address in _NAT64:
            return blocked_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return blocked_reason(address.sixtofour)
        if address.teredo is not None:
            return "Teredo tunnel address"
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    checks = (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address"
    if not address.is_global:  # e.g. 100.64.0.0/10 shared address space
        return "non-global address"
    return None


def parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One SCAN_ALLOW_HOSTS entry: a host (any port), a host:port, or an IP network."""

    host: str | None = None
    port: int | None = None
    network: IPNetwork | None = None

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        entry = text.strip().lower()
        if not entry:
            raise ValueError("empty allow-list entry")
        if "/" in entry:
            return cls(network=ipaddress.ip_network(entry, strict=False))
        host, port = entry, None
        if entry.startswith("["):  # [v6]:port
            close = entry.index("]")
            host = entry[1:close]
            if entry[close + 1 :].startswith(":"):
                port = int(entry[close + 2 :])
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
            port = int(port_text)
        return cls(host=host, port=port)

    def matches(self, host: str, port: int, address: IPAddress | None = None) -> bool:
        if self.network is not None:
            ip = address or parse_ip(host)
            return ip is not None and ip in self.network
        return self.host == host and (self.port is None or self.port == port)


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """getaddrinfo in the event loop's executor (what asyncio's own connect uses)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        seen: dict[IPAddress, None] = {}
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = parse_ip(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
            if ip is not None:
                seen[ip] = None
        return list(seen)


class AddressPolicy:
    """What the scanner may contact: public addresses on ordinary ports, plus the allow-list."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        allowed_ports: Iterable[int] = (80, 443, 8080, 8443),
        resolver: Resolver | None = None,
    ) -> None:
        self.rules = tuple(AllowRule.parse(entry) for entry in allow)
        self.allowed_ports = frozenset(allowed_ports)
        self.resolver: Resolver = resolver or SystemResolver()

    def host_allowed(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return any(r.matches(host, port) for r in self.rules if r.network is None) or any(
            r.matches(host, port) for r in self.rules if r.network is not None
        )

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL on its face (no DNS): scheme, credentials, port, metadata names."""
        if url.scheme not in DEFAULT_PORTS:
            raise BlockedAddressError(f"scheme {url.scheme!r} is not fetched", host=url.host)
        host = url.host.lower().rstrip(".")
        if not host:
            raise BlockedAddressError("URL has no host")
        if url.userinfo:
            raise BlockedAddressError("URL carries credentials", host=host)
        raw_host = url.raw_host.decode("ascii", "replace").lower().rstrip(".")
        if parse_ip(raw_host) is None and not _HOSTNAME.match(raw_host):
            raise InvalidHostError(f"invalid host name {url.host!r}", host=host)
        port = url.port or DEFAULT_PORTS[url.scheme]
        if self.host_allowed(host, port):
            return
        if host in METADATA_HOSTNAMES or host == "localhost" or host.endswith(".localhost"):
            raise BlockedAddressError(f"host {host!r} is an internal name", host=host)
        if port not in self.allowed_ports:
            raise BlockedAddressError(f"port {port} is not allowed", host=host)
        ip = parse_ip(host)
        if ip is not None:
            reason = blocked_reason(ip)
            if reason:
                raise BlockedAddressError(f"{host} is a {reason}", host=host)

    async def vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for host:port, or BlockedAddressError."""
        host = host.lower().strip("[]").rstrip(".")
        literal = parse_ip(host)
        allowed = self.host_allowed(host, port)
        if allowed and literal is not None:
            return [literal]
        if literal is None and (
            host in METADATA_HOSTNAMES or host == "localhost" or host.endswith(".localhost")
        ):
            raise BlockedAddressError(f"host {host!r} is an internal name", host=host)
        try:
            addresses = (
                [literal] if literal is not None else await self.resolver.resolve(host, port)
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        if allowed:
            return addresses
        # Every address is vetted on its own: an allowed network excuses only the addresses
        # inside it. One bad address refuses the host: a name that resolves to both a public
        # and a private address is the classic way past a check-one-connect-another guard.
        networks = [r for r in self.rules if r.network is not None]
        for address in addresses:
            if any(r.matches(host, port, address) for r in networks):
                continue
            reason = blocked_reason(address)
            if reason:
                raise BlockedAddressError(f"{host} resolves to {address}, a {reason}", host=host)
        return addresses


class GuardedBackend(AsyncNetworkBackend):
    """httpcore backend that vets every TCP connection with an AddressPolicy."""

    def __init__(self, policy: AddressPolicy, inner: AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.policy.vetted_addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        last: Exception | None = None
        for address in addresses:
            try:
                # Connect to the vetted address itself; TLS still uses the host name for SNI
                # and certificate checks (httpcore passes the origin's host to start_tls).
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connection pool connects only through a GuardedBackend.

    httpx does not take a network backend, so the pool is rebuilt with one; httpx is pinned
    to 0.28 (pyproject), whose AsyncHTTPTransport keeps its pool in `_pool`. No proxy is ever
    used (a proxy would make the guard check the proxy, not the site).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        limits: httpx.Limits,
        verify: bool = True,
        inner: AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(policy, inner),
        )
