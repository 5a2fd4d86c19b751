"""The business's own structured data read from its home page: JSON-LD, microdata, meta."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

from rollout.phases.enrichment.site_profile import extract_profile

if TYPE_CHECKING:
    from tests.support.places_fixtures import Sim

pytest_plugins = ["tests.support.places_fixtures"]

PAGE = "https://joes.example/"


def page(head: str = "", body: str = "") -> str:
    return f"<!doctype html><html><head><title>Joe's</title>{head}</head><body>{body}</body></html>"


def ld(data: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def values(html: str) -> dict[str, Any]:
    fields = extract_profile(html, PAGE).fields
    return {k: (v["value"], v["source"]) for k, v in fields.items()}


RESTAURANT = {
    "@context": "https://schema.org",
    "@type": "Restaurant",
    "name": "Joe's Diner",
    "telephone": "+1-302-555-0142",
    "email": "mailto:info@joes.example",
    "url": "https://joes.example/",
    "logo": "/logo.png",
    "description": "Breakfast all day.",
    "priceRange": "$$",
    "address": {
        "@type": "PostalAddress",
        "streetAddress": "1 Main St",
        "addressLocality": "Dover",
        "addressRegion": "DE",
        "postalCode": "19901",
        "addressCountry": "US",
    },
    "openingHoursSpecification": [
        {
            "@type": "OpeningHoursSpecification",
            "dayOfWeek": ["https://schema.org/Monday", "Tuesday"],
            "opens": "07:00",
            "closes": "15:00:00",
        },
        {"dayOfWeek": "http://schema.org/Saturday", "opens": "8:00", "closes": "12:00"},
    ],
    "sameAs": ["https://www.facebook.com/joes", "https://www.instagram.com/joes"],
}


def test_json_ld_local_business_with_every_field() -> None:
    got = values(page(ld(RESTAURANT)))
    assert got["name"] == ("Joe's Diner", "json-ld")
    assert got["telephone"] == ("+1-302-555-0142", "json-ld")
    assert got["email"] == ("info@joes.example", "json-ld")
    assert got["logo"] == ("https://joes.example/logo.png", "json-ld")  # made absolute
    assert got["price_range"] == ("$$", "json-ld")
    assert got["address"][0] == {
        "street": "1 Main St",
        "locality": "Dover",
        "region": "DE",
        "postal_code": "19901",
        "country": "US",
    }
    assert got["opening_hours"][0] == [
        {"day": "Monday", "opens": "07:00", "closes": "15:00"},
        {"day": "Tuesday", "opens": "07:00", "closes": "15:00"},
        {"day": "Saturday", "opens": "08:00", "closes": "12:00"},
    ]
    assert got["same_as"][0] == ["https://www.facebook.com/joes", "https://www.instagram.com/joes"]
    assert got["types"] == (["Restaurant"], "json-ld")


def test_the_business_is_found_in_a_graph_or_a_list_beside_other_nodes() -> None:
    website = {"@type": "WebSite", "name": "Joe's site", "url": PAGE}
    graph = {"@context": "http://schema.org", "@graph": [website, RESTAURANT]}
    assert values(page(ld(graph)))["name"] == ("Joe's Diner", "json-ld")
    assert values(page(ld([website, RESTAURANT])))["name"] == ("Joe's Diner", "json-ld")
    # A page with only a WebSite node describes no business.
    assert "telephone" not in values(page(ld(website)))


def test_malformed_blocks_are_counted_and_skipped_and_common_slips_forgiven() -> None:
    broken = '<script type="application/ld+json">{"@type": "Restaurant", "name": "Jo</script>'
    profile = extract_profile(page(broken + '<meta name="description" content="Hi">'), PAGE)
    assert profile.malformed_blocks == 1
    assert profile.fields == {"description": {"value": "Hi", "source": "meta"}}
    # A trailing comma and a raw newline inside a string: what real sites publish.
    sloppy = (
        '<script type="application/ld+json">{"@type": "Bakery", "name": "Bun\nHouse",'
        ' "telephone": "302-555-0100",}</script>'
    )
    got = values(page(sloppy))
    assert got["name"] == ("Bun House", "json-ld")
    assert got["telephone"] == ("302-555-0100", "json-ld")
    # A block that is a JSON string, not an object.
    text_block = extract_profile(page('<script type="application/ld+json">"text"</script>'), PAGE)
    assert text_block.empty
    assert text_block.malformed_blocks == 1


def test_microdata_when_there_is_no_json_ld() -> None:
    body = """
    <div itemscope itemtype="https://schema.org/HairSalon">
      <h1 itemprop="name">Curl Up</h1>
      <span itemprop="telephone">(302) 555-0199</span>
      <a itemprop="email" href="mailto:hi@curl.example">hi@curl.example</a>
      <div itemprop="address" itemscope itemtype="https://schema.org/PostalAddress">
        <span itemprop="streetAddress">9 Elm St</span>
        <span itemprop="addressLocality">Newark</span>
      </div>
      <meta itemprop="openingHours" content="Mo-Fr 09:00-17:00">
      <meta itemprop="openingHours" content="Sa 10:00-14:00">
      <a itemprop="sameAs" href="https://x.com/curlup">x</a>
    </div>"""
    got = values(page(body=body))
    assert got["name"] == ("Curl Up", "microdata")
    assert got["telephone"] == ("(302) 555-0199", "microdata")
    assert got["email"] == ("hi@curl.example", "microdata")
    assert got["address"][0] == {"street": "9 Elm St", "locality": "Newark"}
    hours = got["opening_hours"][0]
    assert len(hours) == 6
    assert hours[0] == {"day": "Monday", "opens": "09:00", "closes": "17:00"}
    assert hours[-1] == {"day": "Saturday", "opens": "10:00", "closes": "14:00"}
    assert got["same_as"][0] == ["https://x.com/curlup"]


def test_json_ld_outranks_microdata_and_meta_tags_fill_the_rest() -> None:
    head = (
        ld({"@type": "Restaurant", "name": "From JSON-LD", "telephone": "1"})
        + '<meta property="og:title" content="From OG">'
        + '<meta property="og:image" content="/front.jpg">'
        + '<meta name="description" content="From the description tag">'
    )
    body = '<div itemscope itemtype="https://schema.org/Restaurant"><b itemprop="name">MD</b>'
    body += '<i itemprop="telephone">2</i><i itemprop="priceRange">$</i></div>'
    got = values(page(head, body))
    assert got["name"] == ("From JSON-LD", "json-ld")
    assert got["telephone"] == ("1", "json-ld")
    assert got["price_range"] == ("$", "microdata")
    assert got["description"] == ("From the description tag", "meta")
    assert got["image"] == ("https://joes.example/front.jpg", "meta")


def test_a_page_without_structured_data_gives_an_empty_profile() -> None:
    profile = extract_profile(page(body="<p>Welcome</p>"), PAGE)
    assert profile.empty
    assert profile.to_json() == {"page": PAGE, "fields": {}}
    assert extract_profile("", PAGE).empty
    assert extract_profile("<html><body itemscope>", PAGE).empty


# --------------------------------------------------------------------------------------
# Against the emulator's hosted sites and their ground truth
# --------------------------------------------------------------------------------------

DOVER = 4142290
COMPARED = ("telephone", "email", "opening_hours", "same_as", "address", "price_range", "logo")


def _expected(site: dict[str, Any]) -> dict[str, Any]:
    truth = site.get("lenient_profile") or site["profile"]
    return {k: truth[k] for k in COMPARED if truth.get(k) not in (None, [])}


def test_profiles_of_the_emulators_sites_match_their_truth(sim: Sim) -> None:
    """Every readable home page of a community: what the extractor finds is what the site
    published, source by source; broken blocks give nothing from JSON-LD."""
    businesses = [
        b
        for b in sim.community(DOVER)["businesses"]
        if b.get("site") and b["site"].get("markup") and not b["site"].get("robots_disallowed")
    ]
    assert len(businesses) > 50
    checked: Counter[str] = Counter()
    with httpx.Client(timeout=30, follow_redirects=True) as web:
        for b in businesses:
            site = b["site"]
            if site["kind"] == "slow":
                continue  # 8 s per page: covered by the scan tests
            response = web.get(b["website_uri"])
            profile = extract_profile(response.text, str(response.url))
            got = {k: v["value"] for k, v in profile.fields.items()}
            sources = {v["source"] for v in profile.fields.values()}
            markup = site["markup"]
            checked[markup] += 1
            if markup in ("json-ld", "microdata") or site.get("lenient_profile"):
                expected = _expected(site)
                assert {k: got.get(k) for k in expected} == expected, b["website_uri"]
            elif markup == "malformed":
                assert "json-ld" not in sources, b["website_uri"]
                assert profile.malformed_blocks or site["markup_defect"] == "unknown_type"
            if markup == "none":
                assert profile.empty, b["website_uri"]
            else:
                assert got["description"] == site["profile"]["description"] or (
                    "json-ld" in sources or "microdata" in sources
                )
    assert {"json-ld", "microdata", "meta", "none"} <= set(checked), checked
