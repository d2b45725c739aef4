"""`manage.py check --deploy` with production settings finds nothing to fix."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every case runs manage.py in an interpreter of its own
ROOT = Path(__file__).resolve().parents[2]


def deploy_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HADR_", "DJANGO_"))}
    env.update(
        {
            "HADR_SECRET_KEY": secrets.token_urlsafe(60),
            "HADR_HTTPS": "true",
            "HADR_ALLOWED_HOSTS": "portal.example.com",
            "HADR_DATABASE_URL": "postgres://portal@127.0.0.1:1/portal",
            "HADR_REDIS_URL": "redis://127.0.0.1:1/0",
            "HADR_LOG_LEVEL": "ERROR",
            **overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check() -> None:
    result = deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_https_the_deploy_check_says_what_is_missing() -> None:
    result = deploy_check(HADR_HTTPS="false")
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stdout + result.stderr
