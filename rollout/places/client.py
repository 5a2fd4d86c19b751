"""Async client for the Places API (New): Text Search, Nearby Search, Place Details.

One method call is exactly one HTTP request: pagination is the caller's loop (each page is
its own activity later, so a retry repeats one page, never the whole search), and the client
never retries (Temporal's retry policies do, guided by `PlacesError.retryable`).

Every successful answer carries the SKU its field mask bills at and that request's list
price, computed before the request is sent (see `rollout.places.pricing`).

The API key travels only in the `X-Goog-Api-Key` header of each request. It is never put in
a URL, a log line, an exception, a repr or a returned object; error texts are scrubbed of it
in case a server echoes it back.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import SecretStr, ValidationError

from rollout.places.errors import (
    MalformedResponseError,
    PlacesConnectionError,
    PlacesError,
    PlacesTimeoutError,
    error_from_response,
)
from rollout.places.models import Circle, DetailsResult, Place, Rectangle, SearchPage
from rollout.places.pricing import Endpoint, request_cost, sku_for, split_field_mask

log = logging.getLogger(__name__)

GOOGLE_BASE_URL = "https://places.googleapis.com"
MAX_PAGE_SIZE = 20  # Text Search pageSize and Nearby maxResultCount: 1-20
TEXT_SEARCH_MAX_RESULTS = 60  # across all pages of one Text Search ("subject to change")

TextRankPreference = Literal["RELEVANCE", "DISTANCE"]
NearbyRankPreference = Literal["POPULARITY", "DISTANCE"]

_PLACE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_REDACTED = "[redacted]"


def _complete_mask(paths: tuple[str, ...], id_path: str, *, page_token: bool = False) -> str:
    """The mask with the place id added when missing, which every Place needs, and for Text
    Search nextPageToken, without which Google sends no token and the search cannot be
    paged. Neither raises the SKU: both are in the endpoint's cheapest tier."""
    if "*" in paths:
        return ",".join(paths)
    out = list(paths)
    if id_path not in out and not {"places", "places.*"} & set(out):
        out.insert(0, id_path)
    if page_token and "nextPageToken" not in out:
        out.append("nextPageToken")
    return ",".join(out)


