"""robots.txt by RFC 9309: the RFC's own examples, group selection, and what each answer means.

Rules are checked through `RobotsRules.allows`, the call the fetcher makes for every request,
with full User-Agent headers: the module must find the product token in them itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from rollout.phase_settings import DEFAULT_USER_AGENT, PhaseSettings
from rollout.phases.website_scan.errors import FetchError, ScanStatus
from rollout.phases.website_scan.robots import (
    RobotsRules,
    parse_robots,
    product_token,
    rules_for_status,
)
from tests.support.phase_fixtures import SiteServer, fetcher_for, homepage, page, redirect

SITE = "https://www.example.com"
US = DEFAULT_USER_AGENT  # "StatewideRolloutBot/0.1 (+local-news platform ...)"


def allowed(robots: str, path: str, user_agent: str = US) -> bool:
    return parse_robots(robots).allows(user_agent, SITE + path)


# --------------------------------------------------------------------------------------
# Section 5: the RFC's examples
# --------------------------------------------------------------------------------------

RFC_5_1 = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


@pytest.mark.parametrize(
    ("user_agent", "path", "expected"),
    [
        # foobot has its own group: everything is disallowed but the two allowed pages.
        ("foobot", "/", False),
        ("foobot", "/example/page.html", True),
        ("foobot", "/example/allowed.gif", True),
        ("foobot", "/example/other.gif", False),
        ("foobot", "/publications/", False),  # the "*" group is not foobot's
        # barbot and bazbot share one group.
        ("barbot", "/example/page.html", False),
        ("barbot", "/example/other.html", True),
        ("bazbot", "/example/page.html", False),
        ("bazbot", "/picture.gif", True),
        # quxbot's group has no rules: everything is allowed.
        ("quxbot", "/example/page.html", True),
        ("quxbot", "/picture.gif", True),
        # Any other crawler obeys the "*" group.
        ("otherbot", "/picture.gif", False),
        ("otherbot", "/images/picture.gif", False),
        ("otherbot", "/picture.gif?size=2", True),  # "$" ends the pattern
        ("otherbot", "/example/", False),
        ("otherbot", "/example/page.html", False),
        ("otherbot", "/publications/", True),
        ("otherbot", "/", True),
        (US, "/picture.gif", False),
        (US, "/publications/2024.html", True),
    ],
)
def test_rfc_simple_example(user_agent: str, path: str, expected: bool) -> None:
    """RFC 9309 section 5.1 (Simple Example), read with sections 2.2.1 and 2.2.2."""
    assert allowed(RFC_5_1, path, user_agent) is expected


def test_rfc_longest_match_example() -> None:
    """RFC 9309 section 5.2: of two matching rules, the longest one is used."""
    robots = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    assert not allowed(robots, "/example/page/disallowed.gif", "foobot")
    assert allowed(robots, "/example/page/", "foobot")
    assert allowed(robots, "/example/page/allowed.gif", "foobot")
    # The order of the rules does not matter, only their length.
    swapped = "User-Agent: foobot\nDisallow: /example/page/disallowed.gif\nAllow: /example/page/\n"
    assert not allowed(swapped, "/example/page/disallowed.gif", "foobot")
    assert allowed(swapped, "/example/page/allowed.gif", "foobot")


# --------------------------------------------------------------------------------------
# Section 2.2.2: Allow and Disallow
# --------------------------------------------------------------------------------------


def test_longest_match_wins_whatever_the_order() -> None:
    """RFC 9309 section 2.2.2: the most specific match (most octets) is used."""
    robots = "User-agent: *\nDisallow: /\nAllow: /news/\nDisallow: /news/drafts/\n"
    assert not allowed(robots, "/menu")
    assert allowed(robots, "/news/")
    assert allowed(robots, "/news/2024/opening.html")
    assert not allowed(robots, "/news/drafts/secret.html")


@pytest.mark.parametrize(
    "robots",
    [
        "User-agent: *\nAllow: /page\nDisallow: /page\n",
        "User-agent: *\nDisallow: /page\nAllow: /page\n",
        "User-agent: *\nDisallow: /*.html\nAllow: /*.html\n",
    ],
)
def test_allow_wins_a_tie(robots: str) -> None:
    """RFC 9309 section 2.2.2: of an equivalent allow and disallow rule, allow is used."""
    assert allowed(robots, "/page.html")


def test_matching_starts_at_the_first_octet_and_is_case_sensitive() -> None:
    """RFC 9309 section 2.2.2: matching starts with the path's first octet, case-sensitively."""
    robots = "User-agent: *\nDisallow: /fish\n"
    assert not allowed(robots, "/fish")
    assert not allowed(robots, "/fish.html")
    assert not allowed(robots, "/fishheads/yummy.html")
    assert allowed(robots, "/Fish.asp")
    assert allowed(robots, "/catfish")


