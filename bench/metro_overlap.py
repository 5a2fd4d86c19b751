"""Benchmark: what DISCOVERY_FRESH_DAYS saves where communities overlap (a metro area).

    .venv/bin/python bench/metro_overlap.py [--state RI] [--communities 8] [--radius-km 20]
        [--streams 4] [--seed 1]

Takes the --communities largest communities of --state whose centres lie within --radius-km
of the state's largest one (a metro area: their search boxes overlap) and runs phase 1's
cover strategy for each in turn, largest first as a rollout takes them, against `placesim`
(a real HTTP server, no quota) with the real PlacesClient: bench/discovery_coverage.py's
`run_cover` (free IDs-only probes, `rollout.phases.discovery.cover.plan_cover`, the
purchases). Twice:
- fresh 0 (DISCOVERY_FRESH_DAYS=0): every community buys everything its probes sighted;
- fresh 30 (the default): a community leaves out of its purchases the places an earlier
  community already bought (in the workflow: fetched within 30 days), and links them.
The emulator's meter is reset before each mode; its bill is read back (GET /sim/billing).
"Covered" checks that every sighted place ended bought or known (nothing lost by linking).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from discovery_coverage import billing, run_cover

from placesim.process import PlacesimServer
from rollout.communities import CommunityRecord, largest, load_communities
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.client import PlacesClient
from rollout.settings import EMULATOR_API_KEY


def distance_km(a: CommunityRecord, b: CommunityRecord) -> float:
    """Great-circle distance between two community centres."""
    la1, lo1, la2, lo2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 6371.0 * 2 * math.asin(math.sqrt(h))


def metro(state: str, count: int, radius_km: float) -> list[CommunityRecord]:
    everyone = largest(load_communities(state), 10_000)
    centre = everyone[0]
    return [c for c in everyone if distance_km(centre, c) <= radius_km][:count]


async def bench(args: argparse.Namespace) -> int:
    communities = metro(args.state, args.communities, args.radius_km)
    settings = DiscoverySettings()
    console = Console(width=200)
    console.print(
        f"{len(communities)} communities of {args.state} within {args.radius_km:g} km of "
        f"{communities[0].name}: " + ", ".join(f"{c.name} ({c.population:,})" for c in communities)
    )
    table = Table(title=f"Phase 1 (cover) over a metro area, seed {args.seed}")
    for column in (
        "mode",
        "requests",
        "paid",
        "cost (client)",
        "cost (/sim)",
        "bought unique",
        "bought twice+",
        "known, linked",
        "covered",
        "wall s",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    with tempfile.TemporaryDirectory(prefix="bench-metro-") as tmp:
        extra = ["--qpd", "0", "--cache-businesses", str(args.cache_businesses)]
        with PlacesimServer(Path(tmp), seed=args.seed, qpm=0, extra_args=extra) as server:
            async with (
                httpx.AsyncClient(base_url=server.base_url, timeout=120) as sim,
                PlacesClient(server.base_url, SecretStr(EMULATOR_API_KEY), timeout=120) as places,
            ):
                for fresh in (False, True):
                    (await sim.post("/sim/reset")).raise_for_status()
                    started = time.monotonic()
                    bought: set[str] = set()
                    bought_total = requests = paid = linked = missed = 0
                    cost = Decimal(0)
                    for community in communities:
                        known = frozenset(bought) if fresh else frozenset()
                        run = await run_cover(
                            places, settings, community, args.streams, known=known
                        )
                        requests += run.requests
                        paid += run.paid_requests
                        cost += run.cost
                        linked += len(run.sighted & known)
                        missed += run.missed
                        bought_total += len(run.found)
                        bought |= run.found
                        console.print(
                            f"  fresh {30 if fresh else 0}: {community.name}: "
                            f"{run.requests:,} requests ({run.paid_requests:,} paid), "
                            f"${run.cost:.2f}, {len(run.found):,} bought, "
                            f"{len(run.sighted & known):,} known"
                        )
                    billed, _ = await billing(sim)
                    table.add_row(
                        f"fresh {30 if fresh else 0}",
                        f"{requests:,}",
                        f"{paid:,}",
                        f"${cost:,.2f}",
                        f"${billed:,.2f}" + ("" if billed == cost else " (!)"),
                        f"{len(bought):,}",
                        f"{bought_total - len(bought):,}",
                        f"{linked:,}",
                        "all" if missed == 0 else f"{missed:,} missed",
                        f"{time.monotonic() - started:.0f}",
                    )
    console.print(table)
    console.print(
        "bought twice+: purchases of a place some earlier community of the run had bought "
        "already. known, linked: sighted places left out of a community's purchases because "
        "an earlier community bought them (the workflow links them to the community)."
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", default="RI")
    parser.add_argument("--communities", type=int, default=8)
    parser.add_argument("--radius-km", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-businesses", type=int, default=500_000)
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
