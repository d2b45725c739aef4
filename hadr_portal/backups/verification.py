"""A policy's verification queries: what a restored database must answer before anyone relies on it.

Each query is a table of the catalog, `{name = "users", sql = "SELECT count(*) FROM app_users", expect = "> 0"}`.
The SQL is configuration, never request input: it must pass the SQL guard (one SELECT or WITH … SELECT calling
only allowlisted functions, see adapters/sqlguard.py) when it is saved and again when it runs, and it runs as the
cluster's read role (never a superuser), read-only (`default_transaction_read_only`), with a timeout. The first
column of the first row is compared with `expect`:

- `> N`, `>= N`, `= N`, `!= N`, `< N`, `<= N`   a number
- `not null`                                     any value but NULL (or no row)
- `within 2h of backup`                          a timestamp at most that long before the backup started
                                                 (units s, m, h, d): the newest row is as fresh as the backup
- absent                                         the query only has to run; its value is shown
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from hadr_portal.adapters.sqlguard import sql_refusal

QUERY_KEYS = ("name", "sql", "expect")
MAX_SQL_LENGTH = 4000
_COMPARISON = re.compile(r"^(>=|<=|!=|=|>|<)\s*(-?\d+(?:\.\d+)?)$")
_WITHIN = re.compile(r"^within\s+(\d+)\s*([smhd])\s+of\s+backup$")
_OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
}
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
EXPECT_HELP = "expect: '> 0', '>= N', '= N', '!= N', '< N', '<= N', 'not null' or 'within 2h of backup'"


@dataclass(frozen=True)
class VerificationResult:
    """One check of a restored database, as stored on the restore and shown in the wizard."""

    name: str
    ok: bool
    detail: str

    def as_data(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def verify_queries_validate(value: object) -> None:
    """The model field's validator: a list of {name, sql, expect} tables, read-only SELECTs, known expectations."""
    if not isinstance(value, list):
        raise ValidationError(
            "A list of queries, e.g. [{name = 'users', sql = 'SELECT count(*) FROM users', expect = '> 0'}]."
        )
    problems: list[str] = []
    names: set[str] = set()
    for index, query in enumerate(value):
        where = f"query {index + 1}"
        if not isinstance(query, dict):
            problems.append(f"{where}: a table with name, sql and expect")
            continue
        name = query.get("name")
        where = f"query {name!r}" if isinstance(name, str) and name else where
        unknown = sorted(set(query) - set(QUERY_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key {', '.join(unknown)}; expected {', '.join(QUERY_KEYS)}")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: a name is required")
        elif name in names:
            problems.append(f"{where}: the name is used twice")
        else:
            names.add(name)
        problems += [f"{where}: {problem}" for problem in sql_problems(query.get("sql"))]
        expect = query.get("expect", "")
        if not isinstance(expect, str) or not expectation_valid(expect):
            problems.append(f"{where}: unknown expectation {expect!r}; {EXPECT_HELP}")
    if problems:
        raise ValidationError("; ".join(problems))


def sql_problems(text: object) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return ["sql is required (one SELECT)"]
    if len(text.strip()) > MAX_SQL_LENGTH:
        return [f"sql is longer than {MAX_SQL_LENGTH} characters"]
    refusal = sql_refusal(text, kind="verification query")
    return [f"sql refused: {refusal}"] if refusal else []


def expectation_valid(expect: str) -> bool:
    text = expect.strip().lower()
    return not text or text == "not null" or bool(_COMPARISON.match(text) or _WITHIN.match(text))


def verification_evaluate(
    name: str, expect: str, value: Any, error: str, *, backup_started: datetime
) -> VerificationResult:
    """Compare one query's answer with its expectation."""
    if error:
        return VerificationResult(name, False, f"query failed: {error}")
    shown = _shown(value)
    text = (expect or "").strip().lower()
    if not text:
        return VerificationResult(name, True, shown)
    if text == "not null":
        return VerificationResult(name, value is not None, f"{shown} (expected not null)")
    if match := _WITHIN.match(text):
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        allowed = timedelta(**{unit: amount})
        if not isinstance(value, datetime):
            return VerificationResult(name, False, f"{shown}: not a timestamp (expected {expect})")
        behind = backup_started - value
        when = f"{_duration(behind)} before" if behind >= timedelta(0) else f"{_duration(-behind)} after"
        return VerificationResult(name, behind <= allowed, f"{shown}, {when} the backup started (expected {expect})")
    match = _COMPARISON.match(text)
    assert match is not None  # validated with the catalog
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return VerificationResult(name, False, f"{shown}: not a number (expected {expect})")
    ok = _OPERATORS[match.group(1)](number, Decimal(match.group(2)))
    return VerificationResult(name, ok, f"{shown} (expected {expect})")


def _shown(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)[:200]


def _duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
