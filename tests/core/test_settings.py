"""Settings come from HADR_* variables; a bad one stops start-up and names the variable.

Each case starts a fresh interpreter (settings are read once, at import), with a copy of the
test session's environment changed in one place.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every case starts an interpreter and Django
ROOT = Path(__file__).resolve().parent.parent.parent
SETUP = "import django; django.setup()"


def run_python(code: str, *, unset: tuple[str, ...] = (), **variables: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "hadr_portal.settings"
    for name in unset:
        env.pop(name, None)
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_unchanged_environment_starts():
    """The control for the cases below: they fail because of the one variable they change."""
    result = run_python(SETUP)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HADR_OPERATION_HEARTBEAT_INTERVAL", "abc", "is not a whole number"),
        ("HADR_OPERATION_HEARTBEAT_INTERVAL", "0", "must be at least 1"),
        ("HADR_SESSION_HOURS", "twelve", "is not a whole number"),
        ("HADR_DEBUG", "maybe", "is not a boolean"),
        ("HADR_HTTPS", "sure", "is not a boolean"),
        ("HADR_LOG_LEVEL", "LOUD", "is not a log level"),
        ("HADR_LOG_FORMAT", "xml", "must be json or text"),
    ],
)
def test_a_malformed_variable_stops_startup_with_its_name(variable, value, says):
    result = run_python(SETUP, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr
    assert says in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HADR_TIME_ZONE", "Mars/Base"), ("HADR_DATABASE_URL", "not-a-url"), ("HADR_REDIS_URL", "nope")],
)
def test_a_malformed_url_or_time_zone_stops_startup_with_its_name(variable, value):
    result = run_python(SETUP, **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]


def test_heartbeat_timeout_must_exceed_the_interval():
    result = run_python(SETUP, HADR_OPERATION_HEARTBEAT_INTERVAL="10", HADR_OPERATION_HEARTBEAT_TIMEOUT="10")
    assert result.returncode != 0
    assert "HADR_OPERATION_HEARTBEAT_TIMEOUT" in result.stderr


@pytest.mark.parametrize("variable", ["HADR_SECRET_KEY", "HADR_DATABASE_URL", "HADR_REDIS_URL"])
def test_a_missing_required_variable_stops_startup_with_its_name(variable):
    result = run_python(SETUP, unset=(variable, f"{variable}_FILE"))
    assert result.returncode != 0
    assert f"{variable} is required" in result.stderr


def test_an_empty_secret_key_is_missing():
    result = run_python(SETUP, unset=("HADR_SECRET_KEY_FILE",), HADR_SECRET_KEY="")
    assert result.returncode != 0
    assert "HADR_SECRET_KEY is required" in result.stderr


def test_a_short_secret_key_is_refused_in_production():
    result = run_python(SETUP, HADR_DEBUG="false", HADR_SECRET_KEY="too-short")
    assert result.returncode != 0
    assert "HADR_SECRET_KEY must be at least 50 characters" in result.stderr


def test_secret_key_from_a_file(tmp_path):
    key = secrets.token_urlsafe(45)
    key_file = tmp_path / "secret_key"
    key_file.write_text(key + "\n")
    code = f"{SETUP}; from django.conf import settings; print(settings.SECRET_KEY == {key!r})"
    result = run_python(code, unset=("HADR_SECRET_KEY",), HADR_SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_the_file_wins_over_the_variable(tmp_path):
    key = secrets.token_urlsafe(45)
    key_file = tmp_path / "secret_key"
    key_file.write_text(key)
    code = f"{SETUP}; from django.conf import settings; print(settings.SECRET_KEY == {key!r})"
    result = run_python(code, HADR_SECRET_KEY="x" * 60, HADR_SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_a_missing_secret_key_file_stops_startup_with_its_name(tmp_path):
    missing = tmp_path / "nope"
    result = run_python(SETUP, unset=("HADR_SECRET_KEY",), HADR_SECRET_KEY_FILE=str(missing))
    assert result.returncode != 0
    assert "HADR_SECRET_KEY_FILE" in result.stderr
    assert str(missing) in result.stderr


def run_deploy_check(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hadr_portal.settings", **variables}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the test plugin; a deployment never sets it (async.E001)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deployment_checklist():
    result = run_deploy_check(
        HADR_DEBUG="false",
        HADR_HTTPS="true",
        HADR_SECRET_KEY=secrets.token_urlsafe(45),  # 60 characters
        HADR_ALLOWED_HOSTS="portal.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_development_settings_are_flagged_by_the_deployment_checklist():
    """The control for the test above: the checklist does catch an insecure configuration."""
    result = run_deploy_check(HADR_DEBUG="true", HADR_HTTPS="false")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "security.W018" in output  # DEBUG on
    assert "security.W008" in output  # no HTTPS redirect
