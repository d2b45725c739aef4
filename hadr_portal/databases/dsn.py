"""DSNs named by environment variable (a postgres check's or a funnel's `dsn_env`): read only from HADR_DSN_*.

The prefix keeps a check or a funnel from pointing the portal's own secrets (HADR_SECRET_KEY, HADR_DATABASE_URL …)
at a server of the editor's choosing; errors name the variable, never its value.
"""

from __future__ import annotations

import os

from hadr_portal.adapters.pg.connection import dsn_valid
from hadr_portal.core.validators import DSN_ENV_PATTERN, DSN_ENV_PREFIX


class DsnUnavailable(Exception):
    """The variable cannot be used; the message names it (never its value) and says why."""


def dsn_from_env(name: str) -> str:
    """The DSN held by the HADR_DSN_* variable `name`. Raises DsnUnavailable."""
    if not DSN_ENV_PATTERN.match(name):
        raise DsnUnavailable(f"refused: {name} is not a DSN variable; DSNs are read only from {DSN_ENV_PREFIX}*")
    value = os.environ.get(name, "")
    if not value:
        raise DsnUnavailable(f"{name} is not set")
    if not dsn_valid(value):
        raise DsnUnavailable(f"{name} does not hold a valid PostgreSQL DSN (postgresql://… or key=value pairs)")
    return value
