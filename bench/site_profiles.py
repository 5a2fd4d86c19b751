"""Benchmark: what reading a business's own structured data costs per home page.

    .venv/bin/python bench/site_profiles.py [--community 4145381] [--rounds 3]

Fetches every readable home page of a community from the emulator (Wilmington, DE by
default: JSON-LD, microdata, meta-only, unmarked and broken pages in their realistic
shares), then times, per page and in CPU, what phase 2 does with it:
- links: `rollout.phases.website_scan.links.discover` (feeds and news pages; phase 3's input);
- profile: `rollout.phases.enrichment.site_profile.extract_profile` as the scanner runs it
  (selectolax for meta tags and the JSON-LD blocks, their own JSON; extruct's microdata
  extractor only on pages that have `itemscope`);
- extruct, all of it: `extruct.extract` for JSON-LD, microdata and Open Graph on every page,
  the design the profile did not take.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placesim.process import PlacesimServer
from rollout.phases.enrichment.site_profile import extract_profile
from rollout.phases.website_scan.links import discover

console = Console() if sys.stdout.isatty() else Console(width=160)


def pages_of(base_url: str, community: int) -> list[tuple[str, str, str]]:
    """(markup, final url, html) of every readable home page of the community."""
    world = httpx.get(f"{base_url}/sim/world", params={"community_id": community}, timeout=60)
    out = []
    with httpx.Client(timeout=30, follow_redirects=True) as web:
        for b in world.json()["businesses"]:
            site = b.get("site") or {}
            if not site.get("markup") or site.get("kind") == "slow":
                continue
            response = web.get(b["website_uri"])
            if response.status_code == 200 and "html" in response.headers.get("content-type", ""):
                out.append((site["markup"], str(response.url), response.text))
    return out


def cpu_ms(
    pages: list[tuple[str, str, str]], work: Callable[[str, str], Any], rounds: int
) -> float:
    """Mean CPU milliseconds per page over `rounds` passes."""
    started = time.process_time()
    for _ in range(rounds):
        for _, url, html in pages:
            work(html, url)
    return (time.process_time() - started) * 1000 / (rounds * len(pages))


def extruct_all(html: str, url: str) -> Any:
    import extruct

    # errors="ignore": by default one broken JSON-LD block raises for the whole page.
    return extruct.extract(
        html, base_url=url, syntaxes=["json-ld", "microdata", "opengraph"], errors="ignore"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--community", type=int, default=4145381)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-profiles-") as tmp,
        PlacesimServer(Path(tmp), seed=args.seed, qpm=0) as server,
    ):
        pages = pages_of(server.base_url, args.community)
    extract_profile(pages[0][2], pages[0][1])  # imports and warms up, outside the timing
    extruct_all(pages[0][2], pages[0][1])
    table = Table(title=f"CPU per home page ({len(pages)} pages, {args.rounds} rounds)")
    table.add_column("pages")
    table.add_column("count", justify="right")
    for column in ("links (discover)", "profile (as scanned)", "extruct, all syntaxes"):
        table.add_column(column, justify="right")
    groups: dict[str, list[tuple[str, str, str]]] = {"all": pages}
    for page in pages:
        groups.setdefault(page[0], []).append(page)
    for name, group in groups.items():
        table.add_row(
            name,
            f"{len(group):,}",
            f"{cpu_ms(group, lambda h, u: discover(h, u), args.rounds):.2f} ms",
            f"{cpu_ms(group, extract_profile, args.rounds):.2f} ms",
            f"{cpu_ms(group, extruct_all, args.rounds):.2f} ms",
        )
    console.print(table)
    found = [extract_profile(h, u) for _, u, h in pages]
    with_fields = sum(1 for p in found if not p.empty)
    console.print(
        f"{with_fields:,} of {len(pages):,} pages gave a profile; "
        f"{sum(p.malformed_blocks for p in found):,} unreadable JSON-LD blocks skipped"
    )


if __name__ == "__main__":
    main()
