from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The local demo environment's catalog and its `seed_demo` command (nothing of it runs in production)."""

    name = "hadr_portal.demo"
    label = "demo"
