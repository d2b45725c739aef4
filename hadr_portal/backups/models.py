"""Where backups go, how often they are taken and kept, and every backup ever taken."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hadr_portal.core.validators import slug


def validate_cron(value: str) -> None:
    if not croniter.is_valid(value):
        raise ValidationError(f"{value!r} is not a cron expression (e.g. '0 2 * * *' for 02:00 every day).")


class StorageTarget(models.Model):
    """A place for backups: a local directory or an S3 bucket. Credentials are named, never stored."""

    class Kind(models.TextChoices):
        LOCAL = "local", "Local directory"
        S3 = "s3", "S3 (or compatible)"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(
        default=dict,
        help_text="local: path. s3: bucket, prefix, endpoint_url, region, sse, access_key_env, secret_key_env",
    )

    def __str__(self) -> str:
        return self.name


class BackupPolicy(models.Model):
    """One database's backups: what engine, where, when (cron), and how long they are kept.

    Retention never deletes the newest good backup, a pinned one, or one a restore is using.
    """

    class Engine(models.TextChoices):
        PG_DUMP = "pg_dump", "Logical (pg_dump, custom format)"
        PG_DUMP_DIR = "pg_dump_dir", "Logical (pg_dump, directory format, parallel)"
        PG_BASEBACKUP = "pg_basebackup", "Physical (pg_basebackup, tar)"

    class Retention(models.TextChoices):
        AGE = "age", "By age (scheduled N days, manual M days)"
        CALENDAR = "calendar", "Calendar (last N daily, weekly, monthly)"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    cluster = models.ForeignKey("databases.Cluster", on_delete=models.PROTECT, related_name="backup_policies")
    dbname = models.CharField(max_length=63, help_text="Database to back up (physical backups take the whole cluster)")
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.PG_DUMP)
    compress = models.CharField(max_length=32, blank=True, help_text="pg_dump: 0-9; pg_basebackup: e.g. server-lz4")
    jobs = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(16)])
    storage = models.ForeignKey(StorageTarget, on_delete=models.PROTECT, related_name="policies")
    schedule = models.CharField(max_length=100, default="0 2 * * *", validators=[validate_cron])
    enabled = models.BooleanField(default=True)
    retention = models.CharField(max_length=16, choices=Retention.choices, default=Retention.AGE)
    keep_scheduled_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)])
    keep_manual_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    keep_daily = models.PositiveIntegerField(default=7)
    keep_weekly = models.PositiveIntegerField(default=4)
    keep_monthly = models.PositiveIntegerField(default=6)
    rpo_minutes = models.PositiveIntegerField(default=1440, validators=[MinValueValidator(1)])
    grace_minutes = models.PositiveIntegerField(default=60, help_text="Late by this much after the schedule: alert")
    next_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return f"backup:{self.name}"

    def next_after(self, moment: datetime) -> datetime:
        return croniter(self.schedule, timezone.localtime(moment)).get_next(datetime)

    def period_seconds(self, around: datetime | None = None) -> float:
        """The time between two scheduled runs (cron schedules need not be regular: take the next one)."""
        first = self.next_after(around or timezone.now())
        return (self.next_after(first) - first).total_seconds()


class Backup(models.Model):
    """One backup: its bytes in storage, their size and SHA-256, and the manifest beside them.

    `good` only once the stored object has been re-read and its size and checksum match.
    """

    class Kind(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Manual"
        SAFETY = "safety", "Safety (before a restore)"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        GOOD = "good", "Good"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted"

    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    engine = models.CharField(max_length=16, choices=BackupPolicy.Engine.choices)
    storage = models.ForeignKey(StorageTarget, on_delete=models.PROTECT, related_name="backups")
    key = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    database_size = models.BigIntegerField(null=True, blank=True)
    lsn = models.CharField(max_length=32, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    pinned = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Last verified restore (drills)")
    deleted_at = models.DateTimeField(null=True, blank=True)
    operation = models.OneToOneField(
        "core.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="backup"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="good") | (Q(size__isnull=False) & ~Q(sha256="") & ~Q(key="")),
                name="good_backup_has_size_checksum_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.policy.name} {self.started_at:%Y-%m-%d %H:%M} {self.kind} {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None

    @property
    def throughput_mb_s(self) -> float | None:
        seconds = self.duration_seconds
        return self.size / 1e6 / seconds if self.size and seconds else None
