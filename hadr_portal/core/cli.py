"""What management commands share: who is acting, and waiting for an operation to end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Model, QuerySet

from .models import Operation
from .operations import OperationError

M = TypeVar("M", bound=Model)


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


def named(queryset: QuerySet[M], name: str, what: str, field: str = "name") -> M:
    """The row called `name`, or a CommandError listing the names there are."""
    try:
        return queryset.get(**{field: name})
    except queryset.model.DoesNotExist:
        known = ", ".join(str(value) for value in queryset.values_list(field, flat=True)[:20]) or "none"
        raise CommandError(f"No {what} named {name!r} (known: {known}).") from None


def operation_arguments(parser: CommandParser) -> None:
    """--user, --wait and --timeout, as every command that queues an operation has them."""
    parser.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")
    parser.add_argument("--wait", action="store_true", help="Show the log until the operation ends")
    parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait with --wait")


def operation_start(
    command: BaseCommand, start: Callable[[], Operation], what: str, options: dict[str, Any]
) -> Operation:
    """Queue an operation for a command: refusals as CommandError; with --wait, the log until it ends."""
    try:
        operation = start()
    except (OperationError, PermissionDenied) as exc:
        raise CommandError(str(exc)) from None
    command.stdout.write(f"Operation #{operation.pk} queued: {what}.")
    if options.get("wait"):
        operation = operation_wait(operation, timeout=options["timeout"], stream=command.stdout)
        if operation.status != Operation.Status.SUCCEEDED:
            raise CommandError(f"Operation #{operation.pk} {operation.status}: {operation.error}")
    return operation
