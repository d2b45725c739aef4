from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Two-factor sign-in, step-up for destructive actions, and what a sign-in lockout does (audit, alert, page)."""

    name = "hadr_portal.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from . import checks, lockout  # noqa: F401  (settings checks; lockout audit and alert)
