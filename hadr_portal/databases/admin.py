from __future__ import annotations

from django.contrib import admin

from .models import Cluster, Node


class NodeInline(admin.TabularInline):
    model = Node
    fields = ("name", "host", "port")
    extra = 0


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "dbname", "user", "password_env")
    inlines = [NodeInline]
