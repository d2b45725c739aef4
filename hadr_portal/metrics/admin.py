from __future__ import annotations

from django import forms
from django.contrib import admin

from hadr_portal.core.admin import ReadOnlyAdmin
from hadr_portal.databases.models import Cluster, Node

from .models import Funnel, LoggedError


class FunnelForm(forms.ModelForm):  # type: ignore[type-arg]
    """The cluster (and node) a funnel reads must be in the catalog: a misspelt name would only fail later.
    (The admin builds the form's fields; the TOML import checks the same names in its own way.)"""

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        cluster, node = cleaned.get("cluster"), cleaned.get("node")
        if cluster and not Cluster.objects.filter(name=cluster).exists():
            self.add_error("cluster", f"No cluster {cluster!r} in the catalog.")
        elif cluster and node and not Node.objects.filter(cluster__name=cluster, name=node).exists():
            self.add_error("node", f"No node {node!r} in cluster {cluster!r}.")
        return cleaned


@admin.register(Funnel)
class FunnelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = FunnelForm
    list_display = ("name", "source", "cluster", "node", "interval_seconds", "enabled", "last_success_at", "last_error")
    readonly_fields = ("next_run_at", "last_attempt_at", "last_success_at", "last_error")


@admin.register(LoggedError)
class LoggedErrorAdmin(ReadOnlyAdmin):
    """The Errors page's record: read-only, not even deletable (nor is there a delete action); only the
    retention task (HADR_ERROR_LOG_KEEP) prunes it."""

    list_display = ("at", "level", "logger", "message", "operation_id")
    list_filter = ("level",)
