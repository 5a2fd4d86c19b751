"""Rich rendering of progress documents and rollout lists (CLI only)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.control import RolloutListing
from rollout.payloads import ProgressDocument

STATUS_STYLE = {
    "in_progress": "bold cyan",
    "paused": "bold yellow",
    "completed": "bold green",
    "cancelled": "bold magenta",
    "failed": "bold red",
    "planned": "dim",
}


def progress_view(doc: ProgressDocument) -> RenderableType:
    r = doc.rollout
    b = doc.status_breakdown
    done = b.completed + b.failed + b.cancelled
    header = Text.assemble(
        (f"{r.state_name} ({r.state_code})", "bold"),
        "  ",
        (r.status.value, STATUS_STYLE.get(r.status.value, "")),
        f"  rollout #{r.id}" if r.id else "",
    )
    bar = ProgressBar(total=max(r.total_communities, 1), completed=done, width=50)
    line = Text(
        f"{done:,}/{r.total_communities:,} communities  {doc.progress_percentage:.1f}%  "
        f"(completed {b.completed:,}, failed {b.failed:,}, in flight {b.processing}, "
        f"queued {b.queued:,}, paused {b.paused:,}, cancelled {b.cancelled:,})"
    )
    totals = Text(
        f"businesses {doc.total_businesses:,}   news sources {doc.total_news_sources:,}   "
        f"cost ${doc.total_cost:,}   estimated remaining ${doc.estimated_remaining_cost:,}"
        + (f"   budget ${r.budget_usd:,}" if r.budget_usd else "")
    )
    parts: list[RenderableType] = [header, bar, line, totals]
    if doc.paused_reason:
        parts.append(Text(f"paused: {doc.paused_reason}", style="yellow"))
    if doc.in_flight:
        names = ", ".join(c.name for c in doc.in_flight[:8])
        more = f" and {len(doc.in_flight) - 8} more" if len(doc.in_flight) > 8 else ""
        parts.append(Text(f"now: {names}{more}", style="dim"))
    return Group(*parts)


def progress_line(doc: ProgressDocument) -> str:
    """One plain line per state of a rollout, for `progress --watch` into a pipe or a log,
    where a live-redrawn bar would print nothing until the end."""
    r = doc.rollout
    b = doc.status_breakdown
    done = b.completed + b.failed + b.cancelled
    paused = f" ({doc.paused_reason})" if doc.paused_reason else ""
    return (
        f"{r.state_code} {r.status.value}{paused}: {done}/{r.total_communities} communities "
        f"(completed {b.completed}, failed {b.failed}, in flight {b.processing}, "
        f"queued {b.queued}, paused {b.paused}, cancelled {b.cancelled}), "
        f"businesses {doc.total_businesses}, news sources {doc.total_news_sources}, "
        f"cost ${doc.total_cost}"
    )


class ProgressLines:
    """`progress_line` printed only when it changed: a rollout followed into a pipe or a
    log. `from_first_community` holds back the lines of a rollout whose rows are not
    written yet ("0/0 communities")."""

    def __init__(self, console: Console, *, from_first_community: bool = False) -> None:
        self.console = console
        self.from_first_community = from_first_community
        self.last = ""

    def show(self, doc: ProgressDocument) -> None:
        line = progress_line(doc)
        if line == self.last or (self.from_first_community and not doc.rollout.total_communities):
            return
        self.console.print(line, soft_wrap=True)
        self.last = line


def rollouts_table(rows: list[RolloutListing]) -> Table:
    table = Table(title="State rollouts")
    for column in ("state", "status", "workflow", "workflow id", "started", "closed"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.state_code,
            Text(row.status, style=STATUS_STYLE.get(row.status, "")),
            row.workflow_status,
            row.workflow_id,
            row.started.strftime("%Y-%m-%d %H:%M") if row.started else "",
            row.closed.strftime("%Y-%m-%d %H:%M") if row.closed else "",
        )
    return table
