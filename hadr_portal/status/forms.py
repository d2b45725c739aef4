"""Catalog forms. Check settings are validated by `checkconfig.config_validate` (shared with TOML import)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from .checkconfig import FIELDS, config_validate
from .models import Check, MaintenanceWindow, Service
from .restartform import SECTIONS, RestartSetting


class ServiceForm(forms.ModelForm):
    """A service, and how it restarts: a choice of controller with the fields of each (`restartform`; commands
    are code, written only in the catalog file or chosen from the command allowlist)."""

    class Meta:
        model = Service
        fields = [
            "name",
            "display_name",
            "kind",
            "description",
            "tier",
            "owner_role",
            "rto_minutes",
            "rpo_minutes",
            "runbook",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restart = RestartSetting(dict(self.instance.restart or {}), list(settings.COMMAND_ALLOWLIST))
        self.fields.update(self.restart.fields())
        self.initial.update(self.restart.initial())

    def service_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith("restart_")]

    def restart_sections(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(choices the section belongs to, its title, its fields), for the page."""
        return [(choices, title, [self[name] for name in names]) for choices, title, names in SECTIONS]

    @property
    def refusals(self) -> list[str]:
        """Attempts to write a command through this form (to be audited), one sentence each."""
        return self.restart.refusals

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        table = self.restart.clean(self, cleaned)
        if table is not None:
            self.instance.restart = table
        return cleaned

    def changed_settings(self) -> list[str]:
        """The service's changed fields, `restart` standing for the whole restart table."""
        changed = [name for name in self.changed_data if not name.startswith("restart_")]
        return changed + (["restart"] if self.instance.restart != self.restart.stored else [])


class PriorityForm(forms.ModelForm):
    """What the Product Manager may change: how much a service matters and how fast it must return."""

    class Meta:
        model = Service
        fields = ["tier", "rto_minutes", "rpo_minutes"]


CONFIG_WIDGETS: dict[str, forms.Field] = {
    "url": forms.CharField(label="URL", required=False, max_length=500),
    "expected_status": forms.CharField(label="Expected HTTP status", required=False),
    "keyword": forms.CharField(label="Keyword in the body", required=False, max_length=200),
    "tls_warning_days": forms.CharField(label="Warn when the TLS certificate expires within (days)", required=False),
    "verify_tls": forms.BooleanField(label="Verify the TLS certificate", required=False, initial=True),
    "host": forms.CharField(required=False, max_length=255),
    "port": forms.CharField(required=False),
    "cluster": forms.CharField(label="Cluster (catalog)", required=False),
    "node": forms.CharField(label="Node (catalog)", required=False),
    "dsn_env": forms.CharField(label="…or DSN environment variable", required=False),
    "expected_replicas": forms.CharField(label="Replicas expected on a primary", required=False),
    "lag_warning_bytes": forms.CharField(label="Lag warning (bytes)", required=False),
    "lag_critical_bytes": forms.CharField(label="Lag critical (bytes)", required=False),
    "connections_warning_pct": forms.CharField(label="Connections warning (%)", required=False),
    "connections_critical_pct": forms.CharField(label="Connections critical (%)", required=False),
    "url_env": forms.CharField(label="…or URL environment variable (a URL with credentials)", required=False),
    "queue": forms.ChoiceField(
        choices=[("", "—"), ("checks", "checks"), ("ops", "ops"), ("default", "default")], required=False
    ),
    "period_seconds": forms.CharField(label="Period (seconds)", required=False),
    "grace_seconds": forms.CharField(label="Grace (seconds)", required=False),
    "disk_paths": forms.CharField(label="Disk paths", required=False),
    "policy": forms.CharField(label="Backup policy", required=False),
    "cpu_warning": forms.CharField(label="CPU warning %", required=False),
    "cpu_critical": forms.CharField(label="CPU critical %", required=False),
    "memory_warning": forms.CharField(label="Memory warning %", required=False),
    "memory_critical": forms.CharField(label="Memory critical %", required=False),
    "disk_warning": forms.CharField(label="Disk warning %", required=False),
    "disk_critical": forms.CharField(label="Disk critical %", required=False),
}


class CheckForm(forms.ModelForm):
    """The common fields, plus every kind's settings (the page shows those of the chosen kind)."""

    class Meta:
        model = Check
        fields = ["name", "kind", "enabled", "interval_seconds", "timeout_seconds", "failures_before_down"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        named = self.instance.named_config() if self.instance.pk else {}  # the node and policy by name
        for name, field in CONFIG_WIDGETS.items():
            self.fields[name] = field
            field.kinds = FIELDS[name][0]  # type: ignore[attr-defined]  # a mark the template reads
            if name in named:
                value = named[name]
                self.initial[name] = ", ".join(value) if isinstance(value, list) else value

    def config_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in CONFIG_WIDGETS]

    def clean_name(self) -> str:
        """Unique within the service (the form has no service field, so Django's own check would skip it)."""
        name: str = self.cleaned_data["name"]
        others = Check.objects.filter(service_id=self.instance.service_id, name=name).exclude(pk=self.instance.pk)
        if self.instance.service_id and others.exists():
            raise ValidationError(f"{self.instance.service.display_name} already has a check named {name}.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind:
            raw = {name: cleaned.get(name) for name in CONFIG_WIDGETS if kind in FIELDS[name][0]}
            if kind == "http" and not self.data.get("verify_tls") and "verify_tls" in raw:
                raw["verify_tls"] = False
            try:
                checked = config_validate(kind, raw)
                self.instance.config, self.instance.node, self.instance.policy = (
                    checked.config,
                    checked.node,
                    checked.policy,
                )
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages)
        return cleaned


class MaintenanceForm(forms.Form):
    hours = forms.FloatField(label="Silence alerts for (hours)", min_value=0.25, max_value=72, initial=1)
    reason = forms.CharField(max_length=200)

    def window(self, service: Service) -> MaintenanceWindow:
        now = timezone.now()
        return MaintenanceWindow(
            service=service,
            starts_at=now,
            ends_at=now + timedelta(hours=self.cleaned_data["hours"]),
            reason=self.cleaned_data["reason"],
        )
