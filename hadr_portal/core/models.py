"""The audit log and operations: the records every other app builds on."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import registry


class AuditEntry(models.Model):
    """One state change: who (with which roles), from where, when, what, on what, the outcome.

    Append-only. The database itself refuses UPDATE and DELETE on this table (a trigger added
    by migration 0002), so neither the UI, the admin nor a bug can rewrite history.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False
    )
    actor_name = models.CharField(max_length=150, help_text="Username, or 'system' for the portal itself")
    actor_roles = models.JSONField(default=list)
    address = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, blank=True, db_index=True)
    parameters = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    operation = models.ForeignKey(
        "Operation", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target} {self.outcome}"


# The task every operation runs in (core.tasks): what its outbox message names.
EXECUTE_TASK = "hadr_portal.core.tasks.operation_execute"


class Operation(models.Model):
    """A persisted run of a long action (backup, restore, failover, restart, check...).

    Created with its audit entry in one transaction, claimed atomically by exactly one task,
    heartbeating while it runs, and always ending succeeded, failed or cancelled (the reaper
    fails it when its worker is lost). At most one active operation per target for exclusive
    kinds: a partial unique index, so two concurrent requests cannot both win.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, db_index=True)
    exclusive = models.BooleanField(default=True)
    scope = models.CharField(
        max_length=200,
        blank=True,
        db_index=True,
        help_text="What it acts within (cluster:<name>): one destructive operation per scope at a time, across kinds",
    )
    scope_exclusive = models.BooleanField(
        default=False, help_text="It holds its scope alone (failover, rebuild, replace, physical backup)"
    )
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_from = models.GenericIPAddressField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that claimed it")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(exclusive=True, status__in=["queued", "running"]),
                name="one_active_operation_per_target",
                violation_error_message="Another operation on this target is already queued or running.",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="operation_progress_0_100"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.target} ({self.status})"

    @property
    def kind_label(self) -> str:
        kind = registry.operation_kinds.get(self.kind)
        return kind.label if kind else self.kind

    @property
    def waiting_for_queue(self) -> OutboxMessage | None:
        """Its outbox message, while the broker has not taken it (queued, the task queue unreachable)."""
        if self.status != self.Status.QUEUED:
            return None
        return OutboxMessage.objects.filter(sent_at=None, task=EXECUTE_TASK, args__0=self.pk).order_by("-pk").first()

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class OperationLogLine(models.Model):
    """One line of an operation's log, appended as it runs (shown live in the UI)."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.operation_id} {self.at:%H:%M:%S} {self.level}: {self.message[:80]}"


class OutboxMessage(models.Model):
    """A task to send to the broker, written in the transaction that needs it (core.dispatch): a hung or absent
    broker never blocks or loses a request. Sent right after the commit when the broker answers in time, else by
    the next drain (`outbox_drain`, every few seconds from beat and at each worker's start)."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=32, default="default")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["created_at"], condition=models.Q(sent_at=None), name="outbox_pending")]

    def __str__(self) -> str:
        return f"{self.task}({self.args}) {'sent' if self.sent_at else 'pending'}"


class OperationScope(models.Model):
    """One row per scope (a cluster), locked with SELECT … FOR UPDATE while an operation in it is requested: the
    look at what else runs there and the new operation's insert are one step for every requester."""

    name = models.CharField(max_length=200, unique=True)

    def __str__(self) -> str:
        return self.name
