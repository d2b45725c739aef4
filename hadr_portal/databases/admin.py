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
    list_display = ("name", "description", "dbname", "user", "password_env")
    inlines = [NodeInline]
