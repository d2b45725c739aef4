"""A policy's verification queries: what the catalog accepts, and how answers are judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from hadr_portal.backups.verification import verification_evaluate, verify_queries_validate

BACKUP = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expect", "value", "ok"),
    [
        ("> 0", 20, True),
        ("> 0", 0, False),
        (">= 20", Decimal("20"), True),
        ("= 0", 0, True),
        ("!= 0", 0, False),
        ("< 5.5", 5, True),
        ("not null", None, False),
        ("not null", "x", True),
        ("", None, True),
        ("within 1h of backup", BACKUP - timedelta(minutes=59), True),
        ("within 1h of backup", BACKUP - timedelta(minutes=61), False),
        ("within 1h of backup", BACKUP + timedelta(seconds=3), True),
        ("within 2d of backup", None, False),
        ("> 0", "many", False),
    ],
)
def test_answers_are_judged_by_the_expectation(expect, value, ok):
    result = verification_evaluate("q", expect, value, "", backup_started=BACKUP)
    assert result.ok is ok, result.detail


def test_a_failing_query_fails_with_its_error():
    result = verification_evaluate("q", "> 0", None, 'relation "app_users" does not exist', backup_started=BACKUP)
    assert (result.ok, result.detail) == (False, 'query failed: relation "app_users" does not exist')


def test_freshness_says_how_far_behind_the_backup():
    result = verification_evaluate(
        "fresh", "within 1h of backup", BACKUP - timedelta(minutes=5), "", backup_started=BACKUP
    )
    assert result.detail == "2025-01-31T11:55:00+00:00, 5 min before the backup started (expected within 1h of backup)"


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ("SELECT 1", "A list of queries"),
        ([{"sql": "SELECT 1"}], "query 1: a name is required"),
        ([{"name": "a", "sql": "SELECT 1"}, {"name": "a", "sql": "SELECT 2"}], "query 'a': the name is used twice"),
        ([{"name": "a", "sql": "UPDATE t SET x = 1"}], "sql refused: a verification query must be a SELECT; UPDATE"),
        (
            [{"name": "a", "sql": "WITH x AS (DELETE FROM t RETURNING 1) SELECT 1; SELECT 2"}],
            "must be one SELECT statement; this has 2 statements",
        ),
        (
            [{"name": "a", "sql": "WITH x AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM x"}],
            r"a data-modifying WITH \(DELETE\) is not allowed in a verification query",
        ),
        ([{"name": "a", "sql": "SELECT pg_read_file('/etc/passwd')"}], "pg_read_file is not allowed"),
        ([{"name": "a", "sql": "SELECT 1", "colour": "red"}], "unknown key colour"),
        ([{"name": "a", "sql": "SELECT 1", "expect": "lots"}], "unknown expectation 'lots'"),
    ],
)
def test_the_catalog_refuses_what_could_not_run_or_be_judged(queries, message):
    with pytest.raises(ValidationError, match=message):
        verify_queries_validate(queries)


def test_a_trailing_semicolon_is_fine():
    verify_queries_validate([{"name": "a", "sql": "SELECT count(*) FROM t;", "expect": ">= 0"}])
