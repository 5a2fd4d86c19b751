"""What a business says about itself on its own home page: schema.org data and meta tags.

This content belongs to the business, not to Google, so the platform may keep it (unlike
Places content, see Google's storage terms in docs/). Phase 2 extracts it from the home page
it fetches anyway; phase 4 merges it into the business.

Sources, in the order they are trusted when they disagree:
- JSON-LD blocks (`<script type="application/ld+json">`): the business entity among them
  (LocalBusiness or a subtype, an Organization, or any node with an address, a telephone or
  opening hours), in a list or a `@graph` or alone. Blocks are parsed with the JSON parser
  (lenient about raw control characters and trailing commas, which real sites have); a block
  still unreadable is counted and skipped.
- W3C microdata (`itemscope` / `itemprop`), with extruct's extractor, only when the page
  has any (most do not, and the extractor is the slow part).
- The page's meta tags: `description`, Open Graph (`og:title`, `og:description`,
  `og:image`), as a last resort for the name, description and image.

Every value is stored with its source (`json-ld`, `microdata`, `meta`), so a later reader
can weigh it or purge it by source.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser

log = logging.getLogger(__name__)

JSON_LD = "json-ld"
MICRODATA = "microdata"
META = "meta"

# schema.org types that are not the business itself, however much they carry.
_NOT_THE_BUSINESS = {
    "WebSite", "WebPage", "BreadcrumbList", "ListItem", "ImageObject", "SearchAction",
    "Person", "PostalAddress", "OpeningHoursSpecification", "GeoCoordinates", "Offer",
    "AggregateRating", "Review", "SiteNavigationElement", "ContactPoint", "Place",
}  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_ABBREVIATIONS = {"Mo": 0, "Tu": 1, "We": 2, "Th": 3, "Fr": 4, "Sa": 5, "Su": 6}
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})")
# "Mo-Fr 09:00-17:00", "Sa 10:00-14:00", "Mo,We,Fr 08:00-12:00"
_HOURS_TEXT = re.compile(
    r"^\s*(?P<days>[A-Z][a-z](?:\s*[-,]\s*[A-Z][a-z])*)\s+(?P<opens>\d{1,2}:\d{2})\s*-\s*"
    r"(?P<closes>\d{1,2}:\d{2})\s*$"
)


def _types(node: dict[str, Any]) -> list[str]:
    raw = node.get("@type", node.get("type"))
    values = raw if isinstance(raw, list) else [raw]
    return [str(v).rsplit("/", 1)[-1] for v in values if v]


def _text(value: Any) -> str | None:
    """A plain string from a schema.org value (a string, a number, a list, an object with
    a name or url, a microdata item)."""
    if isinstance(value, list):
        return next((t for t in (_text(v) for v in value) if t), None)
    if isinstance(value, dict):
        for key in ("url", "contentUrl", "name", "@id", "value", "properties"):
            if key in value:
                found = _text(value[key])
                if found:
                    return found
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = " ".join(str(value).split())
        return text or None
    return None


def _texts(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [t for t in (_text(v) for v in values) if t]


def _time(value: Any) -> str | None:
    match = _TIME.match(str(value or "").strip())
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    return f"{hour:02d}:{minute:02d}" if hour <= 24 and minute < 60 else None


def _day(value: Any) -> str | None:
    name = str(value or "").rsplit("/", 1)[-1].strip().capitalize()
    if name in _DAYS:
        return name
    if name[:2] in _DAY_ABBREVIATIONS:
        return _DAYS[_DAY_ABBREVIATIONS[name[:2]]]
    return None


def _hours_from_specification(value: Any) -> list[dict[str, str]]:
    """openingHoursSpecification: one or a list of {dayOfWeek, opens, closes}."""
    hours = []
    for spec in value if isinstance(value, list) else [value]:
        if isinstance(spec, dict) and "properties" in spec:  # a microdata item
            spec = spec["properties"]
        if not isinstance(spec, dict):
            continue
        opens, closes = _time(spec.get("opens")), _time(spec.get("closes"))
        days = spec.get("dayOfWeek")
        for day in days if isinstance(days, list) else [days]:
            name = _day(day)
            if name and opens and closes:
                hours.append({"day": name, "opens": opens, "closes": closes})
    return hours


def _hours_from_text(value: Any) -> list[dict[str, str]]:
    """openingHours: "Mo-Fr 09:00-17:00" strings (a list, or several in one string)."""
    hours = []
    for line in _texts(value):
        for part in re.split(r"[;\n]", line):
            match = _HOURS_TEXT.match(part)
            if not match:
                continue
            days: list[int] = []
            for item in re.split(r"\s*,\s*", match.group("days")):
                ends = [x.strip() for x in item.split("-")]
                if not all(e in _DAY_ABBREVIATIONS for e in ends):
                    continue
                first, last = _DAY_ABBREVIATIONS[ends[0]], _DAY_ABBREVIATIONS[ends[-1]]
                days.extend(range(first, last + 1))
            opens, closes = _time(match.group("opens")), _time(match.group("closes"))
            if opens and closes:
                hours += [{"day": _DAYS[d], "opens": opens, "closes": closes} for d in days]
    return hours


def _address(value: Any) -> dict[str, str] | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and "properties" in value:
        value = value["properties"]
    if isinstance(value, str):
        return {"text": " ".join(value.split())} if value.strip() else None
    if not isinstance(value, dict):
        return None
    fields = {
        "street": "streetAddress",
        "locality": "addressLocality",
        "region": "addressRegion",
        "postal_code": "postalCode",
        "country": "addressCountry",
    }
    out = {k: t for k, key in fields.items() if (t := _text(value.get(key)))}
    return out or None


def _facts(node: dict[str, Any], page_url: str) -> dict[str, Any]:
    """The facts one schema.org node carries, in the profile's own keys."""
    facts: dict[str, Any] = {}
    for key, prop in (
        ("name", "name"),
        ("telephone", "telephone"),
        ("description", "description"),
        ("price_range", "priceRange"),
    ):
        if text := _text(node.get(prop)):
            facts[key] = text
    if (email := _text(node.get("email"))) is not None:
        facts["email"] = email.removeprefix("mailto:")
    for key in ("url", "logo", "image"):
        if text := _text(node.get(key)):
            facts[key] = urljoin(page_url, text)
    if address := _address(node.get("address")):
        facts["address"] = address
    hours = _hours_from_specification(node.get("openingHoursSpecification"))
    hours = hours or _hours_from_text(node.get("openingHours"))
    if hours:
        facts["opening_hours"] = hours
    if same_as := _texts(node.get("sameAs")):
        facts["same_as"] = [urljoin(page_url, u) for u in same_as]
    if types := [t for t in _types(node) if t not in _NOT_THE_BUSINESS]:
        facts["types"] = types
    return facts


