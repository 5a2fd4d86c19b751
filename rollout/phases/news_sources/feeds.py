"""Parse what a site publishes, once, to decide whether it is worth collecting.

- RSS 0.9x/2.0, RSS 1.0 (RDF), Atom 1.0 and Atom 0.3 with defusedxml: these documents come
  from arbitrary servers, and defusedxml refuses entity declarations (billion laughs,
  external entities) instead of expanding them. Before parsing, the document is forgiven
  what feed readers forgive (`_forgive`): whitespace or a byte order mark before `<?xml`,
  HTML named entities (`&nbsp;`, `&eacute;`), which XML does not define, and bare `&`;
- iCalendar (RFC 5545) with a small line parser: unfold, then read VCALENDAR/VEVENT
  properties; only the few fields needed to judge the calendar are read;
- HTML news/event pages with html.parser: the page title and its article-like links.

A source is usable when it has a title, a link and at least one item (`ParsedFeed.problem`).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from html.entities import html5
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urldefrag, urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

FeedKind = Literal["rss", "atom", "ical", "html"]

ATOM_NS = "{http://www.w3.org/2005/Atom}"
# Atom 0.3, the pre-standard draft some old blogs and site builders still serve: its feed,
# entry, title and link elements read like Atom 1.0's.
ATOM03_NS = "{http://purl.org/atom/ns#}"
RSS1_NS = "{http://purl.org/rss/1.0/}"
RDF_TAG = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
MAX_ITEMS = 500  # counted; a feed with more is still one feed


class FeedError(ValueError):
    """The document is not a feed of the expected kind (or not well-formed)."""


@dataclass(frozen=True, slots=True)
class FeedItem:
    title: str | None
    link: str | None


@dataclass(slots=True)
class ParsedFeed:
    kind: FeedKind
    title: str | None
    link: str | None
    items: list[FeedItem] = field(default_factory=list)

    @property
    def item_count(self) -> int:
        return len(self.items)

    @property
    def problem(self) -> str | None:
        """Why this source is not usable, or None."""
        if not self.items:
            return "no items"
        if not self.title:
            return "no title"
        if not (self.link or any(item.link for item in self.items)):
            return "no link"
        return None


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    text = " ".join("".join(element.itertext()).split())
    return text or None


def _join(base: str, href: str | None) -> str | None:
    if not href or not href.strip():
        return None
    url = urldefrag(urljoin(base, href.strip()))[0]
    return url if urlsplit(url).scheme in ("http", "https") else None


def sniff(body: bytes, content_type: str = "") -> FeedKind | None:
    """A quick guess from the first bytes and the media type, before a full parse."""
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"begin:vcalendar") or content_type == "text/calendar":
        return "ical"
    if b"<rss" in head or b"<rdf:rdf" in head or content_type == "application/rss+xml":
        return "rss"
    if b"<feed" in head or content_type == "application/atom+xml":
        return "atom"
    return None


def parse_feed(body: bytes, url: str) -> ParsedFeed:
    """RSS or Atom from `body` (fetched from `url`, used to resolve relative links)."""
    try:
        root = fromstring(_forgive(body))
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise FeedError(f"not well-formed XML: {exc}") from None
    tag = root.tag
    if tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise FeedError("RSS without a channel")
        link = _join(url, _text(channel.find("link")))
        items = [
            FeedItem(_text(i.find("title")), _join(url, _text(i.find("link")) or _guid(i)))
            for i in channel.iter("item")
        ]
        return ParsedFeed("rss", _text(channel.find("title")), link, items[:MAX_ITEMS])
    if tag == RDF_TAG:
        channel = root.find(f"{RSS1_NS}channel")
        items = [
            FeedItem(_text(i.find(f"{RSS1_NS}title")), _join(url, _text(i.find(f"{RSS1_NS}link"))))
            for i in root.iter(f"{RSS1_NS}item")
        ]
        return ParsedFeed(
            "rss",
            _text(channel.find(f"{RSS1_NS}title")) if channel is not None else None,
            _join(url, _text(channel.find(f"{RSS1_NS}link"))) if channel is not None else None,
            items[:MAX_ITEMS],
        )
    for ns in (ATOM_NS, ATOM03_NS):
        if tag == f"{ns}feed":
            entries = [
                FeedItem(_text(e.find(f"{ns}title")), _atom_link(e, url, ns))
                for e in root.iter(f"{ns}entry")
            ]
            return ParsedFeed(
                "atom",
                _text(root.find(f"{ns}title")),
                _atom_link(root, url, ns),
                entries[:MAX_ITEMS],
            )
    raise FeedError(f"not RSS or Atom (root element {tag!r})")


def _guid(item: Element) -> str | None:
    guid = item.find("guid")
    if guid is None or guid.get("isPermaLink", "true").lower() == "false":
        return None
    return _text(guid)


def _atom_link(element: Element, base: str, ns: str) -> str | None:
    fallback = None
    for link in element.findall(f"{ns}link"):
        rel = link.get("rel", "alternate")
        if rel == "alternate":
            return _join(base, link.get("href"))
        if fallback is None and rel != "self":
            fallback = _join(base, link.get("href"))
    return fallback


# --------------------------------------------------------------------------------------
# What feed readers forgive
# --------------------------------------------------------------------------------------

_UTF8_BOM = b"\xef\xbb\xbf"
_XML_SPACE = b" \t\r\n"
# Markup inside which "&" starts no reference, so nothing in it is rewritten.
_MARKUP = re.compile(rb"<!\[CDATA\[|<!--|<\?|<!DOCTYPE")
_BARE_AMPERSAND = re.compile(rb"&(?!#[0-9]+;|#[xX][0-9A-Fa-f]+;|[A-Za-z][A-Za-z0-9]*;)")
# Named references but the five XML defines itself, which are left for the parser.
_NAMED_REFERENCE = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z][A-Za-z0-9]*);")
_DECLARED_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
# Encodings in which an ASCII byte can be part of another character (stateful ones).
_STATEFUL_ENCODINGS = ("iso2022", "utf-7", "hz")


def _forgive(body: bytes) -> bytes:
    """`body` with what browsers and feed readers overlook made well-formed.

    - whitespace and a byte order mark before the XML declaration (a declaration must be
      the very first thing; PHP templates and CMS plugins often emit blank lines first);
    - HTML named entities become character references (`&nbsp;` -> `&#160;`): XML knows
      only amp, lt, gt, quot and apos, yet feeds are written by people who write HTML;
    - a "&" that starts no reference ("Fish & Chips", "?a=1&b=2") becomes `&amp;`, and an
      unknown name (`&foo;`) is kept as the text it shows in a browser.

    Only HTML's fixed names become characters (one or two references each); nothing a
    document declares is expanded here, and since only "&..." sequences are rewritten,
    every entity declaration stays in the document for defusedxml to refuse. CDATA
    sections, comments, processing instructions and the DOCTYPE are left as written.

    Only documents whose bytes for "&", "<" and letters are ASCII's are rewritten: UTF-16
    or UTF-32 and stateful encodings are passed on untouched.
    """
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:4]:
        return body
    rest = body.lstrip(_XML_SPACE)
    bom = b""
    if rest.startswith(_UTF8_BOM):
        bom, rest = _UTF8_BOM, rest[len(_UTF8_BOM) :].lstrip(_XML_SPACE)
    if not _ascii_based(rest[:512]):
        return bom + rest
    return bom + _rewrite_references(rest)


def _ascii_based(head: bytes) -> bool:
    match = _DECLARED_ENCODING.match(head)
    if match is None:
        return True  # no declaration: UTF-8 (XML 1.0 section 4.3.3)
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return False
    if name.startswith(_STATEFUL_ENCODINGS):
        return False
    return "<&;#x".encode(name) == b"<&;#x"  # not EBCDIC, not UTF-16 or UTF-32


def _rewrite_references(body: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while (found := _MARKUP.search(body, pos)) is not None:
        end = _markup_end(body, found.start(), found.group(0))
        if end < 0:  # unterminated: the parser will say so
            break
        out += (_rewrite_text(body[pos : found.start()]), body[found.start() : end])
        pos = end
    out.append(_rewrite_text(body[pos:]))
    return b"".join(out)


def _rewrite_text(text: bytes) -> bytes:
    if b"&" not in text:
        return text
    return _NAMED_REFERENCE.sub(_named_reference, _BARE_AMPERSAND.sub(b"&amp;", text))


def _named_reference(match: re.Match[bytes]) -> bytes:
    name = match.group(1)
    text = html5.get(name.decode("ascii") + ";")
    if text is None:
        return b"&amp;" + name + b";"
    return "".join(f"&#{ord(char)};" for char in text).encode("ascii")


def _markup_end(body: bytes, start: int, opener: bytes) -> int:
    """Where the CDATA section, comment, PI or DOCTYPE opened at `start` ends; -1 if never."""
    if opener == b"<!DOCTYPE":
        close = body.find(b">", start)
        subset = body.find(b"[", start, close) if close >= 0 else -1
        if subset >= 0:  # an internal subset: its declarations hold ">" of their own
            close = body.find(b"]", subset)
            close = body.find(b">", close) if close >= 0 else -1
        return close + 1 if close >= 0 else -1
    terminator = {b"<![CDATA[": b"]]>", b"<!--": b"-->", b"<?": b"?>"}[opener]
    close = body.find(terminator, start + len(opener))
    return close + len(terminator) if close >= 0 else -1


# --------------------------------------------------------------------------------------
# iCalendar
# --------------------------------------------------------------------------------------

_ICS_NAME = re.compile(r"^([A-Za-z0-9-]+)((?:;[^:]*)?):(.*)$")


def _unescape_ics(value: str) -> str:
    return (
        value.replace("\\n", " ")
        .replace("\\N", " ")
        .replace("\\,", ",")
        .replace("\\;", ";")
        .replace("\\\\", "\\")
        .strip()
    )


def parse_ical(body: bytes, url: str) -> ParsedFeed:
    """Events of an iCalendar file; the calendar's own URL is its link."""
    text = body.decode("utf-8", "replace")
    # RFC 5545 3.1: a line starting with a space or tab continues the previous one.
    lines: list[str] = []
    for raw in text.splitlines():
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw)
    if not lines or lines[0].strip().upper() != "BEGIN:VCALENDAR":
        raise FeedError("not an iCalendar file")
    title = None
    link = None
    items: list[FeedItem] = []
    depth: list[str] = []
    event: dict[str, str] = {}
    for line in lines:
        match = _ICS_NAME.match(line.strip())
        if not match:
            continue
        name, value = match.group(1).upper(), match.group(3)
        if name == "BEGIN":
            depth.append(value.strip().upper())
            if depth[-1] == "VEVENT":
                event = {}
        elif name == "END":
            if depth and depth[-1] == "VEVENT" and len(items) < MAX_ITEMS:
                items.append(FeedItem(event.get("SUMMARY"), _join(url, event.get("URL"))))
            if depth:
                depth.pop()
        elif depth and depth[-1] == "VEVENT" and name in ("SUMMARY", "URL"):
            event[name] = _unescape_ics(value)
        elif depth == ["VCALENDAR"] and name == "X-WR-CALNAME":
            title = _unescape_ics(value) or None
        elif depth == ["VCALENDAR"] and name == "URL":
            link = _join(url, _unescape_ics(value))
    events = [item for item in items if item.title]
    # A calendar file needs no name to be useful: its first event names it if need be.
    return ParsedFeed("ical", title or (events[0].title if events else None), link or url, events)


