"""Business websites hosted by the emulator, for the website-scanning phase.

A business with a website gets one `SiteKind`, drawn from SITE_KIND_SHARES; the kind decides
what its site serves under /sites/<slug>/ and is in the ground truth (/sim/world), together
with what a polite, SSRF-safe scanner should find there (`site_truth`).

Good sites publish nothing (plain), an RSS 2.0 or Atom feed, an iCal event feed, a news or blog
page, or all of them. Bad ones are slow, broken (500, connection reset, invalid HTML), redirect
through a chain or in a loop, are huge, redirect to a private address, or list a private
address as their website. The emulator never contacts a private address: they only appear in
Location headers and websiteUri values.

All sites share the emulator's host, so the host's /robots.txt disallows every site whose slug
starts with "nobots-" (the robots_disallow kind); each site also answers
/sites/<slug>/robots.txt with its own rules.

A site whose home page is a readable HTML page (`HTML_HOME_KINDS`) also describes the business
in one markup style (`Markup`, drawn per business from MARKUP_SHARES): schema.org JSON-LD,
microdata, only meta tags, nothing, or JSON-LD that is broken in one of the ways real sites
break it (`Defect`). The facts are a `SiteProfile`; the ground truth reports the style and the
facts a correct extractor finds there (`SiteProfile.truth`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import random
import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from placesim.world import Business


class SiteKind(StrEnum):
    PLAIN = "plain"
    RSS = "rss"
    ATOM = "atom"
    ICAL = "ical"
    NEWS = "news"
    BLOG = "blog"
    FULL = "full"  # RSS + iCal + news page
    ROBOTS_DISALLOW = "robots_disallow"  # has an RSS feed, but robots.txt forbids crawling
    SLOW = "slow"  # has an RSS feed, every response takes `site_slow_s`
    BROKEN_500 = "broken_500"
    BROKEN_RESET = "broken_reset"  # connection reset, no response
    INVALID_HTML = "invalid_html"
    REDIRECT_CHAIN = "redirect_chain"  # 3 redirects, then a home page with an RSS feed
    REDIRECT_LOOP = "redirect_loop"
    HUGE = "huge"  # a home page of HUGE_PAGE_BYTES, nothing to find
    REDIRECT_PRIVATE = "redirect_private"  # 302 to a private/metadata address
    PRIVATE_URI = "private_uri"  # websiteUri itself is a private address


# Shares among businesses that have a website (they sum to 1).
SITE_KIND_SHARES: tuple[tuple[SiteKind, float], ...] = (
    (SiteKind.PLAIN, 0.40),
    (SiteKind.RSS, 0.12),
    (SiteKind.ATOM, 0.05),
    (SiteKind.ICAL, 0.05),
    (SiteKind.NEWS, 0.08),
    (SiteKind.BLOG, 0.04),
    (SiteKind.FULL, 0.04),
    (SiteKind.ROBOTS_DISALLOW, 0.04),
    (SiteKind.SLOW, 0.03),
    (SiteKind.BROKEN_500, 0.02),
    (SiteKind.BROKEN_RESET, 0.02),
    (SiteKind.INVALID_HTML, 0.02),
    (SiteKind.REDIRECT_CHAIN, 0.03),
    (SiteKind.REDIRECT_LOOP, 0.01),
    (SiteKind.HUGE, 0.01),
    (SiteKind.REDIRECT_PRIVATE, 0.02),
    (SiteKind.PRIVATE_URI, 0.02),
)

# Private, link-local and metadata addresses: targets a scanner must refuse (SSRF).
PRIVATE_WEBSITES = (
    "http://192.168.1.20/",
    "http://10.0.0.1/",
    "http://172.16.5.4:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd12:3456:789a::1]/",
)
PRIVATE_REDIRECTS = ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin")

HUGE_PAGE_BYTES = 5 * 1024 * 1024
FEED_ITEMS = 5
ROBOTS_TXT = "User-agent: *\nDisallow: /sites/nobots-\nDisallow: /sim/\nDisallow: /v1/\n"


def choose_site_kind(u: float) -> SiteKind:
    """The kind for a uniform draw u in [0, 1)."""
    total = 0.0
    for kind, share in SITE_KIND_SHARES:
        total += share
        if u < total:
            return kind
    return SITE_KIND_SHARES[-1][0]


def private_website(u: float) -> str:
    return PRIVATE_WEBSITES[int(u * len(PRIVATE_WEBSITES)) % len(PRIVATE_WEBSITES)]


_RSS_KINDS = {SiteKind.RSS, SiteKind.FULL, SiteKind.ROBOTS_DISALLOW, SiteKind.SLOW}


def site_truth(business: Business, base_url: str) -> dict[str, Any] | None:
    """What the business's site holds, for the ground truth: its kind and URLs of the feeds,
    event calendars and news pages a scanner should discover, and its home page's markup
    (`SiteProfile.truth`; all None for a site without a readable HTML home page)."""
    kind = business.site_kind
    if kind is None:
        return None
    site: dict[str, Any] = {
        "kind": kind.value,
        "url": business.website_uri(base_url),
        "robots_disallowed": kind is SiteKind.ROBOTS_DISALLOW,
        "feeds": [],
        "calendars": [],
        "news_pages": [],
    }
    if business.slug is None:
        return site | _NO_MARKUP_TRUTH
    root = f"{base_url}/sites/{business.slug}"
    profile = site_profile(business, root)
    site |= profile.truth() if profile is not None else _NO_MARKUP_TRUTH
    if kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN:
        site["feeds"].append({"type": "rss", "url": f"{root}/feed.xml"})
    if kind is SiteKind.ATOM:
        site["feeds"].append({"type": "atom", "url": f"{root}/atom.xml"})
    if kind in (SiteKind.ICAL, SiteKind.FULL):
        site["calendars"].append({"type": "ical", "url": f"{root}/events.ics"})
    if kind in (SiteKind.NEWS, SiteKind.FULL):
        site["news_pages"].append(f"{root}/news")
    if kind is SiteKind.BLOG:
        site["news_pages"].append(f"{root}/blog")
    if kind is SiteKind.REDIRECT_PRIVATE:
        site["redirect_to"] = _private_redirect(business)
    return site


def _private_redirect(business: Business) -> str:
    return PRIVATE_REDIRECTS[business.index % len(PRIVATE_REDIRECTS)]


# --------------------------------------------------------------------------------------
# Structured data: what a business's home page says about the business
# --------------------------------------------------------------------------------------


class Markup(StrEnum):
    JSON_LD = "json-ld"
    MICRODATA = "microdata"
    META = "meta"  # only <meta name="description"> and the Open Graph tags
    NONE = "none"
    MALFORMED = "malformed"  # JSON-LD a strict JSON-LD reader cannot use, plus the meta tags


# Shares among sites with an HTML home page (they sum to 1).
MARKUP_SHARES: tuple[tuple[Markup, float], ...] = (
    (Markup.JSON_LD, 0.45),
    (Markup.MICRODATA, 0.10),
    (Markup.META, 0.20),
    (Markup.NONE, 0.20),
    (Markup.MALFORMED, 0.05),
)


class Defect(StrEnum):
    """How a malformed site's JSON-LD is broken; each as common as the others."""

    TRAILING_COMMA = "trailing_comma"  # {"priceRange": "$$",}
    TRUNCATED = "truncated"  # the block stops mid-object (a CMS field length limit)
    HTML_ENTITIES = "html_entities"  # the CMS escaped the block: {&quot;@context&quot;: ...
    RAW_NEWLINE = "raw_newline"  # a line break pasted inside a string, not written \n
    UNKNOWN_TYPE = "unknown_type"  # valid JSON, but @type is no schema.org type
    JSON_STRING = "json_string"  # the object encoded twice: the block is one JSON string


