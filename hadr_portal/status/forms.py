"""Catalog forms. Check settings are validated by `checkconfig.config_validate` (shared with TOML import)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from .checkconfig import FIELDS, config_validate
from .models import Check, MaintenanceWindow, Service


class ServiceForm(forms.ModelForm):
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
            "restart",
        ]
        widgets = {"restart": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}

    def clean_restart(self) -> Any:
        """An empty box means no restart controller (the model's validator judges anything else)."""
        return self.cleaned_data.get("restart") or {}


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
    "url_env": forms.CharField(label="Redis URL environment variable", required=False),
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
        for name, field in CONFIG_WIDGETS.items():
            self.fields[name] = field
            field.kinds = FIELDS[name][0]  # type: ignore[attr-defined]
            if self.instance.pk and name in self.instance.config:
                value = self.instance.config[name]
                self.initial[name] = ", ".join(value) if isinstance(value, list) else value

    def config_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in CONFIG_WIDGETS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind:
            raw = {name: cleaned.get(name) for name in CONFIG_WIDGETS if kind in FIELDS[name][0]}
            if kind == "http" and not self.data.get("verify_tls") and "verify_tls" in raw:
                raw["verify_tls"] = False
            try:
                self.instance.config = config_validate(kind, raw)
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
            ends_at=now + timezone.timedelta(hours=self.cleaned_data["hours"]),
            reason=self.cleaned_data["reason"],
        )