def test_no_matching_rule_and_empty_rules_allow() -> None:
    """RFC 9309 section 2.2.2: no match in the group, or no rules, means allowed."""
    assert allowed("User-agent: *\nDisallow: /private\n", "/public")
    assert allowed("User-agent: *\nDisallow:\n", "/anything")
    assert allowed("", "/anything")
    assert allowed("<html><body>Not a robots.txt</body></html>", "/anything")


def test_robots_txt_itself_is_always_allowed() -> None:
    """RFC 9309 section 2.2.2: the /robots.txt URI is implicitly allowed."""
    assert allowed("User-agent: *\nDisallow: /\n", "/robots.txt")


def test_rules_outside_any_group_are_ignored() -> None:
    """RFC 9309 section 2.2.2: rules before the first user-agent line are ignored."""
    robots = "Disallow: /\n\nUser-agent: *\nDisallow: /private\n"
    assert allowed(robots, "/public")
    assert not allowed(robots, "/private")


@pytest.mark.parametrize(
    ("rule", "uri", "expected"),
    [
        ("/foo/bar?baz=quz", "/foo/bar?baz=quz", False),
        ("/foo/bar/ツ", "/foo/bar/%E3%83%84", False),
        ("/foo/bar/ツ", "/foo/bar/ツ", False),
        ("/foo/bar/%E3%83%84", "/foo/bar/%E3%83%84", False),
        ("/foo/bar/%62%61%7A", "/foo/bar/baz", False),
        ("/foo/bar/%62%61%7A", "/foo/bar/qux", True),
    ],
)
def test_rfc_percent_encoding_examples(rule: str, uri: str, expected: bool) -> None:
    """RFC 9309 section 2.2.2, Table 1: paths compare after percent-encoding normalisation."""
    assert allowed(f"User-agent: *\nDisallow: {rule}\n", uri) is expected


# --------------------------------------------------------------------------------------
# Section 2.2.3: special characters
# --------------------------------------------------------------------------------------


def test_hash_starts_a_comment() -> None:
    """RFC 9309 section 2.2.3, Table 2: "#" designates a line comment."""
    robots = (
        "# comment on its own line\n"
        "User-agent: * # comment after the agent\n"
        "Disallow: /private # comment in line\n"
        "Disallow: # /everything-else, commented out\n"
    )
    assert not allowed(robots, "/private/page")
    assert allowed(robots, "/everything-else")


def test_dollar_ends_the_pattern() -> None:
    """RFC 9309 section 2.2.3, Table 2: "$" designates the end of the match pattern."""
    robots = "User-agent: *\nDisallow: /this/path/exactly$\n"
    assert not allowed(robots, "/this/path/exactly")
    assert allowed(robots, "/this/path/exactly/")
    assert allowed(robots, "/this/path/exactly.html")
    assert allowed(robots, "/this/path/exactly?page=2")


def test_star_matches_any_sequence() -> None:
    """RFC 9309 section 2.2.3, Table 2: "*" designates 0 or more instances of any character."""
    robots = "User-agent: *\nDisallow: /this/*/exactly\n"
    assert not allowed(robots, "/this/a/exactly")
    assert not allowed(robots, "/this/a/b/exactly/more")  # "*" crosses "/"
    assert not allowed(robots, "/this//exactly")  # zero instances
    assert allowed(robots, "/this/exactly")
    assert allowed(robots, "/that/a/exactly")


