"""The structured data of the emulator's hosted sites: schema.org JSON-LD and microdata and the
meta tags, in the shares the emulator draws them, on the pages as the ground truth says, and
the same for the same seed.

Pages are fetched over HTTP from the emulator child process and read with the standard
library's HTMLParser (a deliberately small reader: it checks what the pages hold, it is not
the platform's extractor)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from placesim.fields import place_json
from placesim.server import truth
from placesim.sites import (
    HTML_HOME_KINDS,
    MARKUP_SHARES,
    Defect,
    Markup,
    SiteKind,
    site_profile,
)
from placesim.world import World
from rollout.communities import CommunityRecord, load_communities
from tests.support.placesim_support import SIM_SEED, Sim

pytest_plugins = ["tests.support.places_fixtures"]

WILMINGTON = 4145381  # Wilmington, DE: about 1,770 businesses, 840 sites with a home page
DOVER = 4142290
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NOT_THE_BUSINESS = {"WebSite", "BreadcrumbList"}
TRUTH_KEYS = {"markup", "markup_defect", "meta_tags", "profile", "lenient_profile"}
PROFILE_KEYS = {
    "schema_type", "name", "url", "telephone", "telephone_e164", "email", "logo", "image",
    "description", "address", "opening_hours", "same_as", "price_range",
}  # fmt: skip


# --------------------------------------------------------------------------------------
# A small page reader
# --------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Meta tags, JSON-LD block texts (raw, as served) and microdata properties of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.blocks: list[str] = []
        self.itemtypes: list[str] = []
        self.props: dict[str, list[str]] = {}
        self._script: list[str] | None = None
        self._open: list[tuple[str, str, list[str]]] = []  # itemprop, tag, text so far
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and "content" in a and ("name" in a or "property" in a):
            self.meta[a.get("property") or a["name"]] = a["content"]
        if tag == "script" and a.get("type") == "application/ld+json":
            self._script = []
        if "itemtype" in a:
            self.itemtypes.append(a["itemtype"])
        prop = a.get("itemprop")
        if prop is None or "itemscope" in a:
            return
        value = {"meta": "content", "link": "href", "a": "href", "img": "src", "time": "datetime"}
        if tag in value:
            self.props.setdefault(prop, []).append(a.get(value[tag], ""))
        else:
            self._open.append((prop, tag, []))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)
        for _, _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.blocks.append("".join(self._script).strip())
            self._script = None
        if self._open and self._open[-1][1] == tag:
            prop, _, parts = self._open.pop()
            self.props.setdefault(prop, []).append("".join(parts).strip())

    def prop(self, name: str) -> str | None:
        values = self.props.get(name)
        return values[0] if values else None


def nodes(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from nodes(item)
    elif isinstance(data, dict):
        yield data
        yield from nodes(data.get("@graph"))


def types(node: dict[str, Any]) -> list[str]:
    raw = node.get("@type")
    return [str(t) for t in raw] if isinstance(raw, list) else [str(raw)]


def hours_from_specification(value: list[dict[str, Any]]) -> list[dict[str, str]]:
    found = []
    for spec in value:
        days = spec["dayOfWeek"] if isinstance(spec["dayOfWeek"], list) else [spec["dayOfWeek"]]
        for day in days:
            name = day.rsplit("/", 1)[-1]
            found.append({"day": name, "opens": spec["opens"][:5], "closes": spec["closes"][:5]})
    return sorted(found, key=lambda h: WEEKDAYS.index(h["day"]))


def hours_from_text(text: str) -> list[dict[str, str]]:
    """ "Mo-Sa 07:00-19:00"."""
    match = re.fullmatch(r"(\w\w)-(\w\w) (\d\d:\d\d)-(\d\d:\d\d)", text)
    assert match, text
    short = [d[:2] for d in WEEKDAYS]
    first, last = short.index(match.group(1)), short.index(match.group(2))
    return [
        {"day": WEEKDAYS[d], "opens": match.group(3), "closes": match.group(4)}
        for d in range(first, last + 1)
    ]


def profile_from_node(node: dict[str, Any], og_image: str) -> dict[str, Any]:
    """The profile a JSON-LD business node carries, in the ground truth's keys."""
    address = node.get("address")
    specific = [t for t in types(node) if t != "LocalBusiness"] or ["LocalBusiness"]
    digits = re.sub(r"\D", "", node["telephone"])
    return {
        "schema_type": specific[0],
        "name": node["name"],
        "url": node["url"],
        "telephone": node["telephone"],
        "telephone_e164": "+" + (digits if len(digits) == 11 else "1" + digits),
        "email": node.get("email"),
        "logo": node.get("logo"),
        "image": node.get("image", og_image),
        "description": node["description"],
        "address": None
        if address is None
        else {
            "street": address["streetAddress"],
            "locality": address["addressLocality"],
            "region": address["addressRegion"],
            "postal_code": address["postalCode"],
            "country": address["addressCountry"],
        },
        "opening_hours": hours_from_specification(node.get("openingHoursSpecification", [])),
        "same_as": node.get("sameAs", []),
        "price_range": node.get("priceRange"),
    }


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def communities() -> list[CommunityRecord]:
    return load_communities()


