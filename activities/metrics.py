"""The project's own metrics, exported with the SDK's on the worker's Prometheus endpoint.

They use the activity's metric meter (Temporal's runtime), so there is one endpoint and no
second metrics library. Names carry the `rollout_` prefix; the runtime adds Prometheus's
suffixes (`_total` on counters, the unit on histograms), as it does for the SDK's own
metrics, which Temporal's SDK dashboard reads with them (worker.prometheus_config).
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import activity

from rollout.places.pricing import price_list, request_cost

COST_HISTOGRAM = "rollout_places_cost"  # exported as rollout_places_cost_usd


def cost_buckets() -> list[float]:
    """One bucket bound per list price of a request: every billed request lands exactly on
    its SKU's bound, so the histogram counts requests by price."""
    return sorted({float(request_cost(sku)) for sku in price_list().skus} - {0.0})


def places_request(endpoint: str, sku: str, outcome: str, cost: Decimal) -> None:
    meter = activity.metric_meter()
    attrs = {"endpoint": endpoint, "sku": sku, "outcome": outcome}
    meter.create_counter(
        "rollout_places_requests", "Places API requests by endpoint, SKU and outcome"
    ).add(1, attrs)
    if cost:
        meter.create_histogram_float(
            COST_HISTOGRAM, "List-price cost of each billed Places request", "usd"
        ).record(float(cost), attrs)


def businesses_discovered(count: int) -> None:
    activity.metric_meter().create_counter(
        "rollout_businesses_discovered", "Unique businesses counted at the end of phase 1"
    ).add(max(count, 0))


def community_finished(status: str) -> None:
    activity.metric_meter().create_counter(
        "rollout_communities", "Communities that reached a final or paused status"
    ).add(1, {"status": status})
