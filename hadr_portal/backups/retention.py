"""Which backups the next pruning deletes, and why — computed, shown, then applied.

Never deleted: the newest good backup of a policy, a pinned backup, a backup a restore or drill
uses. Age retention: scheduled backups older than `keep_scheduled_days`, manual ones older than
`keep_manual_days`. Calendar retention: the newest backup of each of the last `keep_daily` days,
`keep_weekly` ISO weeks and `keep_monthly` months is kept; manual ones still by age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from .models import Backup, BackupPolicy, Restore


@dataclass(frozen=True)
class RetentionDecision:
    backup: Backup
    delete: bool
    reason: str


DRAFT_HOLDS = timedelta(days=1)  # a backup chosen in the restore wizard stays while the DBA works through it


def backups_in_use(*, now: datetime | None = None) -> set[int]:
    """Backups a queued or running restore or drill reads, or a restore being prepared has chosen."""
    now = now or timezone.now()
    active = Q(status__in=Restore.ACTIVE) | Q(status=Restore.Status.DRAFT, created_at__gte=now - DRAFT_HOLDS)
    return set(Restore.objects.filter(active).exclude(backup=None).values_list("backup_id", flat=True))


def retention_plan(policy: BackupPolicy, *, now: datetime | None = None) -> list[RetentionDecision]:
    now = now or timezone.now()
    good = list(policy.backups.filter(status=Backup.Status.GOOD).order_by("-started_at", "-id"))
    in_use = backups_in_use(now=now)
    if policy.is_physical:
        return _sets_plan(policy, good, now, in_use)
    return _decide(policy, good, now, in_use, "newest good backup: always kept")


def _sets_plan(policy: BackupPolicy, good: list[Backup], now: datetime, in_use: set[int]) -> list[RetentionDecision]:
    """pgBackRest sets: the calendar decides over each repository's full sets (the newest full is always kept: a
    gap-free WAL chain to now starts there); a diff or incr goes with the full it builds on, never alone."""
    decisions: list[RetentionDecision] = []
    for repo in sorted({backup.repo or 1 for backup in good}):
        sets = [backup for backup in good if (backup.repo or 1) == repo]
        fulls = [backup for backup in sets if backup.set_type == "full"]
        decided = {
            d.backup.pk: d for d in _decide(policy, fulls, now, in_use, "newest full set: recovery to now needs it")
        }
        by_label = {backup.key: backup for backup in sets}
        for backup in sets:
            if backup.pk in decided:
                decisions.append(decided[backup.pk])
                continue
            root = backup
            while root.prior and root.prior in by_label and root.set_type != "full":
                root = by_label[root.prior]
            base = decided.get(root.pk)
            if base is None or not base.delete:
                decisions.append(RetentionDecision(backup, False, f"{backup.set_type} set on full {root.key}, kept"))
            else:
                decisions.append(RetentionDecision(backup, True, f"goes with full {root.key} ({base.reason})"))
    return decisions


def _decide(
    policy: BackupPolicy, good: list[Backup], now: datetime, in_use: set[int], newest_reason: str
) -> list[RetentionDecision]:
    calendar_keep = _calendar_keepers(policy, good, now) if policy.retention == BackupPolicy.Retention.CALENDAR else {}
    decisions = []
    for index, backup in enumerate(good):
        age = now - backup.started_at
        if index == 0:
            decisions.append(RetentionDecision(backup, False, newest_reason))
        elif backup.pinned:
            decisions.append(RetentionDecision(backup, False, "pinned"))
        elif backup.pk in in_use:
            decisions.append(RetentionDecision(backup, False, "in use by a restore or restore drill"))
        elif backup.kind == Backup.Kind.MANUAL or policy.retention == BackupPolicy.Retention.AGE:
            days = policy.keep_manual_days if backup.kind == Backup.Kind.MANUAL else policy.keep_scheduled_days
            expired = age > timedelta(days=days)
            what = "manual" if backup.kind == Backup.Kind.MANUAL else backup.kind
            reason = f"{what}, {age.days} days old, kept {days} days"
            decisions.append(RetentionDecision(backup, expired, ("expired: " if expired else "") + reason))
        elif backup.pk in calendar_keep:
            decisions.append(RetentionDecision(backup, False, calendar_keep[backup.pk]))
        else:
            decisions.append(RetentionDecision(backup, True, "not the newest of any kept day, week or month"))
    return decisions


def expires_at(policy: BackupPolicy, backup: Backup) -> datetime | None:
    """When age retention would delete it (None: pinned, or calendar-kept)."""
    if backup.pinned or backup.status != Backup.Status.GOOD:
        return None
    if backup.kind == Backup.Kind.MANUAL:
        return backup.started_at + timedelta(days=policy.keep_manual_days)
    if policy.retention == BackupPolicy.Retention.AGE:
        return backup.started_at + timedelta(days=policy.keep_scheduled_days)
    return None


def _calendar_keepers(policy: BackupPolicy, good: list[Backup], now: datetime) -> dict[int, str]:
    keep: dict[int, str] = {}
    rules = (
        ("daily", policy.keep_daily, lambda d: d.date()),
        ("weekly", policy.keep_weekly, lambda d: tuple(d.isocalendar())[:2]),
        ("monthly", policy.keep_monthly, lambda d: (d.year, d.month)),
    )
    for label, count, bucket_of in rules:
        seen: list[object] = []
        for backup in good:  # newest first: the first of each bucket is its newest
            if backup.kind == Backup.Kind.MANUAL:
                continue
            bucket = bucket_of(timezone.localtime(backup.started_at, timezone.get_current_timezone()))
            if bucket in seen:
                continue
            seen.append(bucket)
            if len(seen) > count:
                break
            keep.setdefault(backup.pk, f"kept as the newest {label} backup ({bucket})")
    return keep
