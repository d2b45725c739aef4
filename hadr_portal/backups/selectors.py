"""What the backup pages and the freshness check need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from .models import Backup, BackupPolicy
from .retention import expires_at


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class Freshness:
    """The last good backup's age against the RPO and the schedule."""

    policy: BackupPolicy
    last_good: Backup | None
    age_seconds: float | None
    state: str  # up: within RPO · degraded: older than the RPO · down: schedule missed (period + grace)
    message: str

    def as_data(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "age_seconds": self.age_seconds,
            "rpo_seconds": self.policy.rpo_minutes * 60,
            "last_good_at": self.last_good.started_at.isoformat() if self.last_good else None,
            "next_run_at": self.policy.next_run_at.isoformat() if self.policy.next_run_at else None,
        }

    @property
    def color(self) -> str:
        return {"up": "green", "degraded": "amber", "down": "red"}[self.state]


def backup_freshness(policy_name: str, *, now: datetime | None = None) -> Freshness | None:
    now = now or timezone.now()
    policy = BackupPolicy.objects.filter(name=policy_name).first()
    if policy is None:
        return None
    return freshness_of(policy, now=now)


def freshness_of(policy: BackupPolicy, *, now: datetime | None = None) -> Freshness:
    now = now or timezone.now()
    last = policy.backups.filter(status=Backup.Status.GOOD).order_by("-started_at").first()
    rpo = policy.rpo_minutes * 60
    missed_after = policy.period_seconds(now) + policy.grace_minutes * 60
    if last is None:
        return Freshness(policy, None, None, "down", f"no good backup yet (RPO {_human(rpo)})")
    age = (now - last.started_at).total_seconds()
    text = f"last good backup {_human(age)} ago (RPO {_human(rpo)})"
    if age > missed_after:
        return Freshness(
            policy, last, age, "down", f"backup missed: {text}; the schedule allows {_human(missed_after)}"
        )
    if age > rpo:
        return Freshness(policy, last, age, "degraded", f"RPO exceeded: {text}")
    return Freshness(policy, last, age, "up", text)


def backups_list(filters: dict[str, str]) -> tuple[QuerySet[Backup], list[str]]:
    backups = Backup.objects.select_related("policy", "storage", "requested_by", "operation")
    errors = []
    if policy := filters.get("policy"):
        backups = backups.filter(policy__name=policy)
    if status := filters.get("status"):
        if status in Backup.Status.values:
            backups = backups.filter(status=status)
        else:
            errors.append(f"Unknown status {status!r}.")
    if kind := filters.get("kind"):
        if kind in Backup.Kind.values:
            backups = backups.filter(kind=kind)
        else:
            errors.append(f"Unknown kind {kind!r}.")
    if filters.get("pinned") == "yes":
        backups = backups.filter(pinned=True)
    return backups, errors


def policies_overview(now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or timezone.now()
    from hadr_portal.core.models import Operation

    rows = []
    for policy in BackupPolicy.objects.select_related("cluster", "storage"):
        active = Operation.objects.filter(target=policy.target, status__in=Operation.ACTIVE).first()
        rows.append({"policy": policy, "freshness": freshness_of(policy, now=now), "active": active})
    return rows


def backup_expiry(backup: Backup) -> datetime | None:
    return expires_at(backup.policy, backup)
