"""Temporal workflows: deterministic orchestration only (no I/O, no ORM, no httpx).

Everything they exchange with activities is a small DTO from rollout.payloads.
"""

from workflows.community_rollout import CommunityRolloutWorkflow
from workflows.discovery import CommunityDiscoveryWorkflow
from workflows.enrichment import CommunityEnrichmentWorkflow
from workflows.outbox_relay import OutboxRelayWorkflow
from workflows.retention import PlacesRetentionWorkflow
from workflows.state_rollout import StateRolloutWorkflow

__all__ = [
    "CommunityDiscoveryWorkflow",
    "CommunityEnrichmentWorkflow",
    "CommunityRolloutWorkflow",
    "OutboxRelayWorkflow",
    "PlacesRetentionWorkflow",
    "StateRolloutWorkflow",
]