# Defects a lenient extractor still reads the business through: it repairs trailing commas,
# accepts control characters inside strings and takes any typed node with contact details
# for the business. The ground truth gives what such an extractor finds (`lenient_profile`).
REPAIRABLE_DEFECTS = frozenset({Defect.TRAILING_COMMA, Defect.RAW_NEWLINE, Defect.UNKNOWN_TYPE})

# Kinds whose home page is an ordinary HTML page, so they carry markup. Left out: pages a
# scanner cannot read or must not fetch (broken_500, broken_reset, invalid_html's garbage,
# redirect_loop, redirect_private, private_uri) and huge, whose page holds nothing to find.
# robots_disallow sites carry markup like any other (its truth says what the site holds, as
# for its feed); `robots_disallowed` tells a polite scanner not to read it.
HTML_HOME_KINDS = frozenset(
    {
        SiteKind.PLAIN,
        SiteKind.RSS,
        SiteKind.ATOM,
        SiteKind.ICAL,
        SiteKind.NEWS,
        SiteKind.BLOG,
        SiteKind.FULL,
        SiteKind.ROBOTS_DISALLOW,
        SiteKind.SLOW,
        SiteKind.REDIRECT_CHAIN,  # on the chain's final page, /home
    }
)

LOGO_PATH = "images/logo.png"
IMAGE_PATH = "images/storefront.png"

