"""The scanner's HTTP fetcher: polite, bounded and SSRF-safe.

Every request
- is checked by the AddressPolicy (URL) and connects through the GuardedBackend (addresses),
  on every redirect hop;
- honours the origin's robots.txt (cached per origin), again on every hop;
- holds a per-host slot and a global slot (HostLimiter) while it runs;
- has per-operation timeouts (SCAN_TIMEOUT_S) and a wall-clock cap of twice that, so a server
  that drips bytes cannot hold a slot for ever;
- reads at most `max_bytes` of the decoded body: compressed bodies are inflated
  incrementally with a bound, so a gzip bomb costs no more memory than a plain page;
- follows at most SCAN_MAX_REDIRECTS redirects, and spots loops;
- sends an honest User-Agent and no cookies, credentials or referrer.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType

import httpx
from httpcore import AsyncNetworkBackend

from rollout.phase_settings import PhaseSettings
from rollout.phases.website_scan.errors import FetchError, ScanStatus
from rollout.phases.website_scan.limits import HostLimiter, LimiterStats
from rollout.phases.website_scan.robots import (
    ROBOTS_MAX_BYTES,
    RobotsCache,
    RobotsRules,
    rules_for_status,
)
from rollout.phases.website_scan.ssrf import (
    DEFAULT_PORTS,
    AddressPolicy,
    BlockedAddressError,
    GuardedTransport,
    InvalidHostError,
)

HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
FEED_ACCEPT = (
    "application/rss+xml,application/atom+xml,application/xml;q=0.9,text/xml;q=0.9,"
    "text/calendar;q=0.9,*/*;q=0.5"
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    final_url: str
    status_code: int
    content_type: str  # media type, lower case, without parameters ("" when absent)
    charset: str | None
    body: bytes
    truncated: bool
    redirects: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_html(self) -> bool:
        return self.content_type in ("text/html", "application/xhtml+xml")

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", "replace")
        except LookupError:  # an unknown charset name
            return self.body.decode("utf-8", "replace")


def origin_of(url: httpx.URL) -> str:
    port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def _content_type(headers: httpx.Headers) -> tuple[str, str | None]:
    media, _, params = headers.get("content-type", "").partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


class _BoundedDecoder:
    """Content-Encoding decoding that never produces more than the caller asks for."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self._inflater: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._inflater = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj()
        else:
            raise FetchError(ScanStatus.BROKEN, f"unsupported content-encoding {encoding!r}")
        self._deflate = encoding == "deflate"
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        """The decoded bytes of `data`, at most room + 1 of them (one more than fits tells
        the caller that the body is over the cap)."""
        if self._inflater is None:
            return data[: room + 1]
        try:
            out = self._inflater.decompress(data, room + 1)
        except zlib.error:
            if self._first and self._deflate:
                # "deflate" is often sent as a raw deflate stream without the zlib header.
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                self._first = False
                return self.feed(data, room)
            raise FetchError(ScanStatus.BROKEN, "corrupt compressed body") from None
        self._first = False
        return out