@pytest.fixture(scope="module")
def businesses(placesim: Sim) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = placesim.community(WILMINGTON)["businesses"]
    return found


@pytest.fixture(scope="module")
def by_markup(businesses: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {m.value: [] for m in Markup}
    for b in businesses:
        if b["site"] is not None and b["site"]["markup"] is not None:
            groups[b["site"]["markup"]].append(b)
    return groups


@pytest.fixture
def web(sim: Sim) -> Iterator[httpx.Client]:
    sim.configure(site_slow_s=0.0)  # the slow kind's pages carry markup too; `sim` restores
    with httpx.Client(timeout=10, follow_redirects=True) as client:
        yield client


def home(web: httpx.Client, business: dict[str, Any]) -> Page:
    response = web.get(business["website_uri"])
    assert response.status_code == 200, business["website_uri"]
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_markup_shares_and_truth_shape(
    businesses: list[dict[str, Any]], by_markup: dict[str, list[dict[str, Any]]]
) -> None:
    with_home = 0
    for b in businesses:
        site = b["site"]
        if site is None:
            continue
        assert set(site) >= TRUTH_KEYS
        readable = SiteKind(site["kind"]) in HTML_HOME_KINDS
        with_home += readable
        if not readable:
            assert all(site[key] is None for key in TRUTH_KEYS), site["kind"]
            continue
        assert set(site["profile"]) == PROFILE_KEYS
        assert (site["markup_defect"] is not None) == (site["markup"] == "malformed")
        assert (site["meta_tags"] is None) == (site["markup"] == "none")
        if site["lenient_profile"] is not None:
            assert set(site["lenient_profile"]) == PROFILE_KEYS
    assert with_home > 600
    counts = {m: len(found) for m, found in by_markup.items()}
    assert sum(counts.values()) == with_home
    for markup, share in MARKUP_SHARES:
        assert 0.6 * share <= counts[markup.value] / with_home <= 1.5 * share, (markup, counts)
    defects = Counter(b["site"]["markup_defect"] for b in by_markup["malformed"])
    assert set(defects) == {d.value for d in Defect}
    kinds = {b["site_kind"] for found in by_markup.values() for b in found}
    assert kinds == {k.value for k in HTML_HOME_KINDS}


def test_json_ld_pages_hold_the_truth(
    web: httpx.Client, by_markup: dict[str, list[dict[str, Any]]]
) -> None:
    seen: Counter[str] = Counter()
    for b in by_markup["json-ld"]:
        profile = b["site"]["profile"]
        page = home(web, b)
        assert page.blocks
        parsed = [json.loads(block) for block in page.blocks]
        business = [
            n for n in nodes(parsed) if "telephone" in n and not set(types(n)) & NOT_THE_BUSINESS
        ]
        assert len(business) == 1, b["website_uri"]
        node = business[0]
        assert node["telephone"] == profile["telephone"]
        assert node["name"] == profile["name"] == b["name"]
        assert profile_from_node(node, page.meta["og:image"]) == profile
        assert re.sub(r"\D", "", profile["telephone"])[-10:] == re.sub(
            r"\D", "", b["national_phone_number"]
        )
        assert profile["email"] in (None, f"info@{b['website_uri'].split('/')[-2]}.example")
        assert (profile["address"] is None) == b["pure_service_area_business"]
        assert page.meta["og:title"]
        assert page.meta["description"] == profile["description"]
        assert not page.itemtypes
        # The shapes real sites use, each somewhere.
        seen["blocks"] += len(page.blocks) > 1
        seen["graph"] += any("@graph" in p for p in parsed if isinstance(p, dict))
        seen["list"] += any(isinstance(p, list) for p in parsed)
        seen["http"] += any(n.get("@context") == "http://schema.org" for n in nodes(parsed))
        seen["type list"] += isinstance(node["@type"], list)
        specs = node.get("openingHoursSpecification", [])
        seen["day string"] += any(isinstance(s["dayOfWeek"], str) for s in specs)
        seen["day list"] += any(isinstance(s["dayOfWeek"], list) for s in specs)
        seen["seconds"] += any(len(s["opens"]) == 8 for s in specs)
        seen["hours"] += bool(profile["opening_hours"])
        seen["same as"] += bool(profile["same_as"])
        seen["price"] += profile["price_range"] is not None
        seen["no address"] += profile["address"] is None
    count = len(by_markup["json-ld"])
    assert all(seen[k] for k in ("blocks", "graph", "list", "http", "type list", "seconds"))
    assert all(seen[k] for k in ("day string", "day list", "price", "no address"))
    assert seen["hours"] > count / 2
    assert seen["same as"] > count / 2


def test_malformed_json_ld_does_not_parse(
    web: httpx.Client, by_markup: dict[str, list[dict[str, Any]]]
) -> None:
    for b in by_markup["malformed"]:
        site = b["site"]
        defect = Defect(site["markup_defect"])
        page = home(web, b)
        assert len(page.blocks) == 1
        block = page.blocks[0]
        assert page.meta == site["meta_tags"]  # the page still renders its head
        meta_only = {k: v for k, v in site["profile"].items() if v not in (None, [])}
        assert meta_only == {
            "description": page.meta["description"],
            "image": page.meta["og:image"],
        }
        if defect is Defect.JSON_STRING:
            assert isinstance(json.loads(block), str)  # JSON, but no object
        elif defect is Defect.UNKNOWN_TYPE:
            node = json.loads(block)
            assert node["@type"] == site["lenient_profile"]["schema_type"]
            assert node["telephone"] == site["lenient_profile"]["telephone"]
        else:
            with pytest.raises(json.JSONDecodeError):
                json.loads(block)
        # What a lenient reader repairs, it reads in full.
        if defect in (Defect.TRAILING_COMMA, Defect.RAW_NEWLINE):
            repaired = json.loads(re.sub(r",\s*([}\]])", r"\1", block), strict=False)
            lenient = dict(site["lenient_profile"])
            repaired["description"] = " ".join(repaired["description"].split())
            assert profile_from_node(repaired, page.meta["og:image"]) == lenient
        else:
            assert (site["lenient_profile"] is None) == (defect is not Defect.UNKNOWN_TYPE)


def test_microdata_pages_hold_the_truth(
    web: httpx.Client, by_markup: dict[str, list[dict[str, Any]]]
) -> None:
    for b in by_markup["microdata"]:
        profile = b["site"]["profile"]
        page = home(web, b)
        assert not page.blocks
        assert page.itemtypes[0].rsplit("/", 1)[-1] == profile["schema_type"]
        assert page.prop("telephone") == profile["telephone"]
        assert page.prop("name") == profile["name"]
        assert page.prop("url") == profile["url"]
        assert page.prop("description") == profile["description"]
        assert page.prop("logo") == profile["logo"]
        email = page.prop("email")
        assert (email and email.removeprefix("mailto:")) == profile["email"]
        assert page.props.get("sameAs", []) == profile["same_as"]
        assert page.prop("priceRange") == profile["price_range"]
        hours = page.prop("openingHours")
        assert (hours_from_text(hours) if hours else []) == profile["opening_hours"]
        if profile["address"] is None:
            assert "PostalAddress" not in " ".join(page.itemtypes)
        else:
            assert page.itemtypes[1].endswith("/PostalAddress")
            assert page.prop("streetAddress") == profile["address"]["street"]
            assert page.prop("postalCode") == profile["address"]["postal_code"]
            assert page.prop("addressCountry") == "US"


def test_meta_tags_and_bare_pages(
    web: httpx.Client, by_markup: dict[str, list[dict[str, Any]]]
) -> None:
    og = {"og:title", "og:description", "og:image", "og:url", "og:type"}
    for markup in ("json-ld", "microdata", "meta", "malformed"):
        for b in by_markup[markup][:40]:
            meta = home(web, b).meta
            assert meta == b["site"]["meta_tags"]
            assert og | {"description"} == set(meta)
            assert meta["og:url"] == b["website_uri"]
    for b in by_markup["meta"]:
        page = home(web, b)
        assert not page.blocks
        assert not page.itemtypes
        found = {k: v for k, v in b["site"]["profile"].items() if v not in (None, [])}
        assert found == {"description": page.meta["description"], "image": page.meta["og:image"]}
    for b in by_markup["none"]:
        page = home(web, b)
        assert not page.blocks
        assert not page.itemtypes
        assert not page.meta
        assert all(v in (None, []) for v in b["site"]["profile"].values())
    # The logo and the og:image resolve.
    sample = by_markup["json-ld"][0]["site"]["profile"]
    for url in (sample["image"], sample["logo"] or sample["image"]):
        image = web.get(url)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_same_seed_same_markup(sim: Sim, communities: list[CommunityRecord]) -> None:
    served = sim.community(DOVER)["businesses"]
    here = World(SIM_SEED, communities=communities).community_world(DOVER)
    assert here is not None
    expected = [json.loads(json.dumps(truth(b, sim.base_url))) for b in here.businesses]
    assert [b["site"] for b in served] == [b["site"] for b in expected]

    other = World(SIM_SEED + 1, communities=communities).community_world(DOVER)
    assert other is not None

    def markups(businesses: list[Any]) -> list[str | None]:
        root = "http://h/sites/x"
        return [p.markup.value if (p := site_profile(b, root)) else None for b in businesses]

    assert markups(other.businesses) != markups(here.businesses)


def test_site_hours_and_prices_agree_with_google(communities: list[CommunityRecord]) -> None:
    world = World(SIM_SEED, communities=communities).community_world(WILMINGTON)
    assert world is not None
    compared = priced = 0
    levels = {"PRICE_LEVEL_INEXPENSIVE": "$", "PRICE_LEVEL_MODERATE": "$$"}
    levels["PRICE_LEVEL_EXPENSIVE"] = "$$$"
    for b in world.businesses:
        profile = site_profile(b, "http://h/sites/x")
        if profile is None:
            continue
        google = place_json(b, "http://h")
        if profile.hours is not None and "regularOpeningHours" in google:
            periods = google["regularOpeningHours"]["periods"]
            days = sorted((p["open"]["day"] + 6) % 7 for p in periods)  # Google: 0 = Sunday
            assert list(profile.hours.days) == days
            assert profile.hours.opens == f"{periods[0]['open']['hour']:02d}:00"
            assert profile.hours.closes == f"{periods[0]['close']['hour']:02d}:00"
            compared += 1
        if profile.price_range is not None and "priceLevel" in google:
            assert levels[google["priceLevel"]] == profile.price_range
            priced += 1
    assert compared > 300
    assert priced > 10