# schema.org type by primary type: LocalBusiness subtypes where schema.org has one, else
# what sites of that trade use (Church, School, Museum, VeterinaryCare and EventVenue are
# not LocalBusiness subtypes in schema.org, but are what such sites publish). Several
# entries: sites of that trade use each. Unlisted types fall back to LocalBusiness.
_RESTAURANT = ("Restaurant",)
_SCHEMA_TYPES: dict[str, tuple[str, ...]] = {
    "restaurant": _RESTAURANT,
    "italian_restaurant": _RESTAURANT,
    "mexican_restaurant": _RESTAURANT,
    "chinese_restaurant": _RESTAURANT,
    "pizza_restaurant": _RESTAURANT,
    "fast_food_restaurant": ("FastFoodRestaurant",),
    "cafe": ("CafeOrCoffeeShop",),
    "coffee_shop": ("CafeOrCoffeeShop",),
    "bar": ("BarOrPub",),
    "bakery": ("Bakery",),
    "grocery_store": ("GroceryStore",),
    "supermarket": ("GroceryStore",),
    "convenience_store": ("ConvenienceStore",),
    "hardware_store": ("HardwareStore",),
    "clothing_store": ("ClothingStore",),
    "furniture_store": ("FurnitureStore",),
    "florist": ("Florist",),
    "book_store": ("BookStore",),
    "pet_store": ("PetStore",),
    "liquor_store": ("LiquorStore",),
    "auto_parts_store": ("AutoPartsStore",),
    "hair_salon": ("HairSalon",),
    "barber_shop": ("HairSalon",),
    "beauty_salon": ("BeautySalon",),
    "nail_salon": ("NailSalon",),
    "spa": ("DaySpa",),
    "laundry": ("DryCleaningOrLaundry",),
    "lawyer": ("Attorney", "LegalService"),
    "accounting": ("AccountingService",),
    "insurance_agency": ("InsuranceAgency",),
    "real_estate_agency": ("RealEstateAgent",),
    "bank": ("BankOrCreditUnion",),
    "plumber": ("Plumber",),
    "electrician": ("Electrician",),
    "roofing_contractor": ("RoofingContractor",),
    "painter": ("HousePainter",),
    "locksmith": ("Locksmith",),
    "moving_company": ("MovingCompany",),
    "storage": ("SelfStorage",),
    "travel_agency": ("TravelAgency",),
    "child_care_agency": ("ChildCare",),
    "car_repair": ("AutoRepair",),
    "car_dealer": ("AutoDealer",),
    "car_wash": ("AutoWash",),
    "gas_station": ("GasStation",),
    "dentist": ("Dentist",),
    "doctor": ("Physician", "MedicalClinic"),
    "chiropractor": ("MedicalBusiness",),
    "physiotherapist": ("Physiotherapy",),
    "pharmacy": ("Pharmacy",),
    "veterinary_care": ("VeterinaryCare",),
    "gym": ("ExerciseGym",),
    "yoga_studio": ("HealthClub",),
    "church": ("Church",),
    "school": ("School",),
    "preschool": ("Preschool",),
    "library": ("Library",),
    "post_office": ("PostOffice",),
    "museum": ("Museum",),
    "art_gallery": ("ArtGallery",),
    "event_venue": ("EventVenue",),
    "hotel": ("Hotel",),
    "motel": ("Motel",),
}
# What a malformed site's UNKNOWN_TYPE block says instead (typos and made-up types).
_UNKNOWN_TYPES = ("LocalBuisness", "Local Business", "Company", "Resturant")
# Trades whose sites state a price range.
_PRICE_RANGE_TYPES = frozenset(
    {
        "restaurant", "italian_restaurant", "mexican_restaurant", "chinese_restaurant",
        "pizza_restaurant", "fast_food_restaurant", "cafe", "coffee_shop", "bar", "bakery",
        "hair_salon", "barber_shop", "beauty_salon", "nail_salon", "spa", "hotel", "motel",
    }
)  # fmt: skip
_PRICE_RANGES = ("$", "$$", "$$", "$$$")  # by the price level Google shows (placesim.fields)
_SOCIAL_PROFILES = (
    "https://www.facebook.com/{slug}",
    "https://www.instagram.com/{slug}",
    "https://x.com/{slug}",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TAGLINES = (
    "Serving {town} since {year}.",
    "Call or stop by today.",
    "Proudly local since {year}.",
    "Part of the community since {year}.",
)
_JSON_LD_SHAPES = ("single", "single", "graph", "list", "blocks")
_NO_MARKUP_TRUTH: dict[str, Any] = {
    "markup": None,
    "markup_defect": None,
    "meta_tags": None,
    "profile": None,
    "lenient_profile": None,
}


@dataclass(frozen=True)
class OpeningHours:
    days: tuple[int, ...]  # consecutive, 0 = Monday ... 6 = Sunday
    opens: str  # "07:00"
    closes: str

    def normalised(self) -> list[dict[str, str]]:
        return [
            {"day": _WEEKDAYS[d], "opens": self.opens, "closes": self.closes} for d in self.days
        ]

    def text(self) -> str:
        """The microdata form, "Mo-Sa 07:00-19:00"."""
        first, last = _WEEKDAYS[self.days[0]][:2], _WEEKDAYS[self.days[-1]][:2]
        return f"{first}-{last} {self.opens}-{self.closes}"


@dataclass(frozen=True)
class Spelling:
    """How one site writes its markup: the variations real sites show."""

    shape: str  # JSON-LD: "single" object, "graph" (with a WebSite), top-level "list", "blocks"
    http_context: bool  # "http://schema.org" rather than "https://schema.org"
    day_style: int  # 0: dayOfWeek a list of URLs, 1: one spec per day, 2: a list of names
    seconds: bool  # "09:00:00" rather than "09:00"
    in_body: bool  # JSON-LD at the end of <body> rather than in <head>
    type_list: bool  # "@type": ["LocalBusiness", "Restaurant"]
    pretty: bool  # indented JSON
    image_in_markup: bool  # the JSON-LD or microdata repeats og:image as `image`
    hours_in_time: bool  # microdata: <time datetime=...> rather than <meta content=...>
    unknown_type: str  # the @type of an UNKNOWN_TYPE block


@dataclass(frozen=True)
class SiteProfile:
    """The facts a business's home page publishes about it, and how (`markup`, `spelling`).
    JSON-LD and microdata carry every fact; the meta tags only the description and image."""

    markup: Markup
    defect: Defect | None
    schema_type: str
    name: str
    url: str
    telephone: str  # as the site writes it
    telephone_e164: str
    email: str | None
    logo: str | None
    image: str
    description: str
    og_title: str
    og_type: str
    address: dict[str, str] | None  # None for a pure service-area business
    area_served: str | None
    hours: OpeningHours | None
    same_as: tuple[str, ...]
    price_range: str | None
    spelling: Spelling

    # -- ground truth --------------------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        """The markup style and what an extractor finds: `profile` for a strict one (JSON
        parsed as JSON, schema.org types only), `lenient_profile` for one that repairs what
        it can, given only where the two differ (a repairable defect)."""
        lenient = self.markup is Markup.MALFORMED and self.defect in REPAIRABLE_DEFECTS
        return {
            "markup": self.markup.value,
            "markup_defect": self.defect.value if self.defect else None,
            "meta_tags": None if self.markup is Markup.NONE else self.meta_tags(),
            "profile": self._found(lenient=False),
            "lenient_profile": self._found(lenient=True) if lenient else None,
        }

    def meta_tags(self) -> dict[str, str]:
        return {
            "description": self.description,
            "og:title": self.og_title,
            "og:description": self.description,
            "og:image": self.image,
            "og:url": self.url,
            "og:type": self.og_type,
        }

    def _found(self, *, lenient: bool) -> dict[str, Any]:
        if self.markup is Markup.NONE:
            return _empty_profile()
        if self.markup is Markup.META or (self.markup is Markup.MALFORMED and not lenient):
            return _empty_profile() | {"description": self.description, "image": self.image}
        schema_type = self.schema_type
        if self.defect is Defect.UNKNOWN_TYPE:
            schema_type = self.spelling.unknown_type
        return {
            "schema_type": schema_type,
            "name": self.name,
            "url": self.url,
            "telephone": self.telephone,
            "telephone_e164": self.telephone_e164,
            "email": self.email,
            "logo": self.logo,
            "image": self.image,  # og:image, when the markup leaves it out
            # Whitespace-normalised: the raw-newline defect's line break counts as a space.
            "description": self.description,
            "address": dict(self.address) if self.address else None,
            "opening_hours": self.hours.normalised() if self.hours else [],
            "same_as": list(self.same_as),
            "price_range": self.price_range,
        }

    # -- HTML ----------------------------------------------------------------------------

    def head_html(self) -> str:
        if self.markup is Markup.NONE:
            return ""
        head = "".join(
            f'<meta {"name" if key == "description" else "property"}="{key}" '
            f'content="{html.escape(value)}">\n'
            for key, value in self.meta_tags().items()
        )
        if self.markup is Markup.MALFORMED:
            head += _script(self._malformed_block())
        elif self.markup is Markup.JSON_LD and not self.spelling.in_body:
            head += "".join(_script(block) for block in self._json_ld_blocks())
        return head

    def body_html(self) -> str:
        if self.markup is Markup.JSON_LD and self.spelling.in_body:
            return "".join(_script(block) for block in self._json_ld_blocks())
        if self.markup is Markup.MICRODATA:
            return self._microdata()
        return ""

    @property
    def _context(self) -> str:
        return "http://schema.org" if self.spelling.http_context else "https://schema.org"

    def _business_node(self, *, context: bool, node_id: bool = False) -> dict[str, Any]:
        sp = self.spelling
        node: dict[str, Any] = {"@context": self._context} if context else {}
        if self.defect is Defect.UNKNOWN_TYPE:
            node["@type"] = sp.unknown_type
        elif sp.type_list and self.schema_type != "LocalBusiness":
            node["@type"] = ["LocalBusiness", self.schema_type]
        else:
            node["@type"] = self.schema_type
        if node_id:
            node["@id"] = f"{self.url}#business"
        node |= {"name": self.name, "url": self.url, "telephone": self.telephone}
        if self.email:
            node["email"] = self.email
        if self.logo:
            node["logo"] = self.logo
        if sp.image_in_markup:
            node["image"] = self.image
        node["description"] = self.description
        if self.address:
            node["address"] = {
                "@type": "PostalAddress",
                "streetAddress": self.address["street"],
                "addressLocality": self.address["locality"],
                "addressRegion": self.address["region"],
                "postalCode": self.address["postal_code"],
                "addressCountry": self.address["country"],
            }
        elif self.area_served:
            node["areaServed"] = {"@type": "City", "name": self.area_served}
        if self.hours:
            node["openingHoursSpecification"] = self._hours_specification(self.hours)
        if self.same_as:
            node["sameAs"] = list(self.same_as)
        if self.price_range:
            node["priceRange"] = self.price_range
        return node

    def _hours_specification(self, hours: OpeningHours) -> list[dict[str, Any]]:
        sp = self.spelling
        suffix = ":00" if sp.seconds else ""
        days = [_WEEKDAYS[d] for d in hours.days]

        def spec(day_of_week: str | list[str]) -> dict[str, Any]:
            return {
                "@type": "OpeningHoursSpecification",
                "dayOfWeek": day_of_week,
                "opens": hours.opens + suffix,
                "closes": hours.closes + suffix,
            }

        if sp.day_style == 0:
            return [spec([f"https://schema.org/{d}" for d in days])]
        if sp.day_style == 1:
            return [spec(f"{self._context}/{d}") for d in days]
        return [spec(days)]

    def _json_ld_blocks(self) -> list[str]:
        shape = self.spelling.shape
        website = {
            "@type": "WebSite",
            "@id": f"{self.url}#website",
            "url": self.url,
            "name": self.name,
        }
        blocks: list[Any]
        if shape == "graph":
            graph = [website, self._business_node(context=False, node_id=True)]
            blocks = [{"@context": self._context, "@graph": graph}]
        elif shape == "list":
            crumbs = {
                "@context": self._context,
                "@type": "BreadcrumbList",
                "itemListElement": [
                    {"@type": "ListItem", "position": 1, "name": "Home", "item": self.url}
                ],
            }
            blocks = [[self._business_node(context=True), crumbs]]
        elif shape == "blocks":
            blocks = [{"@context": self._context} | website, self._business_node(context=True)]
        else:
            blocks = [self._business_node(context=True)]
        return [self._dump(block) for block in blocks]

    def _dump(self, data: Any) -> str:
        text = json.dumps(data, indent=2 if self.spelling.pretty else None, ensure_ascii=False)
        return text.replace("</", "<\\/")  # "</script>" inside a string would end the block

    def _malformed_block(self) -> str:
        node = self._business_node(context=True)
        if self.defect is Defect.RAW_NEWLINE:
            first, _, second = self.description.rpartition(". ")
            node["description"] = f"{first}.\n{second}"
        text = self._dump(node)
        match self.defect:
            case Defect.TRAILING_COMMA:
                return text.rstrip().removesuffix("}").rstrip() + ",\n}"
            case Defect.TRUNCATED:
                return text[: len(text) * 2 // 3]
            case Defect.HTML_ENTITIES:
                return html.escape(text)
            case Defect.RAW_NEWLINE:
                return text.replace("\\n", "\n")  # the only escaped newline is the pasted one
            case Defect.JSON_STRING:
                return json.dumps(text)
            case _:  # UNKNOWN_TYPE: the type is wrong, the JSON is fine
                return text

    def _microdata(self) -> str:
        sp = self.spelling
        base = self._context
        name = html.escape(self.name)
        parts = [
            f'<footer class="business-card" itemscope itemtype="{base}/{self.schema_type}">',
            f'<h2 itemprop="name">{name}</h2>',
        ]
        if self.logo:
            parts.append(f'<img itemprop="logo" src="{self.logo}" alt="{name} logo">')
        if sp.image_in_markup:
            parts.append(f'<link itemprop="image" href="{self.image}">')
        parts.append(f'<p itemprop="description">{html.escape(self.description)}</p>')
        if self.address:
            a = {k: html.escape(v) for k, v in self.address.items()}
            parts.append(
                f'<p itemprop="address" itemscope itemtype="{base}/PostalAddress">'
                f'<span itemprop="streetAddress">{a["street"]}</span>, '
                f'<span itemprop="addressLocality">{a["locality"]}</span>, '
                f'<span itemprop="addressRegion">{a["region"]}</span> '
                f'<span itemprop="postalCode">{a["postal_code"]}</span>'
                f'<meta itemprop="addressCountry" content="{a["country"]}"></p>'
            )
        elif self.area_served:
            served = html.escape(self.area_served)
            parts.append(f'<p>Serving <span itemprop="areaServed">{served}</span></p>')
        parts.append(f'<p>Call <span itemprop="telephone">{self.telephone}</span></p>')
        if self.email:
            parts.append(
                f'<p>Email <a itemprop="email" href="mailto:{self.email}">{self.email}</a></p>'
            )
        # A <link>, not an anchor: the scanner's link discovery reads anchors, and this one
        # adds nothing for it to follow.
        parts.append(f'<link itemprop="url" href="{self.url}">')
        if self.hours:
            shown = f"{_WEEKDAYS[self.hours.days[0]][:3]}-{_WEEKDAYS[self.hours.days[-1]][:3]} "
            shown += f"{self.hours.opens}-{self.hours.closes}"
            if sp.hours_in_time:
                hours = (
                    f'<time itemprop="openingHours" datetime="{self.hours.text()}">{shown}</time>'
                )
            else:
                hours = f'<meta itemprop="openingHours" content="{self.hours.text()}">{shown}'
            parts.append(f"<p>Hours: {hours}</p>")
        if self.price_range:
            parts.append(f'<meta itemprop="priceRange" content="{self.price_range}">')
        if self.same_as:
            links = "".join(
                f'<li><a itemprop="sameAs" href="{url}">{url.split("/")[2]}</a></li>'
                for url in self.same_as
            )
            parts.append(f"<ul>{links}</ul>")
        parts.append("</footer>")
        return "\n".join(parts) + "\n"


def _empty_profile() -> dict[str, Any]:
    """The profile of a page that says nothing: every key, no value (fresh lists each time,
    as each truth is its own document)."""
    return {
        "schema_type": None,
        "name": None,
        "url": None,
        "telephone": None,
        "telephone_e164": None,
        "email": None,
        "logo": None,
        "image": None,
        "description": None,
        "address": None,
        "opening_hours": [],
        "same_as": [],
        "price_range": None,
    }


def _script(block: str) -> str:
    return f'<script type="application/ld+json">\n{block}\n</script>\n'


def choose_markup(u: float) -> Markup:
    """The markup style for a uniform draw u in [0, 1)."""
    total = 0.0
    for markup, share in MARKUP_SHARES:
        total += share
        if u < total:
            return markup
    return MARKUP_SHARES[-1][0]


@dataclass(frozen=True)
class ListingDraw:
    """Google's opening hours and price level of a business (placesim.fields), which its own
    site states too: drawn from the place id, so every answer and page agrees."""

    value: int

    @property
    def has_hours(self) -> bool:  # about three businesses in four
        return self.value % 4 != 0

    @property
    def opens(self) -> int:
        return 7 + self.value % 4

    @property
    def closes(self) -> int:
        return 17 + (self.value >> 4) % 6

    @property
    def open_sundays(self) -> bool:
        return (self.value >> 8) % 3 == 0

    @property
    def has_price(self) -> bool:  # of the kinds Google prices
        return (self.value >> 12) % 5 != 0

    def price_index(self, choices: int) -> int:
        return (self.value >> 16) % choices


def listing_draw(place_id: str) -> ListingDraw:
    return ListingDraw(int.from_bytes(hashlib.sha256(place_id.encode()).digest()[:8], "big"))


def _site_phone(business: Business, style: int) -> str:
    area, line = business.area_code, business.phone_line
    exchange, number = line.split("-")
    return (
        f"+1-{area}-{line}",
        business.national_phone,
        f"{area}-{line}",
        f"+1 {area} {exchange} {number}",
        f"{area}.{exchange}.{number}",
    )[style]


def site_profile(business: Business, root: str) -> SiteProfile | None:
    """What the business's home page publishes about it; None for a site without a
    readable HTML home page. `root` is the absolute URL of /sites/<slug>.

    Every choice comes from a generator seeded with the place id (itself seed-keyed), in a
    fixed order: the same seed gives the same markup, in any process, with no state in
    the world's own draws."""
    slug = business.slug
    if business.site_kind not in HTML_HOME_KINDS or slug is None:
        return None
    rng = random.Random(f"placesim-site-markup:{business.place_id}")  # noqa: S311 - seeded
    markup = choose_markup(rng.random())
    defect = rng.choice(tuple(Defect))
    phone_style = rng.randrange(5)
    has_email = rng.random() < 0.85
    has_logo = rng.random() < 0.8
    has_hours = rng.random() < 0.8
    social_count = 0 if rng.random() < 0.3 else rng.randint(1, len(_SOCIAL_PROFILES))
    socials = sorted(rng.sample(range(len(_SOCIAL_PROFILES)), social_count))
    has_price = rng.random() < 0.65
    schema_type = rng.choice(_SCHEMA_TYPES.get(business.primary_type, ("LocalBusiness",)))
    tagline = rng.choice(_TAGLINES)
    title_style = rng.randrange(4)
    spelling = Spelling(
        shape=rng.choice(_JSON_LD_SHAPES),
        http_context=rng.random() < 0.25,
        day_style=rng.randrange(3),
        seconds=rng.random() < 0.2,
        in_body=rng.random() < 0.25,
        type_list=rng.random() < 0.15,
        pretty=rng.random() < 0.5,
        image_in_markup=rng.random() < 0.8,
        hours_in_time=rng.random() < 0.4,
        unknown_type=rng.choice(_UNKNOWN_TYPES),
    )
    og_type = rng.choice(("website", "business.business"))

    draw = listing_draw(business.place_id)
    days = tuple(range(7)) if draw.open_sundays else tuple(range(6))  # Monday first
    hours = (
        OpeningHours(days, f"{draw.opens:02d}:00", f"{draw.closes:02d}:00") if has_hours else None
    )
    priced = has_price and business.primary_type in _PRICE_RANGE_TYPES
    display = business.category.display_name
    place = f"{business.locality}, {business.state_code}"
    year = 1950 + business.index % 70  # the year the home page's welcome text gives
    # Two sentences: the raw-newline defect breaks the line between them.
    description = (
        f"{business.name}: {display} in {place}. "
        f"{tagline.format(year=year, town=business.locality)}"
    )
    og_title = (
        business.name,
        f"{business.name} | {place}",
        f"Home - {business.name}",
        f"{business.name} - {display} in {place}",
    )[title_style]
    address = None
    if not business.pure_service_area:
        address = {
            "street": business.street_address,
            "locality": business.locality,
            "region": business.state_code,
            "postal_code": business.postal_code,
            "country": "US",
        }
    return SiteProfile(
        markup=markup,
        defect=defect if markup is Markup.MALFORMED else None,
        schema_type=schema_type,
        name=business.name,
        url=f"{root}/",
        telephone=_site_phone(business, phone_style),
        telephone_e164=f"+1{business.area_code}{business.phone_line.replace('-', '')}",
        email=f"info@{slug}.example" if has_email else None,
        logo=f"{root}/{LOGO_PATH}" if has_logo else None,
        image=f"{root}/{IMAGE_PATH}",
        description=description,
        og_title=og_title,
        og_type=og_type,
        address=address,
        area_served=business.locality if business.pure_service_area else None,
        hours=hours,
        same_as=tuple(_SOCIAL_PROFILES[i].format(slug=slug) for i in socials),
        price_range=_PRICE_RANGES[draw.price_index(len(_PRICE_RANGES))] if priced else None,
        spelling=spelling,
    )


