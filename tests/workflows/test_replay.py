"""Replay recorded workflow histories against today's workflow code.

A change that makes the workflows non-deterministic for histories already running in
production fails here. The histories are recorded from a real rollout by
`RECORD_HISTORIES=1 ./scripts/test -k "full_rollout or retention_schedule or outage"`
(tests/workflows/test_rollout_live.py, tests/workflows/test_retention_schedule.py,
tests/phases/seeding/test_relay.py);
re-record them only together with a deliberate, versioned workflow change (see "Patches"
in docs/architecture.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS, sandbox_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    kinds = {path.name.split("__")[0] for path in HISTORIES}
    assert kinds >= {
        "StateRolloutWorkflow",
        "CommunityRolloutWorkflow",
        "CommunityDiscoveryWorkflow",
        "CommunityEnrichmentWorkflow",
        "PlacesRetentionWorkflow",
        "OutboxRelayWorkflow",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    recorded = json.loads(path.read_text())  # noqa: ASYNC240 - a small local file
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    )
    await replayer.replay_workflow(history)
