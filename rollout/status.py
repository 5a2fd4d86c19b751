"""Status words shared by the database, the progress document and the search attributes.

Part of the contract (docs/contract.md, Status words): change them only with the docs.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class RolloutStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


# A state may have at most one rollout in one of these (enforced by a partial unique index).
ACTIVE_ROLLOUT_STATUSES: tuple[RolloutStatus, ...] = (
    RolloutStatus.PLANNED,
    RolloutStatus.IN_PROGRESS,
    RolloutStatus.PAUSED,
)


class CommunityStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Phase(IntEnum):
    """The six phases of a community rollout, in order."""

    DISCOVERY = 1
    WEBSITE_SCAN = 2
    NEWS_SOURCES = 3
    ENRICHMENT = 4
    VERIFICATION = 5
    SEEDING = 6


PHASE_NAMES = {
    Phase.DISCOVERY: "business discovery",
    Phase.WEBSITE_SCAN: "website scanning",
    Phase.NEWS_SOURCES: "news-source setup",
    Phase.ENRICHMENT: "enrichment",
    Phase.VERIFICATION: "verification",
    Phase.SEEDING: "cross-platform seeding",
}


class Platform(StrEnum):
    """Downstream platforms that cross-platform seeding writes outbox rows for."""

    DOWNTOWNGUIDE = "downtownguide"
    GOEVENTCITY = "goeventcity"
    ALPHASITE = "alphasite"
    CRM = "crm"
