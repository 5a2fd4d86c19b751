"""Each Places method's task queue, as the Temporal server runs it: one partition, fairness,
and the method's own rate limit set by the workers (docs/contract.md, Task queues)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import RateLimitSource, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from devstack.embedded import DEV_SERVER_DYNAMIC_CONFIG, EmbeddedStack, TemporalDevServer
from devstack.services import start_worker
from rollout.contract import PLACES_TASK_QUEUE, PLACES_TASK_QUEUES
from rollout.places.pricing import Endpoint
from tests.conftest import PROJECT_ROOT
from worker import places_rate

PLACES_QUEUES = set(PLACES_TASK_QUEUES.values())
# What each places queue needs from the server's dynamic config.
NEEDED = {
    "matching.numTaskqueueReadPartitions": 1,
    "matching.numTaskqueueWritePartitions": 1,
    "matching.enableFairness": True,
}
WAIT_S = 60.0


def test_the_dev_server_starts_with_one_partition_and_fairness(tmp_path: Path) -> None:
    argv = TemporalDevServer(7233, 8233, tmp_path).argv()
    values = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dynamic-config-value"]
    assert DEV_SERVER_DYNAMIC_CONFIG == NEEDED
    assert set(values) == {
        "matching.numTaskqueueReadPartitions=1",
        "matching.numTaskqueueWritePartitions=1",
        "matching.enableFairness=true",
    }


def test_the_clusters_dynamic_config_gives_each_places_queue_the_same() -> None:
    config: dict[str, list[dict[str, Any]]] = yaml.safe_load(
        (PROJECT_ROOT / "deploy" / "dynamicconfig" / "development-sql.yaml").read_text()
    )
    for key, value in NEEDED.items():
        scoped = {
            entry["constraints"]["taskQueueName"]: entry["value"]
            for entry in config[key]
            if entry["constraints"].get("taskType") == "Activity"
        }
        assert scoped == dict.fromkeys(PLACES_QUEUES, value), key


async def describe(client: Client, queue: str, *, config: bool = False) -> Any:
    return await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_config=config,
        )
    )


async def test_each_methods_queue_carries_its_own_quota_as_the_servers_rate_limit(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    qpm = {Endpoint.SEARCH_TEXT: 600, Endpoint.SEARCH_NEARBY: 600, Endpoint.GET_PLACE: 1200}
    env = {
        **os.environ,
        **stack.environment(),
        # Nothing is requested: any key and address will do.
        "PLACES_API_KEY": "test-key",
        "PLACES_BASE_URL": "http://127.0.0.1:9",
        "PLACES_QPM": "600",
        "PLACES_QPM_GET_PLACE": "1200",
        "USAGE_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "WORKER_HEALTH_FILE": str(tmp_path / "alive"),
    }
    worker = start_worker(stack, env, name="places-queues-worker")
    try:
        client = await Client.connect(stack.temporal_address)
        expected = {PLACES_TASK_QUEUES[m]: places_rate(q) for m, q in qpm.items()}
        expected[PLACES_TASK_QUEUE] = places_rate(600)
        # The workers set the rate with their polls: wait until the server has them all
        # (it keeps them as float32: compared to the thousandth).
        deadline = time.monotonic() + WAIT_S
        while True:
            seen = {}
            for queue in expected:
                answer = await describe(client, queue, config=True)
                limit = answer.effective_rate_limit
                seen[queue] = (
                    round(limit.requests_per_second, 3),
                    limit.rate_limit_source,
                    len(answer.pollers) > 0,
                )
            wanted = {
                q: (round(rate, 3), RateLimitSource.RATE_LIMIT_SOURCE_WORKER, True)
                for q, rate in expected.items()
            }
            if seen == wanted or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert seen == wanted
        # One partition: the worker's polls all reach the root; a second partition would
        # have some (the server spreads polls over a queue's partitions at random).
        for queue in PLACES_QUEUES:
            child = await describe(client, f"/_sys/{queue}/1")
            assert list(child.pollers) == [], queue
    finally:
        worker.stop()
