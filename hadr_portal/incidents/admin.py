from __future__ import annotations

from django.contrib import admin

from .models import Contact, EscalationStep


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    extra = 0


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    """Contacts are catalog data (`catalog import`); the admin is for a quick fix at 3 a.m."""

    list_display = ("name", "phone", "email", "hours")
    inlines = [EscalationStepInline]
