"""PlacesClient against responses shaped like Google's documented ones (httpx.MockTransport):
request shapes, pagination, field-mask enforcement, error bodies -> typed errors, and the
API key never leaking."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rollout.places import (
    BusinessStatus,
    Circle,
    EmptyFieldMaskError,
    InvalidRequestError,
    LatLng,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    PermissionProblem,
    PlacesClient,
    PlacesConnectionError,
    PlacesError,
    PlacesTimeoutError,
    QuotaExceededError,
    Rectangle,
    ServerError,
    UnknownFieldError,
)

KEY = "AIzaSy-fixture-key-0123456789"
BASE = "https://places.googleapis.com"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
DOVER = Rectangle(
    low=LatLng(latitude=39.12, longitude=-75.56), high=LatLng(latitude=39.19, longitude=-75.48)
)
LISTING = "places.id,places.displayName,places.formattedAddress,places.websiteUri,nextPageToken"

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, key: str = KEY) -> PlacesClient:
    return PlacesClient(BASE, SecretStr(key), transport=httpx.MockTransport(handler))


def google_place(i: int) -> dict[str, Any]:
    return {
        "id": f"ChIJ{i:023d}",
        "displayName": {"text": f"Plumber {i}", "languageCode": "en"},
        "formattedAddress": f"{i} Main St, Dover, DE 19901, USA",
        "location": {"latitude": 39.158 + i / 10_000, "longitude": -75.524},
        "types": ["plumber", "point_of_interest", "establishment"],
        "primaryType": "plumber",
        "businessStatus": "OPERATIONAL",
        "websiteUri": f"https://plumber{i}.example/",
        "nationalPhoneNumber": "(302) 555-0100",
        "googleMapsUri": f"https://maps.google.com/?cid={i}",
        "rating": 4.5,
        "userRatingCount": 12,
    }


def error_body(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return json.dumps({"error": error}).encode()


def error_info(reason: str, **metadata: str) -> dict[str, Any]:
    return {"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com", "metadata": metadata}


# --------------------------------------------------------------------------------------
# Requests and parsing
# --------------------------------------------------------------------------------------


async def test_search_text_request_and_parsed_page() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"places": [google_place(1), google_place(2)], "nextPageToken": "tok-2"}
        )

    async with client(handler) as places:
        page = await places.search_text(
            "plumber",
            LISTING,
            included_type="plumber",
            strict_type_filtering=True,
            location_restriction=DOVER,
            page_size=10,
            rank_preference="DISTANCE",
            include_pure_service_area_businesses=True,
        )

    (request,) = seen
    assert request.method == "POST"
    assert request.url == f"{BASE}/v1/places:searchText"
    assert request.headers["X-Goog-Api-Key"] == KEY
    assert request.headers["X-Goog-FieldMask"] == LISTING
    assert json.loads(request.content) == {
        "textQuery": "plumber",
        "pageSize": 10,
        "includedType": "plumber",
        "strictTypeFiltering": True,
        "locationRestriction": {
            "rectangle": {
                "low": {"latitude": 39.12, "longitude": -75.56},
                "high": {"latitude": 39.19, "longitude": -75.48},
            }
        },
        "rankPreference": "DISTANCE",
        "includePureServiceAreaBusinesses": True,
    }
    assert page.sku == "Text Search Enterprise"  # websiteUri makes it Enterprise
    assert page.cost == Decimal("0.035")
    assert page.http_status == 200
    assert page.next_page_token == "tok-2"
    assert page.result_count == 2
    first = page.places[0]
    assert first.id == "ChIJ00000000000000000000001"
    assert first.display_name == "Plumber 1"
    assert first.location is not None
    assert (first.location.latitude, first.location.longitude) == pytest.approx((39.1581, -75.524))
    assert first.business_status is BusinessStatus.OPERATIONAL
    assert first.types == ("plumber", "point_of_interest", "establishment")
    assert first.website_uri == "https://plumber1.example/"
    assert first.user_rating_count == 12


async def test_pagination_follows_tokens_to_the_60_cap() -> None:
    """Google's 60-result cap: three pages of 20, the last one without a token."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        page = {None: 0, "p2": 1, "p3": 2}[body.get("pageToken")]
        data: dict[str, Any] = {"places": [google_place(page * 20 + i) for i in range(20)]}
        if page < 2:
            data["nextPageToken"] = f"p{page + 2}"
        return httpx.Response(200, json=data)

    ids: list[str] = []
    pages = []
    async with client(handler) as places:
        token: str | None = None
        while True:
            page = await places.search_text(
                "plumber", LISTING, location_restriction=DOVER, page_token=token
            )
            pages.append(page)
            ids += [p.id for p in page.places]
            token = page.next_page_token
            if token is None:
                break

    assert len(pages) == 3  # one request per call
    assert len(ids) == len(set(ids)) == 60
    # Every page repeats the first request's parameters, plus the token.
    assert [b.pop("pageToken", None) for b in bodies] == [None, "p2", "p3"]
    assert bodies[0] == bodies[1] == bodies[2]
    assert sum(p.cost for p in pages) == Decimal("0.105")


