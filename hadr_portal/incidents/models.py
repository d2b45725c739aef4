"""Incidents with their timeline, the emergency contacts and escalation lists, and the recovery priorities."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hadr_portal.core.outbound import outbound_url_refusal
from hadr_portal.core.permissions import Role

ROLE_CHOICES = [(role.value, role.value) for role in Role]


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1 — critical"
    SEV2 = "sev2", "SEV2 — major"
    SEV3 = "sev3", "SEV3 — minor"


class Incident(models.Model):
    """Something is wrong, and people are working on it: from triggered to resolved.

    At most one open incident per service (a partial unique constraint): a service failing again while its
    incident is open joins that incident. Status moves forward only; each change is stamped and audited.
    """

    class Status(models.TextChoices):
        TRIGGERED = "triggered", "Triggered"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        MITIGATED = "mitigated", "Mitigated"
        RESOLVED = "resolved", "Resolved"

    ORDER = [Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED]

    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.SEV2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRIGGERED, db_index=True)
    service = models.ForeignKey(
        "status.Service", null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    runbook = models.CharField(max_length=100, blank=True, help_text="Runbook file name in runbooks/, without .md")
    role = models.CharField(max_length=32, choices=ROLE_CHOICES, blank=True, help_text="Responsible role")
    responsible = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened_by = models.CharField(max_length=150, help_text="Username, or 'system' when a check opened it")
    began_at = models.DateTimeField(default=timezone.now, help_text="When the problem began (first failing check)")
    opened_at = models.DateTimeField(default=timezone.now, db_index=True, help_text="When it was detected")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    ticks = models.JSONField(default=dict, blank=True, help_text="Runbook checklist steps ticked: {number: who, when}")
    escalation_level = models.PositiveSmallIntegerField(default=0, help_text="Contacts of the list notified so far")
    escalated_at = models.DateTimeField(null=True, blank=True)
    postmortem = models.TextField(blank=True, help_text="Markdown; a draft is written on resolve")
    leader_change = models.ForeignKey(
        "databases.LeaderChange",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The automatic failover that opened it: its RTO and RPO, measured by the write probe",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service"],
                condition=~Q(status="resolved"),
                name="one_open_incident_per_service",
                violation_error_message="This service already has an open incident.",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED

    @property
    def target(self) -> str:
        return f"incident:{self.pk}"


class TimelineEntry(models.Model):
    """One line of an incident's story. Transitions, operations and alerts add themselves (once each)."""

    class Kind(models.TextChoices):
        TRANSITION = "transition", "Check"
        OPERATION = "operation", "Operation"
        ALERT = "alert", "Alert"
        ESCALATION = "escalation", "Escalation"
        STATUS = "status", "Status"
        NOTE = "note", "Note"
        STEP = "step", "Runbook step"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField()
    actor_name = models.CharField(max_length=150, default="system")
    transition = models.ForeignKey("status.Transition", null=True, blank=True, on_delete=models.SET_NULL)
    operation = models.ForeignKey("core.Operation", null=True, blank=True, on_delete=models.SET_NULL)
    alert = models.ForeignKey("status.AlertDelivery", null=True, blank=True, on_delete=models.SET_NULL)
    notice = models.ForeignKey("EscalationNotice", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "transition"], name="timeline_transition_once"),
            models.UniqueConstraint(fields=["incident", "operation"], name="timeline_operation_once"),
            models.UniqueConstraint(fields=["incident", "alert"], name="timeline_alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}: {self.text[:60]}"


class Contact(models.Model):
    """A person to call when something breaks: which hats they wear, how and when to reach them."""

    name = models.CharField(max_length=64, unique=True)
    roles = models.JSONField(default=list, blank=True, help_text="Role names")
    phone = models.CharField(max_length=40, blank=True)
    email = models.EmailField(blank=True)
    webhook = models.URLField(blank=True, help_text="Optional: a webhook (chat) that reaches this person")
    hours = models.CharField(max_length=100, blank=True, help_text="When they can be reached, in words")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A webhook without credentials in it, to an address the SSRF guard accepts (checked again on sending)."""
        if self.webhook and (refusal := outbound_url_refusal(self.webhook, env_key=None)):
            raise ValidationError({"webhook": refusal})


class EscalationStep(models.Model):
    """Position `position` (from 1) in the escalation list of one severity."""

    severity = models.CharField(max_length=8, choices=Severity.choices)
    position = models.PositiveSmallIntegerField()
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="escalation_steps")

    class Meta:
        ordering = ["severity", "position"]
        constraints = [
            models.UniqueConstraint(fields=["severity", "position"], name="escalation_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.severity} #{self.position}: {self.contact}"


class EscalationNotice(models.Model):
    """One notification of one contact about one incident, delivered with retries, every attempt counted."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Undelivered"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notices")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="notices")
    channel = models.CharField(max_length=16, help_text="email or webhook")
    reminder = models.BooleanField(default=False, help_text="Sent by the portal, not by a person")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.incident_id} → {self.contact} ({self.channel}, {self.status})"


class RecoveryPriority(models.Model):
    """The Product Manager's order of recovery: position 1 is brought back first, for the reason given."""

    service = models.OneToOneField("status.Service", on_delete=models.CASCADE, related_name="priority")
    position = models.PositiveIntegerField()
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.position}. {self.service}"
