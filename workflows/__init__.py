"""Temporal workflows: deterministic orchestration only (no I/O, no ORM, no httpx).

Everything they exchange with activities is a small DTO from rollout.payloads.

Import each workflow from its module. This package imports none of them: the workflow
sandbox imports the package afresh for every workflow run, and importing every workflow
module there tripled the cost of starting a run (issue #16).
"""
