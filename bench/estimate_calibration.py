"""Benchmark: `starter.py estimate` against what rollouts really cost on the emulator.

    .venv/bin/python bench/estimate_calibration.py [--state DE] [--cities 4119403]
        [--seed 1] [--streams 4]

For the state (every community, in the rollout's order, each excluding the places its
neighbours already bought, as DISCOVERY_FRESH_DAYS does in a rollout) and for each city on
its own, phase 1 runs its `cover` strategy against the emulator (bench/discovery_coverage.py's
`run_cover`: the rollout's own planning, probes, purchase plan and masks, without Temporal or
Postgres) with the default category lists, and the emulator's bill is compared with
`rollout.estimate.estimate` for the same communities. Only phase 1 spends: the enrichment
fields come with its pages and phase 4 enriches from the businesses' websites. Target: the
estimate within 15% of the bill.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from discovery_coverage import billing, run_cover

from placesim.process import PlacesimServer
from rollout.communities import CommunityRecord, load_communities
from rollout.estimate import estimate
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.client import PlacesClient
from rollout.settings import EMULATOR_API_KEY

console = Console() if sys.stdout.isatty() else Console(width=200)


async def measure(
    places: PlacesClient,
    sim: httpx.AsyncClient,
    settings: DiscoverySettings,
    communities: list[CommunityRecord],
    streams: int,
) -> tuple[Decimal, int, int]:
    """(billed cost, billed requests, unique businesses bought) of phase 1 over
    `communities`, neighbours' purchases known to those after them."""
    (await sim.post("/sim/reset")).raise_for_status()
    known: set[str] = set()
    for n, record in enumerate(communities, 1):
        run = await run_cover(places, settings, record, streams, known=frozenset(known))
        known |= run.found
        if n % 10 == 0 or n == len(communities):
            console.print(f"  [dim]{n}/{len(communities)} communities, {len(known):,} bought[/]")
    cost, requests = await billing(sim)
    return cost, requests, len(known)


async def bench(args: argparse.Namespace) -> None:
    settings = DiscoverySettings()  # the default category lists
    state = [r for r in load_communities(args.state)]
    by_id = {r.id: r for r in load_communities()}
    cities = [by_id[int(c)] for c in args.cities.split(",") if c]
    runs = [(f"{args.state} ({len(state)} communities)", state)]
    runs += [(f"{c.name}, {c.state_code} (pop. {c.population:,})", [c]) for c in cities]
    table = Table(title=f"estimate against the emulator's bill (seed {args.seed})")
    for column in ("rollout", "billed", "requests", "bought", "estimate", "est. requests", "off"):
        table.add_column(column, justify="left" if column == "rollout" else "right")
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        extra = ["--qpd", "0", "--cache-businesses", "600000"]
        with PlacesimServer(Path(tmp), seed=args.seed, qpm=0, extra_args=extra) as server:
            async with (
                httpx.AsyncClient(base_url=server.base_url, timeout=120) as sim,
                PlacesClient(server.base_url, SecretStr(EMULATOR_API_KEY), timeout=120) as places,
            ):
                for name, communities in runs:
                    console.print(f"[bold]{name}[/] ...")
                    cost, requests, bought = await measure(
                        places, sim, settings, communities, args.streams
                    )
                    model = estimate(communities, settings, everywhere=list(by_id.values()))
                    off = (model.cost_usd - cost) / cost * 100 if cost else Decimal(0)
                    table.add_row(
                        name,
                        f"${cost:,.2f}",
                        f"{requests:,}",
                        f"{bought:,}",
                        f"${model.cost_usd:,.2f}",
                        f"{model.requests:,}",
                        f"{off:+.1f}%",
                    )
                    console.print(table)
    console.print(
        "billed: the emulator's /sim/billing for phase 1 (list prices); estimate: "
        "`starter.py estimate`'s model (rollout/estimate.py); target |off| <= 15%."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--state", default="DE")
    parser.add_argument("--cities", default="4119403", help="community ids, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--streams", type=int, default=8)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
