"""The postmortem draft written when an incident is resolved: Markdown, from the records alone.

The times it states come from the records, never from a person's memory: the problem began at the first
failing check result (or when the incident was opened by hand); it was detected when the incident opened;
it was recovered when the service's checks were green again (or, without one, when it was mitigated).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from hadr_portal.adapters.probes import format_bytes
from hadr_portal.core.humanize import duration_text
from hadr_portal.status.models import State

from .models import Incident, TimelineEntry


@dataclass(frozen=True)
class IncidentTimes:
    began_at: datetime
    detected_at: datetime
    acknowledged_at: datetime | None
    recovered_at: datetime | None
    recovered_by: str  # "checks green again", "mitigated", "resolved"

    @property
    def to_detect(self) -> float:
        return (self.detected_at - self.began_at).total_seconds()

    @property
    def to_acknowledge(self) -> float | None:
        return (self.acknowledged_at - self.detected_at).total_seconds() if self.acknowledged_at else None

    @property
    def to_recover(self) -> float | None:
        return (self.recovered_at - self.began_at).total_seconds() if self.recovered_at else None


def incident_times(incident: Incident) -> IncidentTimes:
    recovered = (
        incident.timeline.filter(kind=TimelineEntry.Kind.TRANSITION, transition__to_state=State.UP)
        .order_by("at")
        .values_list("at", flat=True)
        .first()
    )
    if recovered:
        by = "checks green again"
    elif incident.mitigated_at:
        recovered, by = incident.mitigated_at, "mitigated"
    else:
        recovered, by = incident.resolved_at, "resolved"
    return IncidentTimes(incident.began_at, incident.opened_at, incident.acknowledged_at, recovered, by)


def data_lost(incident: Incident) -> str:
    """What the restores and failovers of the incident lost, from their own records."""
    lines = []
    for entry in incident.timeline.exclude(operation=None).select_related("operation"):
        operation = entry.operation
        restore = getattr(operation, "restore", None)
        if restore is not None and restore.data_loss_seconds is not None:
            lines.append(f"restore #{restore.pk}: {duration_text(restore.data_loss_seconds)} of changes")
        failover = getattr(operation, "failover", None)
        if failover is not None and failover.lag_bytes is not None:
            lines.append(
                f"failover #{failover.operation_id}: {format_bytes(failover.lag_bytes)} of WAL"
                " the replica had not received"
            )
    return "; ".join(lines) or "none recorded (no restore or failover during the incident)"


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "—"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _leader_change_rows(incident: Incident) -> list[str]:
    """The automatic failover's cost, as the write probe measured it (last write on the old leader → first on the
    new; probe rows committed on the old leader, missing on the new)."""
    change = incident.leader_change
    if change is None:
        return []
    rto = duration_text(change.rto_seconds) if change.rto_seconds is not None else "—"
    lost = f"{change.rows_lost} of {change.rows_checked} probe rows" if change.rows_lost is not None else "—"
    return [
        f"| writes stopped ({change.old_leader or '?'} → {change.new_leader}, write probe) | {rto} | — |",
        f"| committed writes lost (write probe, one row a second) | {lost} | — |",
    ]


def postmortem_draft(incident: Incident) -> str:
    times = incident_times(incident)
    service = incident.service
    rto = f"RTO {service.rto_minutes} min" if service else "—"
    rpo = f"RPO {service.rpo_minutes} min" if service else "—"
    over = ""
    if service and times.to_recover is not None:
        over = " — within the RTO" if times.to_recover <= service.rto_minutes * 60 else " — **over the RTO**"
    who = incident.responsible.get_username() if incident.responsible else "—"
    lines = [
        f"# Postmortem: incident #{incident.pk} — {incident.title}",
        "",
        f"*{incident.get_severity_display()} · service {service.display_name if service else '—'} · "
        f"responsible {incident.role or '—'} ({who}) · draft written {_when(timezone.now())}: edit it.*",
        "",
        "## Summary",
        "",
        f"The problem began at {_when(times.began_at)} and was detected at {_when(times.detected_at)}. "
        f"It was acknowledged at {_when(times.acknowledged_at)} and recovered at {_when(times.recovered_at)} "
        f"({times.recovered_by}). *What happened, and why, in two sentences.*",
        "",
        "## Measures",
        "",
        "| measure | measured | objective |",
        "|---|---|---|",
        f"| time to detect (began → detected) | {duration_text(times.to_detect)} | — |",
        f"| time to acknowledge (detected → acknowledged) | "
        f"{duration_text(times.to_acknowledge) if times.to_acknowledge is not None else '—'} | — |",
        f"| time to recover (began → recovered) | "
        f"{duration_text(times.to_recover) if times.to_recover is not None else '—'}{over} | {rto} |",
        f"| data lost | {_cell(data_lost(incident))} | {rpo} |",
        *_leader_change_rows(incident),
        "",
        "## Timeline",
        "",
        "| when | what | who |",
        "|---|---|---|",
        *[
            f"| {_when(entry.at)} | {entry.get_kind_display()}: {_cell(entry.text)} | {_cell(entry.actor_name)} |"
            for entry in incident.timeline.all()
        ],
        "",
        "## What went well, what did not",
        "",
        "- ",
        "",
        "## Actions",
        "",
        "- [ ] *What keeps this from happening again, who does it, by when.*",
        "",
    ]
    return "\n".join(lines)