_BUSINESS_KEYS = (
    "address", "telephone", "openingHoursSpecification", "openingHours", "email", "sameAs",
    "logo",
)  # fmt: skip


def _is_business(node: dict[str, Any]) -> bool:
    """A node that describes the business: of a type that is not a page, a list or a
    part of something, and with a contact detail (or a type that says so)."""
    types = [t for t in _types(node) if t not in _NOT_THE_BUSINESS]
    if not types:
        return False
    if any(t.endswith(("Business", "Organization", "Store")) for t in types):
        return True
    return any(k in node for k in _BUSINESS_KEYS)


def _nodes(data: Any) -> Iterator[dict[str, Any]]:
    """Every object of a JSON-LD document: top level, lists and @graph."""
    if isinstance(data, list):
        for item in data:
            yield from _nodes(item)
    elif isinstance(data, dict):
        yield data
        if "@graph" in data:
            yield from _nodes(data["@graph"])


def _load_block(text: str) -> Any:
    try:
        return json.loads(text, strict=False)  # raw newlines and tabs inside strings
    except ValueError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text), strict=False)


class SiteProfile:
    """The profile of one page, built source by source; `to_json()` is what is stored."""

    def __init__(self, page_url: str) -> None:
        self.page_url = page_url
        self.fields: dict[str, dict[str, Any]] = {}
        self.malformed_blocks = 0

    def add(self, facts: dict[str, Any], source: str) -> None:
        for key, value in facts.items():
            if key not in self.fields:  # the first (most trusted) source wins
                self.fields[key] = {"value": value, "source": source}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"page": self.page_url, "fields": self.fields}
        if self.malformed_blocks:
            out["malformed_blocks"] = self.malformed_blocks
        return out

    @property
    def empty(self) -> bool:
        return not self.fields


def extract_profile(html: str, page_url: str) -> SiteProfile:
    """The business's self-description on one HTML page (never raises for bad markup)."""
    profile = SiteProfile(page_url)
    tree = LexborHTMLParser(html)
    for script in tree.css('script[type="application/ld+json"]'):
        text = script.text(deep=True, separator="", strip=False).strip()
        if not text:
            continue
        try:
            data = _load_block(text)
        except ValueError:
            profile.malformed_blocks += 1
            continue
        if not isinstance(data, (dict, list)):  # JSON, but no object to read
            profile.malformed_blocks += 1
            continue
        for node in _nodes(data):
            if _is_business(node):
                profile.add(_facts(node, page_url), JSON_LD)
    if "itemscope" in html:
        for node in _microdata(html, page_url):
            if _is_business(node):
                profile.add(_facts(node, page_url), MICRODATA)
    profile.add(_meta(tree, page_url), META)
    return profile


def _microdata(html: str, page_url: str) -> list[dict[str, Any]]:
    from extruct.w3cmicrodata import MicrodataExtractor  # imported on the first such page

    try:
        items = MicrodataExtractor().extract(html, base_url=page_url)
    except Exception as exc:  # broken markup is the site's problem, not the scan's
        log.debug("microdata of %s unreadable: %s", page_url, exc)
        return []
    return [{"@type": item.get("type"), **item.get("properties", {})} for item in items]


def _meta(tree: LexborHTMLParser, page_url: str) -> dict[str, Any]:
    found: dict[str, str] = {}
    for node in tree.css("meta[content]"):
        key = (node.attributes.get("property") or node.attributes.get("name") or "").lower()
        content = " ".join((node.attributes.get("content") or "").split())
        if key and content and key not in found:
            found[key] = content
    facts: dict[str, Any] = {}
    if name := found.get("og:site_name") or found.get("og:title"):
        facts["name"] = name
    if description := found.get("description") or found.get("og:description"):
        facts["description"] = description
    if image := found.get("og:image"):
        facts["image"] = urljoin(page_url, image)
    return facts
