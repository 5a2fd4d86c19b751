"""Rich rendering of progress documents and rollout lists (CLI only)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.control import RolloutListing
from rollout.payloads import ProgressDocument
from rollout.progress import in_flight_line, progress_line
from rollout.status import PHASE_NAMES, Phase

MAX_IN_FLIGHT_ROWS = 12
MAX_IN_FLIGHT_LINE = 5

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
        table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
        for column in ("in flight", "phase", "requests", "businesses", "cost"):
            table.add_column(
                column, justify="left" if column in ("in flight", "phase") else "right"
            )
        for c in doc.in_flight[:MAX_IN_FLIGHT_ROWS]:
            if c.problem:
                phase = Text(c.problem, style="bold red")
            elif c.phase is None:
                phase = Text("starting")
            else:
                phase = Text(f"{c.phase} {PHASE_NAMES[Phase(c.phase)]}")
            table.add_row(
                c.name,
                phase,
                "" if c.requests is None else f"{c.requests:,}",
                "" if c.businesses is None else f"{c.businesses:,}",
                "" if c.cost_usd is None else f"${c.cost_usd:,.2f}",
            )
        parts.append(table)
        if len(doc.in_flight) > MAX_IN_FLIGHT_ROWS:
            more = len(doc.in_flight) - MAX_IN_FLIGHT_ROWS
            parts.append(Text(f"and {more} more in flight", style="dim"))
    return Group(*parts)


class ProgressLines:
    """`progress_line` and the in-flight communities, printed only when they changed: a
    rollout followed into a pipe or a log. `from_first_community` holds back the lines of a
    rollout whose rows are not written yet ("0/0 communities")."""

    def __init__(self, console: Console, *, from_first_community: bool = False) -> None:
        self.console = console
        self.from_first_community = from_first_community
        self.last = ""

    def show(self, doc: ProgressDocument) -> None:
        line = progress_line(doc)
        if doc.in_flight:
            now = "; ".join(in_flight_line(c) for c in doc.in_flight[:MAX_IN_FLIGHT_LINE])
            more = len(doc.in_flight) - MAX_IN_FLIGHT_LINE
            line += f" | now: {now}" + (f"; {more} more" if more > 0 else "")
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
