"""`manage.py ensure_admin`: an administrator account with a known password (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.audit import audit_record


class Command(BaseCommand):
    help = "Create or update a superuser whose password is read from a file (used by `make up`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password-file", required=True, help="File holding the password (first line)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["password_file"])
        try:
            password = path.read_text().strip()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        if len(password) < 12:
            raise CommandError(f"The password in {path} is too short (12 characters at least).")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=options["username"])
        changed = created or not user.check_password(password) or not (user.is_superuser and user.is_active)
        if changed:
            user.is_superuser = user.is_staff = user.is_active = True
            user.set_password(password)
            user.save()
            audit_record(
                actor=None,
                action="user.ensure_admin",
                target=f"user:{user.username}",
                outcome="success",
                detail="created" if created else "password reset from file",
            )
        self.stdout.write(f"Administrator {user.username} {'created' if created else 'ready'}.")
