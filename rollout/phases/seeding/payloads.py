"""Payloads of the outbox relay (OutboxRelayWorkflow and its activity): counts and knobs."""

from __future__ import annotations

from pydantic import Field

from rollout.payloads import Payload


class RelayRun(Payload):
    """OutboxRelayWorkflow's input. The schedule leaves every field at its default; tests
    and benchmarks pass shorter waits."""

    # Rows claimed and posted per activity.
    batch_size: int = Field(default=200, ge=1, le=5000)
    # A run stops after this many batches, to keep its history short; the schedule's next
    # run goes on with what is still due.
    max_batches: int = Field(default=500, ge=1)
    # The backoff of an undelivered row: initial_s doubled per attempt, at most maximum_s.
    backoff_initial_s: float = Field(default=30.0, gt=0)
    backoff_maximum_s: float = Field(default=3600.0, gt=0)


class RelayBatch(Payload):
    """One batch: how many rows to claim, and the backoff of those not delivered."""

    batch_size: int
    backoff_initial_s: float
    backoff_maximum_s: float


class RelayBatchCounts(Payload):
    """What one batch did with the rows it claimed (none claimed: nothing was due)."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


class RelayCounts(Payload):
    """What a relay run did, over all its batches."""

    batches: int = 0
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
