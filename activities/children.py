"""Activities that ask Temporal about community children, for a state rollout that no
longer holds their handles (it continued as new since it started them)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from rollout.payloads import ChildCheck, ClosedChild

# How a child that never reports back ended; COMPLETED and CANCELED children report
# before they close, so only these mean "closed without a word".
SILENT_ENDS = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.FAILED: "failed",
}


class ChildWatchActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="closed_children")
    async def closed_children(self, inp: ChildCheck) -> list[ClosedChild]:
        """Which of these workflows closed without reporting, and how."""
        closed: list[ClosedChild] = []
        for workflow_id in inp.workflow_ids:
            try:
                status = (await self.client.get_workflow_handle(workflow_id).describe()).status
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                closed.append(ClosedChild(workflow_id=workflow_id, reason="no longer exists"))
                continue
            if status in SILENT_ENDS:
                closed.append(ClosedChild(workflow_id=workflow_id, reason=SILENT_ENDS[status]))
        return closed
