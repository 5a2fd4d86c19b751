"""Phase 4 payloads: what CommunityEnrichmentWorkflow and its activities exchange (internal
business ids and counts, never place ids)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from rollout.payloads import Payload, PhaseInput, RetrySpec, default_places_retry


class EnrichmentCarry(Payload):
    """What a continued-as-new enrichment run takes over: where the listing stopped, the
    targets listed but not started, and the counts so far."""

    after_business_id: int = 0
    queue: list[int] = Field(default_factory=list)
    listed_all: bool = False
    fresh: int = 0
    enriched: int = 0
    not_found: int = 0
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    runs: int = 1


class EnrichmentInput(Payload):
    """Input of CommunityEnrichmentWorkflow (phase 4)."""

    phase: PhaseInput
    places_retry: RetrySpec = Field(default_factory=default_places_retry)
    carry: EnrichmentCarry | None = None
    # Place Details requests of one community in flight at once: many, as phase 1's streams.
    streams: int = 16
    page_size: int = 200  # business ids per listing call
    continue_as_new_after_events: int | None = None  # test hook


class EnrichTargetsRequest(Payload):
    community_rollout_id: int
    community_id: int
    after_business_id: int = 0
    limit: int = 200


class EnrichTargets(Payload):
    """The next business ids to enrich (internal ids, never place ids), and on the first
    page how many with a website are still fresh."""

    business_ids: list[int]
    fresh: int | None = None


class EnrichRequest(Payload):
    community_rollout_id: int
    business_id: int
    throttle_ms: int = 0


class EnrichOutcome(Payload):
    outcome: Literal["enriched", "fresh", "not_found", "invalid"]
    cost_usd: Decimal = Decimal(0)


class EnrichmentFinish(Payload):
    phase: PhaseInput
    enriched: int
    fresh: int
    not_found: int