async def test_mask_gets_the_id_and_the_page_token() -> None:
    masks: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        masks.append(request.headers["X-Goog-FieldMask"])
        if request.method == "GET":
            return httpx.Response(200, json={"id": "ChIJabc", "displayName": {"text": "A"}})
        return httpx.Response(200, json={})

    async with client(handler) as places:
        page = await places.search_text("plumber", "places.displayName")
        nearby = await places.search_nearby(
            ["places.displayName"],
            location_restriction=Circle(center=LatLng(latitude=1, longitude=2), radius_m=500),
        )
        details = await places.get_place("places/ChIJabc", "displayName")

    # The id never raises the SKU; without nextPageToken in the mask Google sends no token.
    assert masks == [
        "places.id,places.displayName,nextPageToken",
        "places.id,places.displayName",
        "id,displayName",
    ]
    assert page.places == ()
    assert (page.sku, nearby.sku, details.sku) == (
        "Text Search Pro",
        "Nearby Search Pro",
        "Place Details Pro",
    )
    assert details.place.display_name == "A"
    assert details.cost == Decimal("0.017")


async def test_search_nearby_request_has_no_pagination() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # A token from the server is ignored: Nearby Search has no further pages.
        return httpx.Response(200, json={"places": [google_place(1)], "nextPageToken": "x"})

    async with client(handler) as places:
        page = await places.search_nearby(
            "places.id,places.nationalPhoneNumber",
            location_restriction=Circle(
                center=LatLng(latitude=39.158, longitude=-75.524), radius_m=1500
            ),
            included_types=["plumber", "electrician"],
            excluded_types=["store"],
            max_result_count=5,
            rank_preference="DISTANCE",
        )
    assert seen[0].url == f"{BASE}/v1/places:searchNearby"
    assert json.loads(seen[0].content) == {
        "locationRestriction": {
            "circle": {"center": {"latitude": 39.158, "longitude": -75.524}, "radius": 1500.0}
        },
        "maxResultCount": 5,
        "includedTypes": ["plumber", "electrician"],
        "excludedTypes": ["store"],
        "rankPreference": "DISTANCE",
    }
    assert page.next_page_token is None
    assert page.sku == "Nearby Search Enterprise"


async def test_get_place_request_and_unknown_values() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = google_place(7) | {"businessStatus": "SOME_NEW_STATUS", "futureField": {"a": 1}}
        return httpx.Response(200, json=body)

    async with client(handler) as places:
        result = await places.get_place("ChIJ00000000000000000000007", "id,websiteUri,location")
    assert seen[0].method == "GET"
    assert seen[0].url == f"{BASE}/v1/places/ChIJ00000000000000000000007"
    assert result.sku == "Place Details Enterprise"
    assert result.cost == Decimal("0.020")
    # A status Google adds later, and unknown fields, do not make the answer unreadable.
    assert result.place.business_status is BusinessStatus.BUSINESS_STATUS_UNSPECIFIED
    assert result.place.website_uri == "https://plumber7.example/"


async def test_field_mask_is_enforced_before_any_request() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    circle = Circle(center=LatLng(latitude=1, longitude=2), radius_m=10)
    async with client(handler) as places:
        with pytest.raises(EmptyFieldMaskError):
            await places.search_text("plumber", "")
        with pytest.raises(EmptyFieldMaskError):
            await places.search_nearby([], location_restriction=circle)
        with pytest.raises(EmptyFieldMaskError):
            await places.get_place("ChIJabc", " ")
        with pytest.raises(UnknownFieldError):
            await places.search_text("plumber", "places.id,places.nope")
        with pytest.raises(UnknownFieldError):
            await places.search_nearby("places.id,nextPageToken", location_restriction=circle)
        with pytest.raises(UnknownFieldError):
            await places.get_place("ChIJabc", "places.id")
    assert calls == []


