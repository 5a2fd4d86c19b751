"""Fixtures of the fast workflow tests (test_*_fast.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.workflows.fast_harness import start_test_server


@pytest_asyncio.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own (a fraction of a second to start).

    Not shared: once a child closes after its parent's run has closed (ABANDON children,
    continue-as-new, a cancelled rollout's late child), the test server's clock stops
    skipping for good, and every later timer would take its real time.
    """
    env = await start_test_server()
    try:
        yield env
    finally:
        await env.shutdown()
