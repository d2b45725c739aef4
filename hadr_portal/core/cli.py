"""What management commands share: who is acting, and waiting for an operation to end."""

from __future__ import annotations

import sys
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import CommandError

from .models import Operation


def cli_actor(username: str | None) -> AbstractBaseUser | None:
    """The account a command acts as (its permissions apply), or None for the portal itself."""
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username, is_active=True)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No active account named {username!r}.") from None


def operation_wait(operation: Operation, *, timeout: float, stream=sys.stdout) -> Operation:  # type: ignore[no-untyped-def]
    """Print the operation's log as it grows until it ends; CommandError on timeout."""
    deadline = time.monotonic() + timeout
    shown = 0
    while True:
        operation.refresh_from_db()
        lines = list(operation.log_lines.all()[shown:])
        for line in lines:
            stream.write(f"{line.at:%H:%M:%S} {line.level:7} {line.message}\n")
        shown += len(lines)
        if not operation.is_active:
            return operation
        if time.monotonic() > deadline:
            raise CommandError(f"Operation #{operation.pk} still {operation.status} after {timeout:.0f} s.")
        time.sleep(0.5)