@pytest.mark.parametrize(
    "call",
    [
        {"text_query": " "},
        {"page_size": 0},
        {"page_size": 21},
        {"strict_type_filtering": True},
        {
            "location_restriction": DOVER,
            "location_bias": Circle(center=LatLng(latitude=1, longitude=2), radius_m=10),
        },
    ],
)
async def test_invalid_search_arguments_raise_before_any_request(call: dict[str, Any]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    arguments: dict[str, Any] = {"text_query": "plumber", "field_mask": "places.id"} | call
    async with client(handler) as places:
        with pytest.raises(ValueError, match=r"\w"):
            await places.search_text(**arguments)
        with pytest.raises(ValueError, match="not a place id"):
            await places.get_place("ChIJ/../x", "id")
    assert calls == []


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        PlacesClient(BASE, SecretStr(""))


# --------------------------------------------------------------------------------------
# Error bodies -> typed errors
# --------------------------------------------------------------------------------------

QUOTA_MINUTE = error_body(
    429,
    "RESOURCE_EXHAUSTED",
    "Quota exceeded for quota metric 'SearchTextRequest' and limit 'SearchTextRequest per "
    "minute' of service 'places.googleapis.com' for consumer 'project_number:1'.",
    error_info(
        "RATE_LIMIT_EXCEEDED",
        quota_limit="SearchTextRequestPerMinutePerProject",
        quota_metric="places.googleapis.com/SearchTextRequest",
        service="places.googleapis.com",
    ),
)
QUOTA_DAY = error_body(
    429,
    "RESOURCE_EXHAUSTED",
    "Quota exceeded for quota metric 'SearchTextRequest' and limit 'SearchTextRequest per day' "
    "of service 'places.googleapis.com' for consumer 'project_number:1'.",
    error_info(
        "RATE_LIMIT_EXCEEDED",
        quota_limit="SearchTextRequestPerDayPerProject",
        service="places.googleapis.com",
    ),
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retryable", "retry_after", "checks"),
    [
        pytest.param(
            429, QUOTA_MINUTE, {"Retry-After": "30"}, QuotaExceededError, True, 30.0,
            {"per_day": False, "quota_limit": "SearchTextRequestPerMinutePerProject",
             "quota_metric": "places.googleapis.com/SearchTextRequest",
             "reason": "RATE_LIMIT_EXCEEDED", "status": "RESOURCE_EXHAUSTED"},
            id="429-per-minute",
        ),
        pytest.param(
            429, QUOTA_DAY, {}, QuotaExceededError, False, None,
            {"per_day": True, "quota_limit": "SearchTextRequestPerDayPerProject"},
            id="429-per-day-by-quota-limit",
        ),
        pytest.param(
            429,
            error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
                       error_info("RATE_LIMIT_EXCEEDED", quota_unit="1/d/{project}")),
            {}, QuotaExceededError, False, None, {"per_day": True},
            id="429-per-day-by-quota-unit",
        ),
        pytest.param(
            429,
            error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded for limit 'X per day'."),
            {}, QuotaExceededError, False, None, {"per_day": True},
            id="429-per-day-by-message-without-metadata",
        ),
        pytest.param(
            429,
            error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.",
                       {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}),
            {}, QuotaExceededError, True, 41.0, {"per_day": False},
            id="429-unmarked-with-retry-info",
        ),
        pytest.param(
            400,
            error_body(400, "INVALID_ARGUMENT", "FieldMask is a required parameter."),
            {}, InvalidRequestError, False, None, {"status": "INVALID_ARGUMENT"},
            id="400-invalid-argument",
        ),
        pytest.param(
            400,
            error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                       error_info("API_KEY_INVALID", service="places.googleapis.com")),
            {}, PermissionDeniedError, False, None,
            {"problem": PermissionProblem.INVALID_KEY, "invalid_key": True, "status_code": 400},
            id="400-api-key-invalid",
        ),
        pytest.param(
            403,
            error_body(403, "PERMISSION_DENIED", "Places API (New) has not been used in project 1",
                       error_info("SERVICE_DISABLED", service="places.googleapis.com"),
                       {"@type": "type.googleapis.com/google.rpc.Help", "links": []}),
            {}, PermissionDeniedError, False, None,
            {"problem": PermissionProblem.API_DISABLED, "api_disabled": True,
             "invalid_key": False},
            id="403-service-disabled",
        ),
        pytest.param(
            403,
            error_body(403, "PERMISSION_DENIED", "Requests to this API are blocked.",
                       error_info("API_KEY_SERVICE_BLOCKED")),
            {}, PermissionDeniedError, False, None,
            {"problem": PermissionProblem.KEY_RESTRICTED}, id="403-key-blocked",
        ),
        pytest.param(
            403,
            error_body(403, "PERMISSION_DENIED", "Billing disabled.",
                       error_info("BILLING_DISABLED")),
            {}, PermissionDeniedError, False, None,
            {"problem": PermissionProblem.BILLING_DISABLED}, id="403-billing-disabled",
        ),
        pytest.param(
            404, error_body(404, "NOT_FOUND", "Place ID is no longer valid."),
            {}, NotFoundError, False, None, {}, id="404",
        ),
        pytest.param(
            500, error_body(500, "INTERNAL", "Internal error encountered."),
            {}, ServerError, True, None, {"status": "INTERNAL"}, id="500",
        ),
        pytest.param(
            503, error_body(503, "UNAVAILABLE", "The service is currently unavailable."),
            {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}, ServerError, True, "future",
            {}, id="503-retry-after-date",
        ),
        pytest.param(
            502, b"<html>Bad Gateway</html>", {}, ServerError, True, None,
            {"status": None, "reason": None}, id="502-html",
        ),
    ],
)  # fmt: skip
async def test_error_bodies_map_to_typed_errors(
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: type[PlacesError],
    retryable: bool,
    retry_after: float | str | None,
    checks: dict[str, Any],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    async with client(handler) as places:
        with pytest.raises(kind) as caught:
            await places.search_text("plumber", "places.id")
    error = caught.value
    assert type(error) is kind
    assert error.status_code == status
    assert error.retryable is retryable
    if retry_after == "future":
        assert error.retry_after is not None
        assert error.retry_after > 86_400
    else:
        assert error.retry_after == retry_after
    for name, value in checks.items():
        assert getattr(error, name) == value, name
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"places": [{"id": "ChIJ1", "displayNa', "not JSON"),
        (b'{"places": {"id": "ChIJ1"}}', "not a list"),
        (b'{"places": [{"displayName": {"text": "no id"}}]}', "unexpected Place"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
async def test_malformed_200_is_retryable_and_says_what_was_billed(
    content: bytes, detail: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    async with client(handler) as places:
        with pytest.raises(MalformedResponseError, match=detail) as caught:
            await places.search_text("plumber", LISTING)
    assert caught.value.retryable is True
    assert caught.value.billed_sku == "Text Search Enterprise"
    assert caught.value.billed_cost == Decimal("0.035")


@pytest.mark.parametrize(
    ("raised", "kind", "billed"),
    [
        # Sent, no answer: Google may have billed it, so the error says at which SKU.
        (httpx.ReadTimeout("timed out"), PlacesTimeoutError, "Place Details Essentials IDs Only"),
        (httpx.ConnectTimeout("timed out"), PlacesTimeoutError, None),
        (httpx.PoolTimeout("timed out"), PlacesTimeoutError, None),
        (httpx.ConnectError("refused"), PlacesConnectionError, None),
        (httpx.RemoteProtocolError("peer closed connection"), PlacesConnectionError, None),
    ],
)
async def test_transport_failures_are_retryable(
    raised: Exception, kind: type[PlacesError], billed: str | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    async with client(handler) as places:
        with pytest.raises(kind) as caught:
            await places.get_place("ChIJabc", "id")
    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert caught.value.billed_sku == billed
    assert (caught.value.billed_cost is None) == (billed is None)
    # Nothing chained: the httpx exception carries the request and its key header.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


# --------------------------------------------------------------------------------------
# The key never leaks
# --------------------------------------------------------------------------------------


async def test_api_key_never_appears_in_logs_errors_reprs_or_results(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = iter(
        [
            httpx.Response(200, json={"places": [google_place(1)], "nextPageToken": "t"}),
            # A server that echoes the key back in its message.
            httpx.Response(
                400, content=error_body(400, "INVALID_ARGUMENT", f"bad key {KEY} given")
            ),
            httpx.Response(200, content=f"garbage {KEY}".encode()),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Goog-Api-Key"] == KEY  # it is sent, in the header only
        assert KEY not in str(request.url)
        outcome = next(outcomes, None)
        if outcome is None:
            raise httpx.ReadTimeout(f"timed out talking with key {KEY}", request=request)
        return outcome

    texts: list[str] = []
    places = client(handler)
    texts += [repr(places), str(places), repr(vars(places))]
    page = await places.search_text("plumber", LISTING)
    texts += [repr(page), str(page), page.model_dump_json()]
    for _ in range(3):
        with pytest.raises(PlacesError) as caught:
            await places.search_text("plumber", LISTING)
        error = caught.value
        texts += [str(error), repr(error), repr(error.args), repr(vars(error))]
        texts.append("".join(traceback.format_exception(error)))
    await places.aclose()
    texts.append(caplog.text)
    # The echoed key was scrubbed from the error, the rest of Google's message kept.
    assert any("bad key [redacted] given" in text for text in texts)
    for text in texts:
        assert KEY not in text
