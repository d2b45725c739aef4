"""The service catalog, its health checks, their results, state transitions and alerts."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hadr_portal.adapters.controllers import ControllerConfigError, controller_from_config
from hadr_portal.core.outbound import outbound_url_refusal
from hadr_portal.core.permissions import Role
from hadr_portal.core.validators import ENV_NAME_PATTERN, env_reference_problem, slug, validate_optional_cron


class State(models.TextChoices):
    UP = "up", "Up"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"
    UNKNOWN = "unknown", "Unknown"


# How bad each state is, for "worst of" decisions.
SEVERITY = {State.UP: 0, State.UNKNOWN: 1, State.DEGRADED: 2, State.DOWN: 3}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def restart_validate(value: Any) -> None:
    """A service's `restart` table is empty (no restart controller) or one the controllers accept; the form
    and the TOML import both refuse anything else, with every problem named."""
    try:
        controller_from_config(value, allow_private=settings.ALLOW_PRIVATE_TARGETS)
    except ControllerConfigError as exc:
        raise ValidationError(exc.problems) from None


def runbook_validate(value: str) -> None:
    """A service's runbook is one of the files in runbooks/, named without `.md`: never a path elsewhere."""
    from hadr_portal.runbooks.documents import NAME, runbooks_directory

    if not NAME.match(value):
        raise ValidationError(
            f"{value!r} is not a runbook's name: give the name of a file in runbooks/ without .md, e.g. service-failure."
        )
    if not (runbooks_directory() / f"{value}.md").is_file():
        known = sorted(path.stem for path in runbooks_directory().glob("*.md") if NAME.match(path.stem))
        raise ValidationError(f"There is no runbook runbooks/{value}.md; the runbooks are {', '.join(known)}.")


