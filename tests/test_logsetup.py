"""Structured logs: LOG_FORMAT=json writes one JSON object per line, extras included."""

from __future__ import annotations

import json
import logging

import pytest

from rollout.logsetup import configure_logging


def test_json_lines_carry_the_temporal_context(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", "json")
        logging.getLogger("worker").info(
            "phase %s done", 2, extra={"temporal_activity": {"activity_id": "7"}}
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], root.level = saved
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "worker"
    assert entry["message"] == "phase 2 done"
    assert entry["temporal_activity"] == {"activity_id": "7"}