def test_star_and_dollar_together() -> None:
    """RFC 9309 section 2.2.3: "*" and "$" combine, as sites write them for file types."""
    robots = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /*?sessionid=\n"
    assert not allowed(robots, "/menu.pdf")
    assert not allowed(robots, "/docs/2024/menu.pdf")
    assert allowed(robots, "/menu.pdf?download=1")
    assert allowed(robots, "/menu.pdf.html")
    assert not allowed(robots, "/cart?sessionid=42")
    assert allowed(robots, "/cart")


@pytest.mark.parametrize(
    ("rule", "uri"),
    [
        ("/path/file-with-a-%2A.html", "/path/file-with-a-*.html"),
        ("/path/foo-%24", "/path/foo-$"),
    ],
)
def test_rfc_literal_special_characters_are_percent_encoded(rule: str, uri: str) -> None:
    """RFC 9309 section 2.2.3, Table 3: "%2A" and "%24" match a literal "*" and "$"."""
    robots = f"User-agent: *\nDisallow: {rule}\n"
    assert not allowed(robots, uri)
    # Encoded, they are no longer wildcards or anchors.
    assert allowed(robots, uri.replace("*", "x").replace("$", "x"))


# --------------------------------------------------------------------------------------
# Section 2.2.1: which group applies
# --------------------------------------------------------------------------------------


def test_product_token_of_the_scanner() -> None:
    """RFC 9309 section 2.2.1: the product token is letters, "_" and "-" only."""
    assert product_token(US) == "statewiderolloutbot"
    assert product_token("Foo_Bar-bot/2.1 (+https://x.example)") == "foo_bar-bot"
    assert product_token("1.0") == ""


@pytest.mark.parametrize(
    "agent_line",
    [
        "User-agent: StatewideRolloutBot",
        "User-agent: statewiderolloutbot",
        "USER-AGENT: STATEWIDEROLLOUTBOT",
        "user-agent:StatewideRolloutBot",
        "User-agent: StatewideRolloutBot/0.1",  # a version after the token is not part of it
        "User agent: StatewideRolloutBot",  # a spelling Protego accepts
    ],
)
def test_our_group_is_found_case_insensitively(agent_line: str) -> None:
    """RFC 9309 section 2.2.1: case-insensitive matching of the product token."""
    robots = f"User-agent: *\nDisallow: /\n\n{agent_line}\nDisallow: /private\n"
    assert allowed(robots, "/public")
    assert not allowed(robots, "/private")


@pytest.mark.parametrize(
    "other_agent",
    [
        "Statewide",  # a prefix of our token
        "RolloutBot",  # a suffix of it
        "bot",
        "local",  # a word of the User-Agent header's comment
        "news",
        "StatewideRolloutBotPlus",
        "*bot",
    ],
)
def test_other_agents_groups_do_not_apply_to_us(other_agent: str) -> None:
    """RFC 9309 section 2.2.1: a group applies when its token equals ours, not contains it."""
    robots = f"User-agent: {other_agent}\nDisallow: /\n\nUser-agent: *\nDisallow: /private\n"
    assert allowed(robots, "/public")
    assert not allowed(robots, "/private")


def test_groups_of_the_same_agent_are_merged() -> None:
    """RFC 9309 section 2.2.1: the rules of every group matching us are combined."""
    robots = (
        "User-agent: StatewideRolloutBot\nDisallow: /a\n\n"
        "User-agent: *\nDisallow: /c\n\n"
        "User-agent: statewiderolloutbot/0.1\nDisallow: /b\nAllow: /a/open\n"
    )
    assert not allowed(robots, "/a/closed")
    assert not allowed(robots, "/b")
    assert allowed(robots, "/a/open")  # longest match across the merged groups
    assert allowed(robots, "/c")  # the "*" group is not ours once we have one


def test_star_group_is_the_fallback() -> None:
    """RFC 9309 section 2.2.1: with no group for us, the "*" group applies, else nothing."""
    robots = "User-agent: googlebot\nDisallow: /\n\nUser-agent: *\nDisallow: /private\n"
    assert allowed(robots, "/public")
    assert not allowed(robots, "/private")
    assert allowed("User-agent: googlebot\nDisallow: /\n", "/private")
    # "*" followed by more words is still the catch-all.
    assert not allowed("User-agent: * # everyone\nDisallow: /private\n", "/private")


def test_a_group_has_every_agent_line_before_its_rules() -> None:
    """RFC 9309 section 2.1 and 2.2.1: one or more user-agent lines, then the rules."""
    robots = "User-agent: googlebot\nUser-agent: StatewideRolloutBot\nDisallow: /private\n"
    assert not allowed(robots, "/private")
    assert not allowed(robots, "/private", "Googlebot/2.1")
    assert allowed(robots, "/private", "bingbot")


def test_other_records_do_not_end_a_group() -> None:
    """RFC 9309 section 2.2.4: a Sitemap record must not terminate a group."""
    robots = (
        "User-agent: StatewideRolloutBot\nDisallow: /a\n"
        "Sitemap: https://www.example.com/sitemap.xml\nDisallow: /b\n"
    )
    assert not allowed(robots, "/a")
    assert not allowed(robots, "/b")


def test_crawl_delay_comes_from_our_group() -> None:
    """RFC 9309 section 2.2.4: Crawl-delay is another record; it is read from our group."""
    robots = (
        "User-agent: *\nCrawl-delay: 10\n\n"
        "User-agent: StatewideRolloutBot\nCrawl-delay: 2.5\nDisallow: /private\n"
    )
    assert parse_robots(robots).crawl_delay(US) == 2.5
    assert parse_robots(robots).crawl_delay("otherbot") == 10.0
    assert parse_robots("User-agent: *\nCrawl-delay: soon\n").crawl_delay(US) == 0.0
    assert parse_robots("User-agent: *\nCrawl-delay: -3\n").crawl_delay(US) == 0.0
    assert parse_robots("User-agent: googlebot\nCrawl-delay: 9\n").crawl_delay(US) == 0.0
    assert RobotsRules(allow_all=True).crawl_delay(US) == 0.0


# --------------------------------------------------------------------------------------
# Section 2.3: access results
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "allows"),
    [
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (410, True),
        (429, False),  # "slow down" is not "no file"
        (500, False),
        (503, False),
    ],
)
def test_what_a_status_means(status: int, allows: bool) -> None:
    """RFC 9309 sections 2.3.1.3 (4xx: unavailable, crawl) and 2.3.1.4 (5xx: disallow)."""
    rules = rules_for_status(status, b"User-agent: *\nAllow: /\n")
    assert rules.allows(US, SITE + "/anything") is allows
    assert str(status) in rules.note


def test_a_successful_answer_is_parsed() -> None:
    """RFC 9309 section 2.3.1.1: a successful download's parseable rules are followed."""
    body = b"\xef\xbb\xbfUser-agent: *\nDisallow: /private\n\xff\xfe garbage line\n"
    rules = rules_for_status(200, body)
    # The byte order mark does not hide the first line, and a bad line does not spoil the rest.
    assert not rules.allows(US, SITE + "/private")
    assert rules.allows(US, SITE + "/public")


def settings_for(*allow: str, **overrides: Any) -> PhaseSettings:
    values: dict[str, Any] = {
        "scan_allow_hosts": list(allow),
        "scan_timeout_s": 0.5,
        "scan_max_crawl_delay_s": 0.0,
    }
    values.update(overrides)
    return PhaseSettings(**values)


async def test_redirected_robots_txt_applies_to_the_initial_authority() -> None:
    """RFC 9309 section 2.3.1.2: up to five redirects, even across hosts, are followed."""
    async with SiteServer() as site, SiteServer(host="127.0.0.2") as elsewhere:
        site.route("/robots.txt", redirect("/r1"))
        for i in range(1, 4):
            site.route(f"/r{i}", redirect(f"/r{i + 1}"))
        site.route("/r4", redirect(elsewhere.url("/shared-robots.txt")))  # the fifth
        elsewhere.route(
            "/shared-robots.txt",
            page("User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        )
        site.route("/public", page(homepage("Public")))
        site.route("/private", page(homepage("Private")))
        async with fetcher_for(settings_for(site.hostport, elsewhere.hostport)) as fetcher:
            assert (await fetcher.fetch(site.url("/public"))).status_code == 200
            with pytest.raises(FetchError) as refused:
                await fetcher.fetch(site.url("/private"))
            assert refused.value.status is ScanStatus.ROBOTS_DISALLOWED
        assert site.hits("/private") == 0


async def test_too_many_robots_redirects_mean_unavailable() -> None:
    """RFC 9309 section 2.3.1.2: more than five redirects, the file may be taken as missing."""
    async with SiteServer() as site:
        site.route("/robots.txt", redirect("/r1"))
        for i in range(1, 6):
            site.route(f"/r{i}", redirect(f"/r{i + 1}"))
        site.route("/r6", page("User-agent: *\nDisallow: /\n", content_type="text/plain"))
        site.route("/private", page(homepage("Private")))
        async with fetcher_for(settings_for(site.hostport)) as fetcher:
            assert (await fetcher.fetch(site.url("/private"))).status_code == 200
            assert "unavailable" in (await fetcher.robots.rules_for(site.origin)).note
        assert site.hits("/r6") == 0


async def test_unreachable_robots_txt_disallows_everything() -> None:
    """RFC 9309 section 2.3.1.4: a 5xx robots.txt means complete disallow."""
    async with SiteServer() as site:
        site.route("/robots.txt", page("overloaded", 503, content_type="text/plain"))
        site.route("/", page(homepage("Home")))
        async with fetcher_for(settings_for(site.hostport)) as fetcher:
            with pytest.raises(FetchError) as refused:
                await fetcher.fetch(site.url("/"))
            assert refused.value.status is ScanStatus.ROBOTS_DISALLOWED
            assert "503" in refused.value.message
        assert site.hits("/") == 0