class Service(models.Model):
    """Something the team runs and must recover: what it is, how much it matters, who owns it."""

    class Kind(models.TextChoices):
        WEB = "web", "Web"
        WORKER = "worker", "Worker"
        DATABASE = "database", "Database"
        CACHE = "cache", "Cache"
        QUEUE = "queue", "Queue"
        JOB = "job", "Job"
        HOST = "host", "Host"

    TIERS = [
        (1, "Tier 1 · critical"),
        (2, "Tier 2 · important"),
        (3, "Tier 3 · supporting"),
        (4, "Tier 4 · best effort"),
    ]

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    display_name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=300, blank=True)
    tier = models.PositiveSmallIntegerField(
        choices=TIERS, default=2, help_text="Recovery priority: 1 is restored first"
    )
    owner_role = models.CharField(max_length=32, choices=[(r.value, r.value) for r in Role], default=Role.DEVOPS.value)
    rto_minutes = models.PositiveIntegerField(
        default=240, validators=[MinValueValidator(1)], help_text="Recovery time objective"
    )
    rpo_minutes = models.PositiveIntegerField(
        default=1440, validators=[MinValueValidator(0)], help_text="Recovery point objective"
    )
    runbook = models.CharField(
        max_length=100,
        blank=True,
        validators=[runbook_validate],
        help_text="Runbook file name in runbooks/, without .md",
    )
    restart = models.JSONField(
        default=dict,
        blank=True,
        validators=[restart_validate],  # not run on an empty table: blank
        help_text=(
            'How to restart it, e.g. {"controller": "systemd", "unit": "web.service"}: a command, systemd, webhook or '
            "ecs controller and its settings (README: Restarting a service). Empty: no Restart button."
        ),
    )
    restart_drill_schedule = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_optional_cron],
        help_text="Cron schedule of a restart drill (a real restart, its RTO measured until the checks are green)",
    )
    next_restart_drill_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNKNOWN)
    state_since = models.DateTimeField(default=timezone.now)
    state_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["tier", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return f"service:{self.name}"

    def in_maintenance(self, at: datetime | None = None) -> MaintenanceWindow | None:
        at = at or timezone.now()
        return self.maintenance_windows.filter(starts_at__lte=at, ends_at__gt=at).first()


class Check(models.Model):
    """One health check of a service, run every `interval_seconds` (push kinds: evaluated when due)."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP(S)"
        TCP = "tcp", "TCP connect"
        POSTGRES = "postgres", "PostgreSQL node"
        REDIS = "redis", "Redis ping"
        CELERY = "celery", "Celery workers"
        HEARTBEAT = "heartbeat", "Heartbeat (push)"
        HOST = "host", "Host resources (this worker)"
        HOST_PUSH = "host_push", "Host resources (pushed)"
        BACKUP = "backup", "Backup freshness (RPO)"
        ARCHIVE = "archive", "WAL archiving (point-in-time RPO)"

    # Judged in the engine's own thread, not probed at the service's address: from stored facts (heartbeat, host
    # push, backup), or from the policy's primary and pgBackRest, the state kept on the policy (archive).
    UNPROBED_KINDS = (Kind.HEARTBEAT, Kind.HOST_PUSH, Kind.BACKUP, Kind.ARCHIVE)

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="checks")
    name = models.CharField(max_length=64, validators=[slug])
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The kind's settings (checkconfig.FIELDS), without the rows it points at: those are the foreign keys below.
    # Only a check that named a node or policy that did not exist when names became keys still holds the names
    # here (status migration 0006): it stays down, and saving it is refused until the name is fixed.
    config = models.JSONField(default=dict, blank=True)
    # Removing a node or a policy leaves the check without it (down, "not in the catalog") rather than refusing:
    # the catalog import prunes nodes and policies before it validates and prunes the checks naming them.
    node = models.ForeignKey(
        "databases.Node",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="checks",
        help_text="The catalog node a postgres check probes (none: it reads the DSN in dsn_env)",
    )
    policy = models.ForeignKey(
        "backups.BackupPolicy",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="checks",
        help_text="The backup policy whose freshness a backup check judges, or whose WAL archiving an archive check",
    )
    enabled = models.BooleanField(default=True)
    interval_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(5), MaxValueValidator(86400)]
    )
    timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.5), MaxValueValidator(120)])
    failures_before_down = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Consecutive failed results before the state changes",
    )
    token = models.CharField(
        max_length=64, unique=True, default=new_token, help_text="Push URL key (heartbeat, host push)"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNKNOWN)
    state_since = models.DateTimeField(default=timezone.now)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_result_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, blank=True)
    last_message = models.CharField(max_length=500, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_data = models.JSONField(default=dict, blank=True)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["service", "name"]
        constraints = [models.UniqueConstraint(fields=["service", "name"], name="check_name_unique_in_service")]

    def __str__(self) -> str:
        return f"{self.service.name}/{self.name}"

    @property
    def is_probed(self) -> bool:
        """Pull checks call the address they probe; the others are judged from what the portal already holds."""
        return self.kind not in self.UNPROBED_KINDS

    def named_config(self) -> dict[str, Any]:
        """The config as an operator writes it (check form, catalog file, audit log): the node it probes and the
        policy it watches by name, as `cluster` + `node` and `policy`. Load lists with
        `select_related("node__cluster", "policy")`."""
        names: dict[str, Any] = {}
        if self.node is not None:
            names |= {"cluster": self.node.cluster.name, "node": self.node.name}
        if self.policy is not None:
            names["policy"] = self.policy.name
        return self.config | names

    def clean(self) -> None:
        """A probe must end before the next one is due (forms and the TOML import both rely on this)."""
        if (
            self.timeout_seconds is not None
            and self.interval_seconds is not None
            and self.timeout_seconds >= self.interval_seconds
        ):
            raise ValidationError(
                {"timeout_seconds": f"The timeout must be shorter than the interval ({self.interval_seconds} s)."}
            )

    def stale_after_seconds(self) -> float:
        """No result for this long means the data can no longer be trusted (shown as stale, never green)."""
        return 2 * self.interval_seconds + self.timeout_seconds + 30


class CheckResult(models.Model):
    """One raw result, kept `HADR_CHECK_RESULTS_DAYS` days."""

    health_check = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="results")
    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=State.choices)
    latency_ms = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["health_check", "-at"], name="status_result_check_at")]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.at:%H:%M:%S} {self.outcome}"


class CheckRollup(models.Model):
    """Results of one check summed per hour, kept `HADR_CHECK_ROLLUPS_DAYS` days (uptime, latency history)."""

    health_check = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    up = models.PositiveIntegerField(default=0)
    degraded = models.PositiveIntegerField(default=0)
    down = models.PositiveIntegerField(default=0)
    latency_avg_ms = models.FloatField(null=True, blank=True)
    latency_max_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(fields=["health_check", "hour"], name="rollup_one_per_check_hour")]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.hour:%Y-%m-%d %H}:00 {self.up}/{self.total}"


class Transition(models.Model):
    """A service's state changed: when, from, to, why (and which check caused it)."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="transitions")
    health_check = models.ForeignKey(Check, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    from_state = models.CharField(max_length=16, choices=State.choices)
    to_state = models.CharField(max_length=16, choices=State.choices)
    reason = models.CharField(max_length=500, blank=True)
    silenced = models.BooleanField(default=False, help_text="In a maintenance window: no alert sent")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.service.name}: {self.from_state} → {self.to_state}"


class MaintenanceWindow(models.Model):
    """While a window is open, the service's transitions are recorded but alert nobody."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="window_ends_after_start")
        ]

    def __str__(self) -> str:
        return f"{self.service.name} {self.starts_at:%Y-%m-%d %H:%M} – {self.ends_at:%H:%M}"


class AlertChannel(models.Model):
    """Where alerts go: e-mail addresses, or a JSON webhook (Slack-compatible) whose URL may come from the environment."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    name = models.CharField(max_length=64, unique=True, validators=[slug])
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(
        max_length=500, blank=True, help_text="E-mail addresses (comma-separated) or webhook URL"
    )
    address_env = models.CharField(max_length=100, blank=True, help_text="Or: environment variable holding the URL")
    enabled = models.BooleanField(default=True)
    min_tier = models.PositiveSmallIntegerField(
        default=4, choices=Service.TIERS, help_text="Alert only for services of this tier or more critical"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """E-mail channels need addresses; webhooks an http(s) URL, given here (without credentials, to an address
        the SSRF guard accepts) or by variable name. Channels are written in the catalog file, whose keys for
        `address` and `address_env` are `target` and `target_env`: a message names the key the operator edits."""
        if self.kind == self.Kind.EMAIL:
            addresses = [a.strip() for a in self.address.split(",") if a.strip()]
            if not addresses:
                raise ValidationError({"address": "Give at least one e-mail address."})
            for address in addresses:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"address": f"{address!r} is not an e-mail address."}) from None
        elif self.kind != self.Kind.WEBHOOK:
            return  # an unknown kind is reported by the field's own validation
        elif self.address_env:
            if not ENV_NAME_PATTERN.match(self.address_env):
                raise ValidationError(
                    {"address_env": "The name of an environment variable, e.g. HADR_SLACK_WEBHOOK_URL."}
                )
            if problem := env_reference_problem(self.address_env):
                raise ValidationError({"address_env": problem})
        elif refusal := outbound_url_refusal(self.address, env_key="target_env"):
            raise ValidationError({"address": refusal})
        elif urlsplit(self.address).scheme not in ("http", "https"):
            raise ValidationError(
                {"address": "Give the webhook's http(s) URL, or the variable that holds it in target_env."}
            )


class AlertDelivery(models.Model):
    """One alert for one transition on one channel, with its attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Undelivered"

    transition = models.ForeignKey(Transition, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["transition", "channel"], name="one_delivery_per_transition_channel")
        ]

    def __str__(self) -> str:
        return f"{self.transition} via {self.channel.name}: {self.status}"
