"""The names the outside world depends on: task queues, workflow ids and types, signal,
query and update names, search attributes, and the error types that cross Temporal.

Operators type these into the `temporal` CLI and the Web UI, recorded histories carry them,
and workflows, activities, the starter and the dev stack all refer to them from here. Renaming
one breaks running workflows and replays: add a new name instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from rollout.places.pricing import Endpoint

# -- task queues ------------------------------------------------------------------------
# Workflows and bookkeeping activities.
ROLLOUT_TASK_QUEUE = "rollout"
# One Places request per activity, on the queue of its API method. Google's per-minute
# quotas are per method, and each of these queues carries its method's quota as the
# server-side rate limit (and fairness between the states rolled out at once).
PLACES_SEARCH_TEXT_TASK_QUEUE = "rollout-places-search-text"
PLACES_SEARCH_NEARBY_TASK_QUEUE = "rollout-places-search-nearby"
PLACES_GET_PLACE_TASK_QUEUE = "rollout-places-get-place"
PLACES_TASK_QUEUES: Mapping[Endpoint, str] = MappingProxyType(
    {
        Endpoint.SEARCH_TEXT: PLACES_SEARCH_TEXT_TASK_QUEUE,
        Endpoint.SEARCH_NEARBY: PLACES_SEARCH_NEARBY_TASK_QUEUE,
        Endpoint.GET_PLACE: PLACES_GET_PLACE_TASK_QUEUE,
    }
)
# The queue all methods shared under one rate: activities scheduled on it before the
# per-method queues (and their retries, which stay on their queue) still run there, and
# so do the purchases of a phase 1 run that continued-as-new before them (its carry does
# not say which lines are searches). The worker polls it until nothing is left on it.
PLACES_TASK_QUEUE = "rollout-places"


def places_task_queue(method: Endpoint | None) -> str:
    """The task queue of a Places request of `method` (None: a method not known)."""
    return PLACES_TASK_QUEUE if method is None else PLACES_TASK_QUEUES[method]


# -- workflow ids -----------------------------------------------------------------------
def state_workflow_id(state_code: str) -> str:
    return f"state-rollout-{state_code}"


def community_workflow_id(state_code: str, community_id: int) -> str:
    return f"state-rollout-{state_code}/community-{community_id}"


def discovery_workflow_id(community_workflow_id: str) -> str:
    return f"{community_workflow_id}/discovery"


def enrichment_workflow_id(community_workflow_id: str) -> str:
    return f"{community_workflow_id}/enrichment"


def rollout_state_code(workflow_id: str) -> str | None:
    """The state of a rollout's workflow, or of any workflow under it (`TX` for
    `state-rollout-TX/community-1/discovery`); None for a workflow of no rollout."""
    prefix = state_workflow_id("")
    if not workflow_id.startswith(prefix):
        return None
    return workflow_id.removeprefix(prefix).split("/", 1)[0] or None


# -- schedules --------------------------------------------------------------------------
# Daily PlacesRetentionWorkflow (Google's storage terms); each run's id is
# RETENTION_RUN_ID_PREFIX followed by the time the schedule started it.
RETENTION_SCHEDULE_ID = "places-retention"
RETENTION_RUN_ID_PREFIX = "places-retention-run"
# OutboxRelayWorkflow every minute (the outbox rows due for delivery); each run's id is
# OUTBOX_RELAY_RUN_ID_PREFIX followed by the time the schedule started it.
OUTBOX_RELAY_SCHEDULE_ID = "outbox-relay"
OUTBOX_RELAY_RUN_ID_PREFIX = "outbox-relay-run"


# -- workflow types, signals, queries ----------------------------------------------------
class WorkflowType(StrEnum):
    STATE_ROLLOUT = "StateRolloutWorkflow"
    COMMUNITY_ROLLOUT = "CommunityRolloutWorkflow"
    COMMUNITY_DISCOVERY = "CommunityDiscoveryWorkflow"
    COMMUNITY_ENRICHMENT = "CommunityEnrichmentWorkflow"
    PLACES_RETENTION = "PlacesRetentionWorkflow"
    OUTBOX_RELAY = "OutboxRelayWorkflow"


class Signal(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    SET_BATCH_SIZE = "set_batch_size"
    # Sent by each community child to its state rollout when it ends.
    COMMUNITY_FINISHED = "community_finished"


class Update(StrEnum):
    """Operator commands that can be refused: the caller gets the workflow's own answer
    (or its reason for refusing) instead of a fire-and-forget signal."""

    PAUSE = "pause_rollout"
    RESUME = "resume_rollout"
    SET_BATCH_SIZE = "change_batch_size"


class Query(StrEnum):
    PROGRESS = "progress"
    PHASE = "phase"
    DISCOVERY_PROGRESS = "discovery_progress"
    ENRICHMENT_PROGRESS = "enrichment_progress"


# -- search attributes (Keyword), registered by the dev stack and deploy/ ------------------
class SearchAttribute(StrEnum):
    STATE_CODE = "RolloutStateCode"
    STATUS = "RolloutStatus"
    # On each community's workflow: processing, then completed, failed, cancelled or paused.
    COMMUNITY_STATUS = "RolloutCommunityStatus"


# -- error types (ApplicationError.type) ---------------------------------------------------
class ErrorType(StrEnum):
    # Invalid key, API disabled, daily quota gone: the community reports "paused" and its
    # state rollout pauses with the reason.
    PLACES_ACCESS = "PlacesAccessError"
    # The daily quota is gone: like PLACES_ACCESS, and Google resets it at midnight Pacific.
    PLACES_DAILY_QUOTA = "PlacesDailyQuotaError"
    # A phase's own check failed (verification thresholds, a community with no region).
    PHASE_THRESHOLD_FAILED = "PhaseThresholdFailed"
    # A phase's settings are unusable (e.g. a field mask the API would refuse).
    PHASE_CONFIG = "PhaseConfigError"
    # The rollout's start input was refused by the database bookkeeping.
    ROLLOUT_INPUT = "RolloutInputError"
    # The state workflow refused its start input.
    INVALID_ROLLOUT_INPUT = "InvalidRolloutInput"
    # The state already has an active rollout row.
    ACTIVE_ROLLOUT_EXISTS = "ActiveRolloutExists"
    # A community's workflow ends with this after it reported its failure to the rollout.
    COMMUNITY_FAILED = "CommunityFailed"
    # Postgres could not be reached (raised for any activity by activities/outages.py).
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    # Places answered 5xx, timed out or could not be reached (rollout.places.errors names).
    PLACES_SERVER = "ServerError"
    PLACES_TIMEOUT = "PlacesTimeoutError"
    PLACES_CONNECTION = "PlacesConnectionError"
    # Places request errors no retry can help (the names of rollout.places.errors classes).
    PLACES_INVALID_REQUEST = "InvalidRequestError"
    PLACES_NOT_FOUND = "NotFoundError"


# Errors that stop a phase activity's retries at once.
PHASE_NON_RETRYABLE = (
    ErrorType.PLACES_ACCESS,
    ErrorType.PLACES_DAILY_QUOTA,
    ErrorType.PHASE_THRESHOLD_FAILED,
    ErrorType.PHASE_CONFIG,
    ErrorType.ROLLOUT_INPUT,
)
# Errors that stop a single Places request's retries at once.
PLACES_NON_RETRYABLE = (
    ErrorType.PLACES_ACCESS,
    ErrorType.PLACES_DAILY_QUOTA,
    ErrorType.PHASE_CONFIG,
    ErrorType.PLACES_INVALID_REQUEST,
    ErrorType.PLACES_NOT_FOUND,
)
# A phase that still fails with one of these after its retries did not fail on its own: a
# service was out. The community goes back to the queue and the rollout pauses until the
# service answers again.
OUTAGE_ERRORS = frozenset(
    {
        ErrorType.DATABASE_UNAVAILABLE,
        ErrorType.PLACES_SERVER,
        ErrorType.PLACES_TIMEOUT,
        ErrorType.PLACES_CONNECTION,
    }
)
# Errors that stop a bookkeeping activity's retries at once.
RECORD_NON_RETRYABLE = (ErrorType.ROLLOUT_INPUT, ErrorType.ACTIVE_ROLLOUT_EXISTS)
