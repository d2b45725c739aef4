"""What the backup pages and the freshness check need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from hadr_portal.core.humanize import duration_text

from .models import Backup, BackupPolicy, Restore
from .retention import expires_at

RTO_TREND_POINTS = 30


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


def freshness_of(policy: BackupPolicy, *, now: datetime | None = None) -> Freshness:
    """The RPO, and whether the last restore drill proved the backups restore: a failed drill is `degraded`
    (the backup check alerts like any other check)."""
    now = now or timezone.now()
    last = policy.backups.filter(status=Backup.Status.GOOD).order_by("-started_at").first()
    rpo = policy.rpo_minutes * 60
    missed_after = policy.period_seconds(now) + policy.grace_minutes * 60
    if last is None:
        return Freshness(policy, None, None, "down", f"no good backup yet (RPO {duration_text(rpo, coarse=True)})")
    age = (now - last.started_at).total_seconds()
    text = f"last good backup {duration_text(age, coarse=True)} ago (RPO {duration_text(rpo, coarse=True)})"
    if age > missed_after:
        allowed = duration_text(missed_after, coarse=True)
        return Freshness(policy, last, age, "down", f"backup missed: {text}; the schedule allows {allowed}")
    if age > rpo:
        return Freshness(policy, last, age, "degraded", f"RPO exceeded: {text}")
    drill = last_drill(policy)
    if drill is not None and drill.status == Restore.Status.FAILED:
        ago = duration_text((now - (drill.finished_at or now)).total_seconds(), coarse=True)
        return Freshness(policy, last, age, "degraded", f"{text}; restore drill failed {ago} ago: {drill.error}")
    return Freshness(policy, last, age, "up", text)


def last_drill(policy: BackupPolicy) -> Restore | None:
    """The policy's last finished restore drill (verified or failed)."""
    finished = (Restore.Status.VERIFIED, Restore.Status.FAILED)
    return policy.restores.filter(kind=Restore.Kind.DRILL, status__in=finished).order_by("-finished_at", "-id").first()


@dataclass(frozen=True)
class RecoveryProof:
    """What the Backups page and the dashboard say about restores of one database."""

    last_verified: Restore | None  # restore or drill
    last_drill: Restore | None
    rto_points: list[tuple[datetime, float]]  # (verified at, seconds from request to verified), oldest first
    active: Restore | None

    @property
    def rto_seconds(self) -> list[float]:
        return [seconds for _, seconds in self.rto_points]


def recovery_proof(policy: BackupPolicy) -> RecoveryProof:
    verified = policy.restores.filter(status=Restore.Status.VERIFIED).exclude(rto_seconds=None)
    recent = list(verified.order_by("-finished_at")[:RTO_TREND_POINTS])
    return RecoveryProof(
        last_verified=recent[0] if recent else None,
        last_drill=last_drill(policy),
        rto_points=[(r.finished_at, r.rto_seconds) for r in reversed(recent) if r.finished_at and r.rto_seconds],
        active=policy.restores.filter(status__in=Restore.ACTIVE).order_by("-id").first(),
    )


def backups_for_restore(policy: BackupPolicy, *, now: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Good backups newest first, each with its age and the last restore or drill of it (its verification state)."""
    now = now or timezone.now()
    backups = list(policy.backups.filter(status=Backup.Status.GOOD).order_by("-started_at", "-id")[:limit])
    checks: dict[int, Restore] = {}
    finished = (Restore.Status.VERIFIED, Restore.Status.FAILED)
    for restore in Restore.objects.filter(backup__in=backups, status__in=finished).order_by("finished_at", "id"):
        checks[restore.backup_id] = restore  # type: ignore[index]  # the newest one wins
    return [
        {
            "backup": backup,
            "age": duration_text((now - backup.started_at).total_seconds(), coarse=True),
            "checked": checks.get(backup.pk),
        }
        for backup in backups
    ]


def suggested_backup(policy: BackupPolicy) -> Backup | None:
    """The newest good backup whose last restore or drill did not fail."""
    rows = backups_for_restore(policy)
    good = [row["backup"] for row in rows if not (row["checked"] and row["checked"].status == Restore.Status.FAILED)]
    return good[0] if good else (rows[0]["backup"] if rows else None)


def rto_objective_minutes(policy: BackupPolicy) -> int | None:
    """The RTO of the service whose backup check watches this policy (the catalog's objective for it); read
    through the policy's checks (`Check.policy`), so this app needs nothing from the status app above it."""
    check = policy.checks.filter(kind="backup").select_related("service").first()
    return check.service.rto_minutes if check else None


def restores_list(limit: int = 50) -> QuerySet[Restore]:
    return (
        Restore.objects.exclude(status=Restore.Status.DRAFT)
        .select_related("policy__cluster", "backup", "operation", "requested_by", "destination_cluster")
        .order_by("-created_at", "-id")[:limit]
    )


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
        rows.append(
            {
                "policy": policy,
                "freshness": freshness_of(policy, now=now),
                "active": active,
                "proof": recovery_proof(policy),
            }
        )
    return rows


def backup_expiry(backup: Backup) -> datetime | None:
    return expires_at(backup.policy, backup)
