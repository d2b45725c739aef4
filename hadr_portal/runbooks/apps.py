from __future__ import annotations

from django.apps import AppConfig


class RunbooksConfig(AppConfig):
    """Loads and renders the Markdown runbooks in the top-level runbooks/, with their action buttons."""

    name = "hadr_portal.runbooks"
    label = "runbooks"
