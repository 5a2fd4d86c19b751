"""The Places request of one page of a phase 1 search, as the activities send it (and the
benchmarks, which must measure exactly what the rollout pays for)."""

from __future__ import annotations

from rollout.phases.discovery.payloads import Box, SearchKind, SearchTask
from rollout.phases.discovery.planning import PROBE_MASK, SEARCH_MASK
from rollout.places.client import PlacesClient
from rollout.places.models import Circle, LatLng, Rectangle, SearchPage


def rectangle(box: Box) -> Rectangle:
    return Rectangle(
        low=LatLng(latitude=box.south, longitude=box.west),
        high=LatLng(latitude=box.north, longitude=box.east),
    )


async def search_page(
    places: PlacesClient,
    task: SearchTask,
    page_token: str | None = None,
    *,
    paid_mask: str = SEARCH_MASK,
) -> SearchPage:
    """One page of `task`: free IDs-only for a probe, `paid_mask` otherwise."""
    mask = PROBE_MASK if task.probe else paid_mask
    if task.kind is SearchKind.NEARBY:
        assert task.center_lat is not None
        assert task.center_lng is not None
        assert task.radius_m is not None
        # Nearby Search has no pages, so no nextPageToken in its mask.
        return await places.search_nearby(
            mask.replace(",nextPageToken", ""),
            location_restriction=Circle(
                center=LatLng(latitude=task.center_lat, longitude=task.center_lng),
                radius_m=task.radius_m,
            ),
            included_types=[task.included_type] if task.included_type else None,
        )
    assert task.box is not None
    assert task.text_query is not None
    return await places.search_text(
        task.text_query,
        mask,
        included_type=task.included_type,
        location_restriction=rectangle(task.box),
        page_token=page_token,
        include_pure_service_area_businesses=task.service_area,
    )
