from __future__ import annotations

from django.contrib import admin

from hadr_portal.core.admin import AuditedAdminMixin

from .models import Cluster, Node


class NodeInline(admin.TabularInline):
    model = Node
    fields = ("name", "host", "port")
    extra = 0


@admin.register(Cluster)
class ClusterAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "description", "dbname", "user", "monitor_user", "read_user", "backup_user")
    fieldsets = [
        (
            None,
            {"fields": ["name", "description", "dbname", "max_failover_lag_bytes", "post_failover_hook", "primary"]},
        ),
        ("Admin account (failover, fencing, rebuild, restore)", {"fields": ["user", "password_env"]}),
        (
            "A role per purpose (empty: the admin account; reading refuses a superuser)",
            {
                "fields": [
                    ("monitor_user", "monitor_password_env"),
                    ("read_user", "read_password_env"),
                    ("backup_user", "backup_password_env"),
                ]
            },
        ),
    ]
    # a program the portal runs is code: written in the catalog file (manage.py catalog import), not in a form
    readonly_fields = ("post_failover_hook",)
    inlines = [NodeInline]