class WebFetcher:
    """One per worker process: its limits and robots cache are shared by all scans."""

    def __init__(
        self,
        settings: PhaseSettings,
        *,
        policy: AddressPolicy | None = None,
        limiter: HostLimiter | None = None,
        verify_tls: bool = True,
        network_backend: AsyncNetworkBackend | None = None,
    ) -> None:
        """`network_backend` replaces the real sockets under the SSRF guard (tests)."""
        self.settings = settings
        self.policy = policy or AddressPolicy(
            settings.scan_allow_hosts, allowed_ports=settings.scan_allowed_ports
        )
        self.limiter = limiter or HostLimiter(
            settings.scan_max_concurrency, settings.scan_per_host_concurrency
        )
        self.user_agent = settings.scan_user_agent
        # Sites being scanned at once in this process, whatever the communities. A site's
        # deadline starts once it holds one: it measures the site, not the queue of every
        # community scanning in the worker (20 communities, 32 sites each, behind 32
        # request slots made sites that answer in a second "time out").
        self.sites = asyncio.Semaphore(settings.scan_max_concurrency)
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(
                self.policy,
                limits=httpx.Limits(
                    # Every request holds a global slot, so the pool never needs more.
                    max_connections=settings.scan_max_concurrency * 2,
                    max_keepalive_connections=settings.scan_max_concurrency,
                    keepalive_expiry=5.0,
                ),
                verify=verify_tls,
                inner=network_backend,
            ),
            timeout=httpx.Timeout(settings.scan_timeout_s),
            follow_redirects=False,
            trust_env=False,
            # A jar that refuses every cookie: one site's cookies must never travel to
            # another request, and the scanner has no session to keep.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": self.user_agent,
                "Accept-Encoding": "gzip, deflate",
                "Accept-Language": "en-US,en;q=0.8",
            },
        )
        self.robots = RobotsCache(self._load_robots, ttl_s=settings.scan_robots_cache_s)

    @property
    def stats(self) -> LimiterStats:
        return self.limiter.stats

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> WebFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- public ------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        accept: str = HTML_ACCEPT,
        check_robots: bool = True,
    ) -> FetchResult:
        """GET `url` following redirects; FetchError for anything but an HTTP answer."""
        cap = max_bytes if max_bytes is not None else self.settings.scan_max_bytes
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchError(ScanStatus.INVALID_URL, f"invalid URL: {exc}") from None
        seen = {str(current)}
        for hop in range(self.settings.scan_max_redirects + 1):
            try:
                self.policy.check_url(current)
            except InvalidHostError as exc:
                raise FetchError(ScanStatus.INVALID_URL, str(exc), final_url=str(current)) from None
            except BlockedAddressError as exc:
                raise FetchError(
                    ScanStatus.BLOCKED, f"refused {current}: {exc}", final_url=str(current)
                ) from None
            delay = 0.0
            if check_robots:
                rules = await self.robots.rules_for(origin_of(current))
                if not rules.allows(self.user_agent, str(current)):
                    raise FetchError(
                        ScanStatus.ROBOTS_DISALLOWED,
                        f"robots.txt disallows {current.raw_path.decode('ascii', 'replace')}"
                        + (f" ({rules.note})" if rules.note != "robots.txt" else ""),
                        final_url=str(current),
                    )
                delay = min(
                    rules.crawl_delay(self.user_agent), self.settings.scan_max_crawl_delay_s
                )
            result, location = await self._request(current, url, cap, accept, hop, delay)
            if result is not None:
                return result
            assert location is not None
            try:
                target = current.join(location)
            except (httpx.InvalidURL, TypeError, ValueError) as exc:
                raise FetchError(
                    ScanStatus.INVALID_URL,
                    f"invalid redirect target {location!r}: {exc}",
                    final_url=str(current),
                ) from None
            target = target.copy_with(fragment=None)
            if str(target) in seen:
                raise FetchError(
                    ScanStatus.REDIRECT_LOOP,
                    f"redirect loop at {target}",
                    http_status=None,
                    final_url=str(current),
                )
            seen.add(str(target))
            current = target
        raise FetchError(
            ScanStatus.TOO_MANY_REDIRECTS,
            f"more than {self.settings.scan_max_redirects} redirects",
            final_url=str(current),
        )

    # -- internals ---------------------------------------------------------------------

    async def _request(
        self,
        url: httpx.URL,
        original: str,
        cap: int,
        accept: str,
        hops: int,
        crawl_delay: float,
    ) -> tuple[FetchResult | None, str | None]:
        """One request: (result, None) for a final answer, (None, location) for a redirect."""
        request = self._client.build_request("GET", url, headers={"Accept": accept})
        deadline = self.settings.scan_timeout_s * 2
        try:
            async with self.limiter.slot(url.host, crawl_delay=crawl_delay):
                async with asyncio.timeout(deadline):
                    response = await self._client.send(request, stream=True)
                    try:
                        if response.status_code in REDIRECT_CODES:
                            location = response.headers.get("location")
                            if location:
                                return None, location
                        body, truncated = await self._read(response, cap)
                    finally:
                        await response.aclose()
        except BlockedAddressError as exc:
            raise FetchError(
                ScanStatus.BLOCKED, f"refused {url}: {exc}", final_url=str(url)
            ) from None
        except (TimeoutError, httpx.TimeoutException):
            raise FetchError(
                ScanStatus.TIMEOUT,
                f"no complete answer from {url.host} in time",
                final_url=str(url),
            ) from None
        except httpx.ConnectError as exc:
            raise FetchError(
                ScanStatus.UNREACHABLE, f"cannot connect to {url.host}: {exc}", final_url=str(url)
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchError(ScanStatus.INVALID_URL, str(exc), final_url=str(url)) from None
        except httpx.HTTPError as exc:
            raise FetchError(
                ScanStatus.BROKEN,
                f"{type(exc).__name__} from {url.host}: {exc}",
                final_url=str(url),
            ) from None
        content_type, charset = _content_type(response.headers)
        return (
            FetchResult(
                url=original,
                final_url=str(url),
                status_code=response.status_code,
                content_type=content_type,
                charset=charset,
                body=body,
                truncated=truncated,
                redirects=hops,
            ),
            None,
        )

    @staticmethod
    async def _read(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
        decoder = _BoundedDecoder(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            out = decoder.feed(raw, cap - size)
            if size + len(out) > cap:
                chunks.append(out[: cap - size])
                return b"".join(chunks), True
            chunks.append(out)
            size += len(out)
        return b"".join(chunks), False

    async def _load_robots(self, origin: str) -> RobotsRules:
        try:
            result = await self.fetch(
                f"{origin}/robots.txt",
                max_bytes=ROBOTS_MAX_BYTES,
                accept="text/plain,*/*;q=0.5",
                check_robots=False,
            )
        except FetchError as exc:
            if exc.status in (ScanStatus.REDIRECT_LOOP, ScanStatus.TOO_MANY_REDIRECTS):
                # RFC 9309 2.3.1.2: too many redirects means "unavailable", crawl allowed.
                return RobotsRules(allow_all=True, note="robots.txt: redirects, unavailable")
            raise FetchError(
                exc.status,
                f"robots.txt: {exc.message}",
                http_status=exc.http_status,
                final_url=exc.final_url,
            ) from None
        return rules_for_status(result.status_code, result.body)
