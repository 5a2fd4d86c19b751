"""Benchmark: scan 1,000 emulator-hosted business websites the way phase 2 does.

    .venv/bin/python bench/scan_websites.py [--sites 1000] [--hosts 100] [--per-host 2]
        [--concurrency 64] [--latency-ms 50,250] [--slow-s 8] [--timeout-s 5]

What runs (all on this machine, loopback only):
- `placesim` (the Places emulator) serves the sites under /sites/<slug>/, every kind it has:
  feeds, calendars, news pages, slow, broken, redirect chains and loops, huge pages,
  redirects to private addresses, private addresses as websites, robots.txt refusals;
- a latency proxy (a child process) in front of it, listening on --hosts loopback addresses
  (127.0.0.2, 127.0.0.3, ...): each site is reached through one of them, so the scanner sees
  many hosts as it would on the web; every response is delayed by a random latency, and the
  proxy counts the requests each host has in flight, as the host itself would see them;
- the scanner: rollout.phases.website_scan's WebFetcher + scan_site, with the given
  global and per-host
  limits, as the phase 2 activity runs them (minus the database writes).

It prints one table: sites, wall time, sites/s, peak RSS of the scanning process, and the most
concurrent requests any host saw (from the proxy, and from the scanner's own limiter) against
the limit; then the outcome per site kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from devstack.embedded import free_port
from placesim.process import PlacesimServer
from rollout.communities import load_communities
from rollout.phase_settings import PhaseSettings
from rollout.phases.website_scan.errors import ScanStatus
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.phases.website_scan.limits import LimiterStats
from rollout.phases.website_scan.scanner import ScanOutcome, scan_site

STATS_PATH = "/__proxy_stats"


# --------------------------------------------------------------------------------------
# The latency proxy (runs in a child process: `scan_websites.py proxy ...`)
# --------------------------------------------------------------------------------------


class Flight:
    """One request in flight at a host; ends once, whichever way it ends."""

    def __init__(self, proxy: LatencyProxy, host: str) -> None:
        self.proxy = proxy
        self.host = host
        self.open = True
        proxy.requests += 1
        proxy.active[host] += 1
        proxy.peak[host] = max(proxy.peak[host], proxy.active[host])

    def end(self) -> None:
        if self.open:
            self.open = False
            self.proxy.active[self.host] -= 1


class LatencyProxy:
    def __init__(self, upstream: tuple[str, int], low_ms: float, high_ms: float, seed: int):
        self.upstream = upstream
        self.low = low_ms / 1000
        self.high = high_ms / 1000
        self.rng = random.Random(seed)  # noqa: S311 - latencies, not secrets
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1:2] == [STATS_PATH]:
            self._stats(writer)
            writer.close()
            return
        # A host has a request in flight from the moment it has read it until it has written
        # the last byte of the answer, or until the client hangs up (a timeout).
        flight = Flight(self, writer.get_extra_info("sockname")[0])
        work = asyncio.ensure_future(self._forward(lines, writer, flight))
        hangup = asyncio.ensure_future(reader.read(1))  # b"" when the client gives up
        try:
            await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            for task in (work, hangup):
                task.cancel()
            await asyncio.gather(work, hangup, return_exceptions=True)
            flight.end()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _forward(
        self, lines: list[str], writer: asyncio.StreamWriter, flight: Flight
    ) -> None:
        kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith("connection:")]
        forwarded = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode()
        await asyncio.sleep(self.rng.uniform(self.low, self.high))
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        try:
            upstream_writer.write(forwarded)
            await upstream_writer.drain()
            try:
                response_head = await upstream_reader.readuntil(b"\r\n\r\n")
            except (ConnectionResetError, asyncio.IncompleteReadError):
                writer.transport.abort()  # the site reset the connection: so do we
                return
            remaining = -1  # until EOF, unless the answer says its length
            for line in response_head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    remaining = int(line.split(":", 1)[1])
            writer.write(response_head)
            if remaining == 0:
                flight.end()
            while remaining != 0:
                chunk = await upstream_reader.read(
                    65536 if remaining < 0 else min(65536, remaining)
                )
                if not chunk:
                    break
                writer.write(chunk)
                if remaining > 0:
                    remaining -= len(chunk)
                    if remaining == 0:
                        # Ended as the last byte is handed to the socket, before any await:
                        # the client cannot have it yet, let alone send its next request.
                        flight.end()
                await writer.drain()
        finally:
            upstream_writer.close()

    def _stats(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(
            {
                "peak": dict(self.peak),
                "requests": self.requests,
                "active": sum(self.active.values()),
            }
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


async def run_proxy(args: argparse.Namespace) -> None:
    host, port = args.upstream.rsplit(":", 1)
    proxy = LatencyProxy((host, int(port)), args.low_ms, args.high_ms, args.seed)
    servers = [
        await asyncio.start_server(proxy.handle, f"127.0.0.{2 + i}", args.port, backlog=1024)
        for i in range(args.hosts)
    ]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # Stops when the benchmark closes our stdin (or dies).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Make VmHWM start again from the current RSS (Linux), so the peak is the scan's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def collect_sites(sim_url: str, wanted: int) -> list[dict[str, Any]]:
    sites: list[dict[str, Any]] = []
    communities = sorted(load_communities("TX"), key=lambda c: -c.population)
    with httpx.Client(timeout=120) as client:
        for community in communities:
            world = client.get(f"{sim_url}/sim/world", params={"community_id": community.id})
            world.raise_for_status()
            for business in world.json()["businesses"]:
                if business["website_uri"]:
                    sites.append(business)
            if len(sites) >= wanted:
                break
    return sites[:wanted]


async def scan_all(
    fetcher: WebFetcher, urls: list[str], workers: int, settings: PhaseSettings
) -> list[ScanOutcome]:
    results: list[ScanOutcome | None] = [None] * len(urls)
    queue = iter(enumerate(urls))

    async def worker() -> None:
        for index, url in queue:
            results[index] = await scan_site(
                fetcher,
                url,
                feed_paths=settings.scan_feed_paths,
                deadline_s=settings.scan_site_deadline_s,
            )

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return [r for r in results if r is not None]


@dataclass
class ScanRun:
    outcomes: list[ScanOutcome]
    limiter: LimiterStats
    wall_s: float
    cpu_s: float
    rss_before_kib: int
    peak_kib: int
    proxy_stats: dict[str, Any]


async def timed_scan(
    urls: list[str],
    settings: PhaseSettings,
    workers: int,
    proxy_stats_url: str,
    profile: str | None,
) -> ScanRun:
    rss_before = vm_kib("VmRSS")
    peak_reset = reset_peak_rss()
    cpu_before = time.process_time()
    started = time.monotonic()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    async with WebFetcher(settings) as fetcher:
        outcomes = await scan_all(fetcher, urls, workers, settings)
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    # ru_maxrss is the whole life's peak; VmHWM after the reset is the scan's own.
    peak = vm_kib("VmHWM") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with httpx.AsyncClient() as client:
        stats = (await client.get(proxy_stats_url)).json()
    return ScanRun(outcomes, fetcher.stats, wall, cpu, rss_before, peak, stats)


def bench(args: argparse.Namespace) -> int:
    low, high = (float(x) for x in args.latency_ms.split(","))
    with (
        tempfile.TemporaryDirectory() as tmp,
        PlacesimServer(
            Path(tmp), seed=args.seed, qpm=0, extra_args=["--site-slow-s", str(args.slow_s)]
        ) as sim,
    ):
        sites = collect_sites(sim.base_url, args.sites)
        sim_hostport = sim.base_url.removeprefix("http://")
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [
                sys.executable, __file__, "proxy", "--upstream", sim_hostport,
                "--port", str(proxy_port), "--hosts", str(args.hosts),
                "--low-ms", str(low), "--high-ms", str(high), "--seed", str(args.seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert proxy.stdout is not None
            if proxy.stdout.readline().strip() != "ready":
                print("error: the latency proxy did not start", file=sys.stderr)
                return 1
            # Site i is reached through host i % hosts; private addresses stay as they are.
            urls = [
                b["website_uri"].replace(sim_hostport, f"127.0.0.{2 + i % args.hosts}:{proxy_port}")
                for i, b in enumerate(sites)
            ]
            settings = PhaseSettings(
                scan_allow_hosts=["127.0.0.0/24"],  # the emulator and the proxy's hosts only
                scan_max_concurrency=args.concurrency,
                scan_per_host_concurrency=args.per_host,
                scan_timeout_s=args.timeout_s,
                scan_site_deadline_s=args.deadline_s,
            )
            run = asyncio.run(
                timed_scan(
                    urls,
                    settings,
                    args.concurrency,
                    f"http://127.0.0.2:{proxy_port}{STATS_PATH}",
                    args.profile,
                )
            )
        finally:
            if proxy.stdin is not None:
                proxy.stdin.close()
            proxy.wait(10)
    outcomes, limiter, stats = run.outcomes, run.limiter, run.proxy_stats
    wall, cpu = run.wall_s, run.cpu_s
    peak_kib, rss_before = run.peak_kib, run.rss_before_kib

    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    found_feeds = expected_feeds = reachable_feeds = 0
    for business, outcome in zip(sites, outcomes, strict=True):
        by_kind[business["site_kind"]][outcome.status.value] += 1
        truth = business["site"]
        # Compare paths: the truth names the emulator's address, the scan the proxy's.
        want = {httpx.URL(f["url"]).path for f in truth["feeds"]}
        want |= {httpx.URL(c["url"]).path for c in truth["calendars"]}
        got = {httpx.URL(f["url"]).path for f in outcome.found.get("feeds", [])}
        got |= {httpx.URL(c["url"]).path for c in outcome.found.get("ical", [])}
        expected_feeds += len(want)
        found_feeds += len(want & got)
        if outcome.status in (ScanStatus.OK, ScanStatus.TOO_LARGE):
            reachable_feeds += len(want)

    server_peak = max(stats["peak"].values(), default=0)
    limit = args.per_host
    rows = [
        ("sites scanned", f"{len(outcomes)}"),
        ("hosts", f"{args.hosts} (latency {low:g}-{high:g} ms, slow sites {args.slow_s:g} s)"),
        ("limits", f"global {args.concurrency}, per host {limit}"),
        ("wall time", f"{wall:.1f} s"),
        ("sites / s", f"{len(outcomes) / wall:.1f}"),
        ("scanner CPU time", f"{cpu:.1f} s ({cpu / wall:.0%} of one core)"),
        ("HTTP requests", f"{stats['requests']} at the hosts, {limiter.requests} sent"),
        ("peak RSS (scanner)", f"{peak_kib / 1024:.1f} MiB ({rss_before / 1024:.1f} MiB before)"),
        ("max concurrent per host, server side", f"{server_peak} (limit {limit})"),
        ("max concurrent per host, scanner side", f"{limiter.peak_any_host} (limit {limit})"),
        ("max concurrent overall", f"{limiter.peak_global} (limit {args.concurrency})"),
        (
            "feeds + calendars found",
            f"{found_feeds} of {reachable_feeds} on reachable sites "
            f"({expected_feeds} in the ground truth)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{'metric'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    print(f"\n{'site kind'.ljust(18)} {'sites':>5}  outcomes")
    for kind, statuses in sorted(by_kind.items(), key=lambda kv: -sum(kv[1].values())):
        detail = ", ".join(f"{s} {n}" for s, n in statuses.most_common())
        print(f"{kind.ljust(18)} {sum(statuses.values()):>5}  {detail}")
    ok = server_peak <= args.per_host and limiter.peak_any_host <= args.per_host
    print(f"\nper-host limit held: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("proxy", help="(internal) the latency proxy")
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hosts", type=int, required=True)
    p.add_argument("--low-ms", type=float, required=True)
    p.add_argument("--high-ms", type=float, required=True)
    p.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--per-host", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", default="50,250", help="min,max per response")
    parser.add_argument("--slow-s", type=float, default=8.0, help="delay of the slow sites")
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--deadline-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", default=None, help="write a cProfile of the scan here")
    args = parser.parse_args()
    if args.command == "proxy":
        asyncio.run(run_proxy(args))
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
