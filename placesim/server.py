"""The emulator's HTTP application: the Places API, the /sim/* control and ground-truth
endpoints, and the hosted business websites.

An API request goes through the same steps as at Google, in this order: API key (400
API_KEY_INVALID, 403 without a key), API enabled (403 SERVICE_DISABLED), quotas (429), then
injected latency and faults, field mask (400), body (400), the answer. Only successful
answers are billed, at the SKU the emulator's own table (placesim.skus) gives the mask, never
the client's pricing, so a pricing mistake in the client shows as a usage log that no longer
matches this bill. A malformed (truncated) answer is billed too, because the server did the
work, as Google bills what it answered, and so is a timeout fault: an answer made and billed
that never reaches the client.

Fault injection is deterministic: one random generator seeded from --seed draws the same
three numbers for every request that reaches that step, so the same sequence of requests
meets the same faults. POST /sim/reset restarts that sequence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from placesim import fields, rpc, search
from placesim.config import SimConfig
from placesim.geo import Area, Disc, disc_intersects
from placesim.httpserver import Request, Response
from placesim.meter import Meter
from placesim.sites import ROBOTS_TXT, SiteRenderer, site_truth
from placesim.skus import Method, SkuTable, default_sku_table
from placesim.tokens import PageTokens
from placesim.world import Business, World

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=UTF-8"
MAX_WORLD_RADIUS_M = 100_000.0


def _json(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(data, default=_encode, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", JSON_TYPE), *(headers or [])])


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _api_error(error: rpc.ApiError) -> Response:
    return _json(error.code, error.body(), error.headers)


@dataclass(frozen=True)
class Fault:
    delay_s: float
    kind: str | None  # None, "error", "timeout", "malformed"
    error: rpc.ApiError | None = None


class FaultDice:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        # Deterministic simulation, not security: a seeded generator is the point.
        self._rng = random.Random(f"placesim-faults:{self.seed}")  # noqa: S311

    def roll(self, config: SimConfig) -> Fault:
        fault_u, kind_u, jitter_u = self._rng.random(), self._rng.random(), self._rng.random()
        delay = (config.latency_ms + config.jitter_ms * jitter_u) / 1000
        if fault_u < config.error_rate:
            return Fault(delay, "error", rpc.internal() if kind_u < 0.5 else rpc.unavailable())
        if fault_u < config.error_rate + config.timeout_rate:
            return Fault(delay, "timeout")
        if fault_u < config.error_rate + config.timeout_rate + config.malformed_rate:
            return Fault(delay, "malformed")
        return Fault(delay, None)


class App:
    def __init__(
        self,
        world: World,
        config: SimConfig,
        *,
        public_url: str | None = None,
        skus: SkuTable | None = None,
    ) -> None:
        self.world = world
        self.config = config
        self.public_url = public_url.rstrip("/") if public_url else None
        self.skus = skus if skus is not None else default_sku_table()
        self.meter = Meter(skus=self.skus)
        self.dice = FaultDice(world.seed)
        self.tokens = PageTokens(world.seed)
        # Set by whoever runs the HTTP server: its connection and request counters.
        self.http_stats: Callable[[], dict[str, int]] | None = None

    def base_url(self, request: Request) -> str:
        """Where clients reach us: --public-url, else the Host they used."""
        if self.public_url:
            return self.public_url
        return f"http://{request.header('host') or '127.0.0.1'}"

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/v1/"):
            return await self._api(request)
        if path.startswith("/sites/"):
            return await self._site(request)
        if path.startswith("/sim/"):
            return self._sim(request)
        if path == "/robots.txt":
            return Response(200, ROBOTS_TXT.encode(), [("Content-Type", "text/plain")])
        return _api_error(rpc.not_found(f"The requested URL {path} was not found."))

    # -- Places API ----------------------------------------------------------------------

    def _route(self, request: Request) -> Method | None:
        if request.method == "POST" and request.path == "/v1/places:searchText":
            return Method.SEARCH_TEXT
        if request.method == "POST" and request.path == "/v1/places:searchNearby":
            return Method.SEARCH_NEARBY
        if request.method == "GET" and request.path.startswith("/v1/places/"):
            return Method.GET_PLACE
        return None

    async def _api(self, request: Request) -> Response:
        method = self._route(request)
        if method is None:
            return _api_error(rpc.not_found(f"The requested URL {request.path} was not found."))
        response = await self._api_call(method, request)
        if response.status >= 400:
            self.meter.errors[str(response.status)] += 1
        return response

    def _check_key(self, request: Request) -> rpc.ApiError | None:
        key = request.header("x-goog-api-key") or request.param("key")
        if not key:
            return rpc.api_key_missing()
        wanted = self.config.api_key
        if (wanted is None and key == "invalid") or (wanted is not None and key != wanted):
            return rpc.api_key_invalid()
        return None

    async def _api_call(self, method: Method, request: Request) -> Response:
        config = self.config
        key_error = self._check_key(request)
        if key_error is not None:
            return _api_error(key_error)
        if config.disabled:
            return _api_error(rpc.service_disabled())
        refusal = self.meter.admit(method.value, config)
        if refusal is not None:
            return _api_error(
                rpc.quota_exceeded(
                    method.value,
                    per_day=refusal.per_day,
                    limit=refusal.limit,
                    retry_after_s=refusal.retry_after_s,
                )
            )
        fault = self.dice.roll(config)
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.kind == "error":
            assert fault.error is not None
            self.meter.faults["error"] += 1
            return _api_error(fault.error)
        try:
            raw_mask = (
                request.header("x-goog-fieldmask")
                or request.param("fields")
                or request.param("$fields")
            )
            mask = fields.parse_mask(method, raw_mask, self.skus)
            data = self._answer(method, request, mask)
        except rpc.ApiError as error:
            return _api_error(error)
        self.meter.bill(mask.sku)
        if fault.kind == "timeout":
            # The answer was made, and billed, but never reaches the client: what a client
            # that gives up waiting cannot tell from a request Google never processed.
            self.meter.faults["timeout"] += 1
            return Response(0, hang_s=config.hang_s)
        response = _json(200, data)
        if fault.kind == "malformed":
            self.meter.faults["malformed"] += 1
            response.body = response.body[: max(len(response.body) // 2, 1)]
        log.debug("%s -> 200 (%s)", method.value, mask.sku)
        return response

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise rpc.invalid_argument("Invalid JSON payload received. Unexpected token.") from None
        if not isinstance(body, dict):
            raise rpc.invalid_argument("Invalid JSON payload received. Expected an object.")
        return body

    def _answer(self, method: Method, request: Request, mask: fields.Mask) -> dict[str, Any]:
        base = self.base_url(request)
        data: dict[str, Any] = {}
        if method is Method.GET_PLACE:
            place_id = request.path.removeprefix("/v1/places/")
            if place_id in self.config.gone_places:
                raise rpc.not_found(
                    f"It looks like the place ID '{place_id}' is no longer valid. Refresh it "
                    "with a Place Details request for its id."
                )
            business = search.get_place(self.world, place_id, self._guard)
            place = fields.place_json(business, base)
            moved_to = self.config.moved_places.get(place_id)
            if moved_to is not None:
                place["businessStatus"] = "CLOSED_PERMANENTLY"
                place["movedPlace"] = f"places/{moved_to}"
                place["movedPlaceId"] = moved_to
            return fields.project(place, mask)
        body = self._body(request)
        token: str | None = None
        if method is Method.SEARCH_TEXT:
            found, token = search.text_search(self.world, body, self.tokens, self._guard)
        else:
            found = search.nearby_search(self.world, body, self._guard)
        places = [fields.project(fields.place_json(b, base), mask) for b in found]
        if places:  # proto3 JSON: an empty list is omitted, so no results is {}
            data["places"] = places
        if token and ("nextPageToken" in mask.response_fields or "*" in mask.response_fields):
            data["nextPageToken"] = token
        return data

    def _guard(self, area: Area) -> None:
        for zone in self.config.fail_near:
            if disc_intersects(area, Disc(zone.lat, zone.lng, zone.radius_m)):
                self.meter.faults["fail_near"] += 1
                if zone.status == 400:
                    raise rpc.invalid_argument("Request failed in a fail_near zone.")
                raise rpc.internal() if zone.status == 500 else rpc.unavailable()

    # -- /sim/* --------------------------------------------------------------------------

    def _sim(self, request: Request) -> Response:
        route = (request.method, request.path)
        if route == ("GET", "/sim/health"):
            return _json(200, {"status": "ok", "service": "placesim", "seed": self.world.seed})
        if route in (("GET", "/sim/billing"), ("GET", "/sim/stats")):
            stats = self.meter.snapshot()
            if self.http_stats is not None:
                stats["http"] = self.http_stats()
            stats["world"] = {
                "cached_communities": self.world.cached_communities,
                "generated_communities": self.world.generated,
            }
            return _json(200, stats)
        if route == ("POST", "/sim/reset"):
            self.meter.reset()
            self.dice.reset()
            return _json(200, {"reset": True})
        if route == ("GET", "/sim/config"):
            return _json(200, self.config.public())
        if route == ("POST", "/sim/config"):
            return self._configure(request)
        if route == ("GET", "/sim/world"):
            return self._world(request)
        return _json(404, {"error": f"no such endpoint {request.method} {request.path}"})

    def _configure(self, request: Request) -> Response:
        try:
            patch = json.loads(request.body or b"{}")
            if not isinstance(patch, dict):
                raise ValueError("expected a JSON object")
            self.config = SimConfig.model_validate({**self.config.model_dump(), **patch})
        except (ValueError, ValidationError) as exc:
            return _json(400, {"error": str(exc)})
        log.info("config changed: %s", ", ".join(sorted(patch)))
        return _json(200, self.config.public())

    def _world(self, request: Request) -> Response:
        base = self.base_url(request)
        try:
            if request.param("community_id") is not None:
                community_id = int(request.param("community_id") or "")
                world = self.world.community_world(community_id)
                if world is None:
                    return _json(404, {"error": f"no community {community_id}"})
                record = world.community
                return _json(
                    200,
                    {
                        "community": {
                            "id": record.id,
                            "name": record.name,
                            "state_code": record.state_code,
                            "latitude": record.latitude,
                            "longitude": record.longitude,
                            "population": record.population,
                            "radius_m": world.radius_m,
                        },
                        "businesses": [truth(b, base) for b in world.businesses],
                    },
                )
            lat = float(request.param("lat") or "")
            lng = float(request.param("lng") or "")
            radius = float(request.param("radius_m") or "")
        except ValueError:
            return _json(400, {"error": "give community_id, or lat, lng and radius_m"})
        if not 0 < radius <= MAX_WORLD_RADIUS_M or not -90 <= lat <= 90 or not -180 <= lng <= 180:
            return _json(400, {"error": f"radius_m must be in (0, {MAX_WORLD_RADIUS_M:.0f}]"})
        area = Disc(lat, lng, radius)
        communities = self.world.communities_in(area)
        return _json(
            200,
            {
                "communities": [c.id for c in communities],
                "businesses": [truth(b, base) for b, _ in self.world.businesses_in(area)],
            },
        )

    # -- hosted sites --------------------------------------------------------------------

    async def _site(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", [("Allow", "GET, HEAD")])
        slug, _, subpath = request.path.removeprefix("/sites/").partition("/")
        business = self.world.business_by_slug(slug)
        if business is None:
            return Response(404, b"<h1>404 Not Found</h1>", [("Content-Type", "text/html")])
        root = f"{self.base_url(request)}/sites/{slug}"
        if subpath == "" and not request.path.endswith("/"):
            return Response(301, b"", [("Location", f"{root}/")])
        page = SiteRenderer(business, root, dt.datetime.now(dt.UTC).date()).page(
            subpath.rstrip("/"), slow_s=self.config.site_slow_s
        )
        if page.reset:
            return Response(0, reset=True)
        if page.delay_s:
            await asyncio.sleep(page.delay_s)
        headers = [("Content-Type", page.content_type)]
        if page.location is not None:
            headers.append(("Location", page.location))
        return Response(page.status, page.body, headers)


def truth(b: Business, base_url: str) -> dict[str, Any]:
    """A business with every field, as the ground truth shows it (its true position even
    when the API hides it)."""
    return {
        "place_id": b.place_id,
        "community_id": b.community_id,
        "index": b.index,
        "name": b.name,
        "primary_type": b.primary_type,
        "types": list(b.types),
        "location": {"latitude": b.latitude, "longitude": b.longitude},
        "formatted_address": None if b.pure_service_area else b.formatted_address,
        "street_address": b.street_address,
        "locality": b.locality,
        "state_code": b.state_code,
        "postal_code": b.postal_code,
        "national_phone_number": b.national_phone,
        "international_phone_number": b.international_phone,
        "website_uri": b.website_uri(base_url),
        "site_kind": b.site_kind.value if b.site_kind else None,
        "site": site_truth(b, base_url),
        "business_status": b.business_status,
        "pure_service_area_business": b.pure_service_area,
        "rating": b.rating,
        "user_rating_count": b.user_rating_count,
        "google_maps_uri": f"https://maps.google.com/?cid={b.maps_cid}",
    }