# --------------------------------------------------------------------------------------
# HTML news and event pages
# --------------------------------------------------------------------------------------


class _ListingParser(HTMLParser):
    """Collects the page title and links inside <article> or headings (h1-h4)."""

    _CONTAINERS = frozenset({"article", "h1", "h2", "h3", "h4"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title_parts: list[str] = []
        self.items: list[tuple[str, str]] = []
        self._in_title = False
        self._containers = 0
        self._anchor: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._CONTAINERS:
            self._containers += 1
        elif tag == "a" and self._containers:
            href = dict(attrs).get("href")
            if href:
                self._anchor = (href, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._CONTAINERS and self._containers:
            self._containers -= 1
        elif tag == "a" and self._anchor is not None:
            href, text = self._anchor
            self.items.append((href, " ".join("".join(text).split())))
            self._anchor = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._anchor is not None:
            self._anchor[1].append(data)


def parse_html_listing(html: str, url: str) -> ParsedFeed:
    parser = _ListingParser()
    parser.feed(html)
    parser.close()
    seen: set[str] = set()
    items: list[FeedItem] = []
    for href, text in parser.items:
        link = _join(url, href)
        if link is None or not text or link in seen or link.rstrip("/") == url.rstrip("/"):
            continue
        seen.add(link)
        items.append(FeedItem(text[:300], link))
        if len(items) >= MAX_ITEMS:
            break
    title = " ".join("".join(parser.title_parts).split()) or None
    return ParsedFeed("html", title, url, items)
