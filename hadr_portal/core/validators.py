"""Names used across the catalog: one definition each."""

from __future__ import annotations

import re

from croniter import croniter
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

# Secrets are referenced by the NAME of the environment variable holding them, never stored. The pattern and the
# rule against naming the portal's own secrets are defined beside the code that hands variables to programs
# (adapters import no Django) and re-exported here.
from hadr_portal.adapters.commands import ENV_NAME_PATTERN, env_reference, env_reference_problem

__all__ = [
    "DSN_ENV_HELP",
    "DSN_ENV_PATTERN",
    "DSN_ENV_PREFIX",
    "ENV_NAME_PATTERN",
    "SLUG_PATTERN",
    "dsn_env_name",
    "env_name",
    "env_reference",
    "env_reference_problem",
    "slug",
]

# A catalog name: it appears in URLs, operation targets and TOML files.
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
slug = RegexValidator(SLUG_PATTERN.pattern, "Lower-case letters, digits and dashes.")


def env_name(value: str) -> None:
    """A field naming the variable that holds a secret: a variable name, and never one of the portal's own."""
    if problem := env_reference_problem(value):
        raise ValidationError(problem)


# A DSN is read only from variables with this prefix, so that a check or a funnel cannot point the portal's own
# secrets (HADR_SECRET_KEY, HADR_DATABASE_URL …) at a server and have them echoed back.
DSN_ENV_PREFIX = "HADR_DSN_"
DSN_ENV_PATTERN = re.compile(rf"^{DSN_ENV_PREFIX}[A-Z0-9_]+$")
DSN_ENV_HELP = f"The name of a {DSN_ENV_PREFIX}* environment variable holding the DSN, e.g. {DSN_ENV_PREFIX}REPLICA."
dsn_env_name = RegexValidator(DSN_ENV_PATTERN.pattern, DSN_ENV_HELP)


def validate_cron(value: str) -> None:
    if not croniter.is_valid(value):
        raise ValidationError(f"{value!r} is not a cron expression (e.g. '0 2 * * *' for 02:00 every day).")


def validate_optional_cron(value: str) -> None:
    if value:
        validate_cron(value)