class PlacesClient:
    """Use as `async with PlacesClient(base_url, api_key) as places: ...`, or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key.get_secret_value():
            raise ValueError("a Places API key is required (PLACES_API_KEY is empty)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        # The key is not a default header of the httpx client: per request only, so the
        # client object never holds it in a form that a repr or a debugger would show.
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport
        )

    def __repr__(self) -> str:
        return f"PlacesClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PlacesClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- public API ----------------------------------------------------------------------

    async def search_text(
        self,
        text_query: str,
        field_mask: str | Sequence[str],
        *,
        included_type: str | None = None,
        strict_type_filtering: bool = False,
        location_bias: Circle | Rectangle | None = None,
        location_restriction: Rectangle | None = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
        rank_preference: TextRankPreference | None = None,
        include_pure_service_area_businesses: bool = False,
    ) -> SearchPage:
        """One page of a Text Search. For the next page call again with the same arguments
        and `page_token=page.next_page_token` (the API refuses a token with other ones)."""
        if not text_query.strip():
            raise ValueError("text_query must not be empty")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}")
        if location_bias is not None and location_restriction is not None:
            raise ValueError("location_bias and location_restriction cannot be combined")
        if strict_type_filtering and included_type is None:
            raise ValueError("strict_type_filtering needs included_type")
        body: dict[str, Any] = {"textQuery": text_query, "pageSize": page_size}
        if included_type is not None:
            body["includedType"] = included_type
            if strict_type_filtering:
                body["strictTypeFiltering"] = True
        if location_bias is not None:
            body["locationBias"] = location_bias.to_api()
        if location_restriction is not None:
            body["locationRestriction"] = location_restriction.to_api()
        if page_token is not None:
            body["pageToken"] = page_token
        if rank_preference is not None:
            body["rankPreference"] = rank_preference
        if include_pure_service_area_businesses:
            body["includePureServiceAreaBusinesses"] = True
        return await self._search(Endpoint.SEARCH_TEXT, "/v1/places:searchText", field_mask, body)

    async def search_nearby(
        self,
        field_mask: str | Sequence[str],
        *,
        location_restriction: Circle,
        included_types: Sequence[str] | None = None,
        excluded_types: Sequence[str] | None = None,
        max_result_count: int = MAX_PAGE_SIZE,
        rank_preference: NearbyRankPreference | None = None,
    ) -> SearchPage:
        """A Nearby Search: at most 20 results, no further pages."""
        if not 1 <= max_result_count <= MAX_PAGE_SIZE:
            raise ValueError(f"max_result_count must be 1-{MAX_PAGE_SIZE}")
        body: dict[str, Any] = {
            "locationRestriction": location_restriction.to_api(),
            "maxResultCount": max_result_count,
        }
        if included_types:
            body["includedTypes"] = list(included_types)
        if excluded_types:
            body["excludedTypes"] = list(excluded_types)
        if rank_preference is not None:
            body["rankPreference"] = rank_preference
        return await self._search(
            Endpoint.SEARCH_NEARBY, "/v1/places:searchNearby", field_mask, body
        )

    async def get_place(self, place_id: str, field_mask: str | Sequence[str]) -> DetailsResult:
        """Place Details for one id (`ChIJ...` or `places/ChIJ...`)."""
        bare = place_id.removeprefix("places/")
        if not _PLACE_ID.match(bare):
            raise ValueError(f"not a place id: {place_id!r}")
        endpoint = Endpoint.GET_PLACE
        mask = _complete_mask(split_field_mask(field_mask), "id")
        sku = sku_for(endpoint, mask)
        data, status = await self._request(endpoint, "GET", f"/v1/places/{bare}", mask, None, sku)
        try:
            place = Place.model_validate(data)
        except ValidationError as exc:
            raise self._malformed(endpoint, sku, f"unexpected Place: {exc}") from None
        log.debug("places %s %s -> %s (%s)", endpoint.value, bare, status, sku)
        return DetailsResult(
            endpoint=endpoint,
            sku=sku,
            cost=request_cost(sku),
            http_status=status,
            place=place,
            raw=data,
        )

    # -- internals -----------------------------------------------------------------------

    async def _search(
        self,
        endpoint: Endpoint,
        path: str,
        field_mask: str | Sequence[str],
        body: dict[str, Any],
    ) -> SearchPage:
        mask = _complete_mask(
            split_field_mask(field_mask),
            "places.id",
            page_token=endpoint is Endpoint.SEARCH_TEXT,
        )
        sku = sku_for(endpoint, mask)
        data, status = await self._request(endpoint, "POST", path, mask, body, sku)
        raw_places = data.get("places", [])
        token = data.get("nextPageToken") or None
        if not isinstance(raw_places, list) or not (token is None or isinstance(token, str)):
            raise self._malformed(endpoint, sku, "places is not a list or token not a string")
        try:
            places = tuple(Place.model_validate(p) for p in raw_places)
        except ValidationError as exc:
            raise self._malformed(endpoint, sku, f"unexpected Place: {exc}") from None
        if endpoint is Endpoint.SEARCH_NEARBY:
            token = None  # Nearby has no pagination, whatever a server sends
        log.debug(
            "places %s -> %s (%s, %d places, more=%s)",
            endpoint.value,
            status,
            sku,
            len(places),
            token is not None,
        )
        return SearchPage(
            endpoint=endpoint,
            sku=sku,
            cost=request_cost(sku),
            http_status=status,
            places=places,
            next_page_token=token,
        )

    async def _request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        mask: str,
        body: dict[str, Any] | None,
        sku: str,
    ) -> tuple[dict[str, Any], int]:
        headers = {"X-Goog-Api-Key": self._api_key.get_secret_value(), "X-Goog-FieldMask": mask}
        started = time.monotonic()
        failure: PlacesError | None = None
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            # A read timeout comes after the request was sent: Google may have answered and
            # billed it. Connect, pool and write timeouts mean it never fully left.
            sent = isinstance(exc, httpx.ReadTimeout)
            failure = PlacesTimeoutError(
                self._redact(f"Places {endpoint.value}: no answer within {self.timeout}s ({exc})"),
                retryable=True,
                endpoint=endpoint,
                billed_sku=sku if sent else None,
                billed_cost=request_cost(sku) if sent else None,
            )
        except httpx.DecodingError as exc:
            failure = self._malformed(endpoint, sku, f"undecodable body ({exc})")
        except httpx.RequestError as exc:
            failure = PlacesConnectionError(
                self._redact(f"Places {endpoint.value}: {type(exc).__name__}: {exc}"),
                retryable=True,
                endpoint=endpoint,
            )
        if failure is not None:
            # Raised outside the `except`, so the httpx exception is neither its cause nor its
            # context: it holds the request, and with it the key header.
            log.debug("places %s -> %s", endpoint.value, type(failure).__name__)
            raise failure
        elapsed_ms = (time.monotonic() - started) * 1000
        if response.status_code != 200:
            error = error_from_response(
                endpoint,
                response.status_code,
                response.content,
                response.headers,
                redact=self._redact,
            )
            log.debug(
                "places %s -> %s %s in %.0f ms",
                endpoint.value,
                response.status_code,
                type(error).__name__,
                elapsed_ms,
            )
            raise error
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise self._malformed(endpoint, sku, "body is not JSON") from None
        if not isinstance(data, dict):
            raise self._malformed(endpoint, sku, "body is not a JSON object")
        return data, response.status_code

    def _malformed(self, endpoint: Endpoint, sku: str, detail: str) -> PlacesError:
        return MalformedResponseError(
            self._redact(f"Places {endpoint.value}: malformed 200 response: {detail}")[:500],
            status_code=200,
            endpoint=endpoint,
            billed_sku=sku,
            billed_cost=request_cost(sku),
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key.get_secret_value(), _REDACTED)
