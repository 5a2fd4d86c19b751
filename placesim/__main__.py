"""`python -m placesim`: serve the Places API (New) emulator until SIGTERM or Ctrl-C.

Prints one line, "placesim listening on http://HOST:PORT", once it accepts connections
(--port 0 picks a free port); everything else goes to the log on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from placesim.config import SimConfig
from placesim.skus import DEFAULT_SKU_TABLE, SkuTable, load_sku_table
from rollout.logsetup import configure_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m placesim", description=__doc__)
    add = p.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8765, help="0: any free port")
    add("--seed", type=int, default=1, help="the world and the fault sequence")
    add("--qpm", type=int, default=600, help="requests per minute per method; 0: no limit")
    add(
        "--qpd",
        type=int,
        default=None,
        help="requests per day per method (default: Google's 75,000 / 125,000); 0: no limit",
    )
    add("--quota-window-s", type=float, default=60.0, help="length of the per-minute window")
    add("--latency-ms", type=float, default=0.0)
    add("--jitter-ms", type=float, default=0.0, help="extra random latency, 0..N ms")
    add("--error-rate", type=float, default=0.0, help="share of 500/503 answers")
    add("--timeout-rate", type=float, default=0.0, help="share of calls left unanswered")
    add("--malformed-rate", type=float, default=0.0, help="share of truncated 200 bodies")
    add("--hang-s", type=float, default=30.0, help="how long an unanswered call hangs")
    add("--api-key", default=None, help='the one accepted key (default: any but "invalid")')
    add("--disabled", action="store_true", help="answer 403 SERVICE_DISABLED")
    add("--site-slow-s", type=float, default=8.0, help="delay of the slow websites")
    add("--public-url", default=None, help="base URL for websiteUri (default: the Host header)")
    add(
        "--cache-businesses",
        type=int,
        default=None,
        help="businesses kept generated (LRU by community; default 50,000, ~40 MB)",
    )
    add(
        "--sku-table",
        type=Path,
        default=DEFAULT_SKU_TABLE,
        metavar="PATH",
        help="the field -> SKU and price table to bill with (default: placesim/data/skus.json)",
    )
    add("--log-level", default="INFO")
    return p


async def _serve(args: argparse.Namespace, config: SimConfig, skus: SkuTable) -> None:
    # Imported here, after the flags are checked, so a bad flag fails fast: the world imports
    # the communities data layer, and with it SQLAlchemy.
    from placesim.httpserver import HttpServer
    from placesim.server import App
    from placesim.world import World

    world = (
        World(args.seed)
        if args.cache_businesses is None
        else World(args.seed, cache_businesses=args.cache_businesses)
    )
    app = App(world, config, public_url=args.public_url, skus=skus)
    server = HttpServer(app.handle)
    app.http_stats = server.stats
    port = await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"placesim listening on http://{args.host}:{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = SimConfig(
            qpm=args.qpm,
            qpd=args.qpd,
            quota_window_s=args.quota_window_s,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            error_rate=args.error_rate,
            timeout_rate=args.timeout_rate,
            malformed_rate=args.malformed_rate,
            hang_s=args.hang_s,
            disabled=args.disabled,
            api_key=args.api_key,
            site_slow_s=args.site_slow_s,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        sys.stderr.write(f"error: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}\n")
        return 2
    try:
        skus = load_sku_table(args.sku_table)
    except OSError as exc:
        sys.stderr.write(f"error: --sku-table: {args.sku_table}: {exc.strerror}\n")
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"{part}: " for part in first["loc"])
        sys.stderr.write(f"error: --sku-table: {args.sku_table}: {where}{first['msg']}\n")
        return 2
    try:
        asyncio.run(_serve(args, config, skus))
    except OSError as exc:
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}\n")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
