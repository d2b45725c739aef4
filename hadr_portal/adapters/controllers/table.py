"""Reading one catalog table of settings: each missing or mistyped setting becomes a problem in the operator's words.

Restart controllers read their `restart` table here; node controllers and post-failover hooks (adapters.pg.node)
read theirs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from hadr_portal.adapters.commands import ENV_NAME_PATTERN, env_reference_problem

from .base import MAX_SECONDS

ARGV = 'a list of strings: the program and its arguments, e.g. ["/usr/local/bin/restart-web", "--graceful"]'
NAMES = 'a list of environment variable names, e.g. ["APP_ENV"]'


class TableReader:
    """Takes settings out of one catalog table, collecting a problem for each missing or mistyped one
    (restart controllers here; node controllers and post-failover hooks in the databases app)."""

    def __init__(self, config: Mapping[str, Any], kind: str, what: str = "") -> None:
        self.config, self.kind = config, kind
        self.what = what or f"the {kind} controller"
        self.known = {"controller"}
        self.problems: list[str] = []

    def take(self, key: str, valid: Callable[[Any], bool], expected: str, *, required: bool = False) -> Any:
        self.known.add(key)
        if key not in self.config:
            if required:
                self.problems.append(f"{key}: required for {self.what} ({expected}).")
            return None
        value = self.config[key]
        if not valid(value):
            self.problems.append(f"{key}: expected {expected}, got {shown(value)}.")
            return None
        return value

    def seconds(self, key: str, default: float, *, low: float) -> float:
        value = self.take(
            key, lambda v: _is_number(v) and low <= v <= MAX_SECONDS, f"a number of seconds from {low} to {MAX_SECONDS}"
        )
        return float(default if value is None else value)

    def refuse_unknown(self) -> None:
        for key in self.config:
            if key not in self.known:
                known = ", ".join(sorted(self.known))
                self.problems.append(f"{key}: not a setting of {self.what} ({known}).")


def shown(value: Any) -> str:
    """A value as a problem quotes it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_argv(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(is_text(item) for item in value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(ENV_NAME_PATTERN.match(value))


def is_reference(value: Any) -> bool:
    """A variable whose value the webhook sends away: never one of the portal's own secrets."""
    return isinstance(value, str) and env_reference_problem(value) is None


def is_env_list(value: Any) -> bool:
    return isinstance(value, list) and all(map(_is_name, value))


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. brackets that are not an IPv6 address
        return False