def _png_pixel() -> bytes:
    """A valid 1x1 PNG, served for the logo and the og:image so their URLs resolve."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\x2a\x6f\xb3")  # filter byte, one pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG_PIXEL = _png_pixel()


# --------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitePage:
    """What to answer for a site request; `reset` aborts the connection instead."""

    status: int
    content_type: str = "text/html; charset=utf-8"
    body: bytes = b""
    location: str | None = None
    delay_s: float = 0.0
    reset: bool = False


def _html(title: str, body: str, head: str = "") -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode()


def _item_dates(count: int, today: dt.date) -> list[dt.datetime]:
    return [
        dt.datetime.combine(today - dt.timedelta(days=3 + 9 * i), dt.time(9, 30), dt.UTC)
        for i in range(count)
    ]


class SiteRenderer:
    """Renders one business's site. `root` is the absolute URL of /sites/<slug>."""

    def __init__(self, business: Business, root: str, today: dt.date) -> None:
        self.b = business
        self.root = root
        self.today = today
        self.kind = business.site_kind
        self.profile = site_profile(business, root)

    def page(self, subpath: str, *, slow_s: float) -> SitePage:
        kind = self.kind
        if kind is SiteKind.BROKEN_RESET:
            return SitePage(0, reset=True)
        if kind is SiteKind.BROKEN_500:
            return SitePage(500, body=_html("Error", "<h1>500 Internal Server Error</h1>"))
        if kind is SiteKind.REDIRECT_PRIVATE and subpath == "":
            return SitePage(302, location=_private_redirect(self.b))
        if kind is SiteKind.REDIRECT_LOOP and subpath in ("", "loop/a", "loop/b"):
            target = "loop/b" if subpath == "loop/a" else "loop/a"
            return SitePage(302, location=f"{self.root}/{target}")
        if kind is SiteKind.REDIRECT_CHAIN:
            chain = {"": (301, f"{self.root}/r/1"), "r/1": (302, "2"), "r/2": (307, "3")}
            if subpath in chain:
                status, location = chain[subpath]
                return SitePage(status, location=location)  # relative hops are valid too
            if subpath == "r/3":
                return SitePage(308, location=f"{self.root}/home")
        page = self._content(subpath)
        if kind is SiteKind.SLOW:
            return SitePage(
                page.status, page.content_type, page.body, page.location, delay_s=slow_s
            )
        return page

    def _content(self, subpath: str) -> SitePage:
        kind = self.kind
        home = "home" if kind is SiteKind.REDIRECT_CHAIN else ""
        if subpath == home:
            return self._home()
        profile = self.profile
        if subpath in (LOGO_PATH, IMAGE_PATH) and profile and profile.markup is not Markup.NONE:
            return SitePage(200, "image/png", PNG_PIXEL)
        if subpath == "robots.txt":
            rules = "Disallow: /" if kind is SiteKind.ROBOTS_DISALLOW else "Allow: /"
            return SitePage(200, "text/plain; charset=utf-8", f"User-agent: *\n{rules}\n".encode())
        if subpath in ("about", "contact"):
            return SitePage(200, body=_html(f"{subpath.title()} - {self.b.name}", self._contact()))
        feeds = kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN
        if subpath == "feed.xml" and feeds:
            return SitePage(200, "application/rss+xml; charset=utf-8", self._rss())
        if subpath == "atom.xml" and kind is SiteKind.ATOM:
            return SitePage(200, "application/atom+xml; charset=utf-8", self._atom())
        if kind in (SiteKind.ICAL, SiteKind.FULL):
            if subpath == "events.ics":
                return SitePage(200, "text/calendar; charset=utf-8", self._ical())
            if subpath == "events":
                return SitePage(200, body=self._events_page())
        news = {SiteKind.NEWS: "news", SiteKind.FULL: "news", SiteKind.BLOG: "blog"}
        if kind in news and subpath == news[kind]:
            return SitePage(200, body=self._news_page(news[kind]))
        if kind in news and subpath.startswith(f"{news[kind]}/"):
            return SitePage(200, body=_html(self.b.name, f"<article><p>{subpath}</p></article>"))
        return SitePage(404, body=_html("Not found", "<h1>404 Not Found</h1>"))

    # -- pages ---------------------------------------------------------------------------

    def _home(self) -> SitePage:
        kind = self.kind
        name = html.escape(self.b.name)
        head = ""
        nav = [
            f'<a href="{self.root}/about">About</a>',
            f'<a href="{self.root}/contact">Contact</a>',
        ]
        if kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN:
            head += (
                '<link rel="alternate" type="application/rss+xml" '
                f'title="{name} news" href="{self.root}/feed.xml">\n'
            )
        if kind is SiteKind.ATOM:
            head += (
                '<link rel="alternate" type="application/atom+xml" '
                f'title="{name} updates" href="{self.root}/atom.xml">\n'
            )
        if kind in (SiteKind.ICAL, SiteKind.FULL):
            head += (
                '<link rel="alternate" type="text/calendar" '
                f'title="{name} events" href="{self.root}/events.ics">\n'
            )
            nav.append(f'<a href="{self.root}/events">Events</a>')
        if kind in (SiteKind.NEWS, SiteKind.FULL):
            nav.append(f'<a href="{self.root}/news">News</a>')
        if kind is SiteKind.BLOG:
            nav.append(f'<a href="{self.root}/blog">Blog</a>')
        if kind is SiteKind.INVALID_HTML:
            garbage = (
                b"<html><head><title>" + self.b.name.encode() + b"<body><div><p>Welcome<<>>"
                b"<table><tr><td>\xff\xfe\x00broken</span></div></p></html"
            )
            return SitePage(200, body=garbage)
        body = (
            f"<header><h1>{name}</h1><nav>{' | '.join(nav)}</nav></header>\n"
            f"<main><p>Welcome to {name}, serving {html.escape(self.b.locality)} "
            f"since {1950 + self.b.index % 70}.</p>\n{self._contact()}</main>"
        )
        if self.profile is not None:
            head += self.profile.head_html()
            if extra := self.profile.body_html():
                body += "\n" + extra
        page = _html(self.b.name, body, head)
        if kind is SiteKind.HUGE:
            filler = b"<p>" + b"Lorem ipsum dolor sit amet. " * 36 + b"</p>\n"
            repeats = HUGE_PAGE_BYTES // len(filler) + 1
            page = page.replace(b"</main>", filler * repeats + b"</main>")
        return SitePage(200, body=page)

    def _contact(self) -> str:
        b = self.b
        return (
            f"<address>{html.escape(b.street_address)}, {html.escape(b.locality)}, "
            f"{b.state_code} {b.postal_code}<br>Phone: {b.national_phone}</address>"
        )

    def _rss(self) -> bytes:
        items = "".join(
            f"<item><title>{html.escape(self.b.name)} update {i + 1}</title>"
            f"<link>{self.root}/news/{i + 1}</link><guid>{self.root}/news/{i + 1}</guid>"
            f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
            f"<description>News item {i + 1} from {html.escape(self.b.name)}.</description></item>"
            for i, when in enumerate(_item_dates(FEED_ITEMS, self.today))
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>{html.escape(self.b.name)}</title><link>{self.root}/</link>"
            f"<description>News from {html.escape(self.b.name)}</description>{items}"
            "</channel></rss>\n"
        ).encode()

    def _atom(self) -> bytes:
        dates = _item_dates(FEED_ITEMS, self.today)
        entries = "".join(
            f"<entry><title>{html.escape(self.b.name)} update {i + 1}</title>"
            f'<link href="{self.root}/news/{i + 1}"/><id>{self.root}/news/{i + 1}</id>'
            f"<updated>{when.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
            f"<summary>Update {i + 1}.</summary></entry>"
            for i, when in enumerate(dates)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{html.escape(self.b.name)}</title><id>{self.root}/</id>"
            f'<link href="{self.root}/"/><updated>{dates[0].strftime("%Y-%m-%dT%H:%M:%SZ")}'
            f"</updated>{entries}</feed>\n"
        ).encode()

    def _ical(self) -> bytes:
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//placesim//events//EN"]
        for i in range(3):
            start = dt.datetime.combine(self.today + dt.timedelta(days=7 * (i + 1)), dt.time(18))
            lines += [
                "BEGIN:VEVENT",
                f"UID:{self.b.place_id}-{i}@placesim",
                f"DTSTAMP:{self.today.strftime('%Y%m%d')}T000000Z",
                f"DTSTART:{start.strftime('%Y%m%dT%H%M%S')}",
                f"DTEND:{(start + dt.timedelta(hours=2)).strftime('%Y%m%dT%H%M%S')}",
                f"SUMMARY:{self.b.name} event {i + 1}",
                f"LOCATION:{self.b.street_address}\\, {self.b.locality}",
                "END:VEVENT",
            ]
        lines.append("END:VCALENDAR")
        return ("\r\n".join(lines) + "\r\n").encode()

    def _events_page(self) -> bytes:
        head = f'<link rel="alternate" type="text/calendar" href="{self.root}/events.ics">\n'
        body = (
            f"<h1>Events at {html.escape(self.b.name)}</h1>"
            f'<p><a href="{self.root}/events.ics">Subscribe (iCal)</a></p>'
        )
        return _html(f"Events - {self.b.name}", body, head)

    def _news_page(self, section: str) -> bytes:
        articles = "".join(
            f'<article><h2><a href="{self.root}/{section}/{i + 1}">Update {i + 1}</a></h2>'
            f'<time datetime="{when.date().isoformat()}">{when.date().isoformat()}</time>'
            f"<p>News from {html.escape(self.b.name)}.</p></article>\n"
            for i, when in enumerate(_item_dates(FEED_ITEMS, self.today))
        )
        return _html(f"{section.title()} - {self.b.name}", f"<h1>{section.title()}</h1>{articles}")
