"""core.redaction: what it removes, what it must leave alone, and the logging filter built on it."""

from __future__ import annotations

import logging
import sys

import pytest

from hadr_portal.core.logging import RedactingFilter
from hadr_portal.core.redaction import (
    REDACTED,
    is_secret_key,
    redact,
    redact_mapping,
    secret_values,
    secret_values_add,
)

NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@db:5432/x", f"postgresql://u:{REDACTED}@db:5432/x"),
        # a password holding an unescaped "@", and a multi-host URL
        ("postgresql://u:p@ss@h1:5432,h2:5432/db", f"postgresql://u:{REDACTED}@h1:5432,h2:5432/db"),
        ("redis://:hunter2hunter@redis:6379/0", f"redis://:{REDACTED}@redis:6379/0"),
        ("https://ghp_0123456789abcdefghij@github.com/x", f"https://{REDACTED}@github.com/x"),
        ("host=db password='se cret' user=x", f"host=db password={REDACTED} user=x"),
        ("host=db sslpassword=abc user=x", f"host=db sslpassword={REDACTED} user=x"),
        ("https://h/x?token=abc123&page=2", f"https://h/x?token={REDACTED}&page=2"),
        ("https://h/x?key=AIzaSyA-1234567890", f"https://h/x?key={REDACTED}"),
        ("{'password': 'hunter2', 'depth': 3}", f"{{'password': '{REDACTED}', 'depth': 3}}"),
        ('{"api_token": "t0k", "name": "x"}', f'{{"api_token": "{REDACTED}", "name": "x"}}'),
        ("Authorization: Bearer abc.def.ghi", f"Authorization: {REDACTED}"),
        ("X-HADR-Token: 0123abcd", f"X-HADR-Token: {REDACTED}"),
        ("sent Bearer eyJhbGciOi.xyz with it", f"sent Bearer {REDACTED} with it"),
        ('GET /push/heartbeat/Zx8_abc-123 HTTP/1.1"', f'GET /push/heartbeat/{REDACTED} HTTP/1.1"'),
        ("https://hooks.slack.com/services/T000/B000/XXXX", f"https://hooks.slack.com/services/{REDACTED}"),
        ("key AKIAIOSFODNN7EXAMPLE", f"key {REDACTED}"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", f"aws_secret_access_key={REDACTED}"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", REDACTED),
    ],
)
def test_credentials_are_cut_out(text, expected):
    assert redact(text, environ=NO_ENV) == expected


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com:8443/health",
        "http://user@host/",  # a user name alone is not a secret
        "password_env=HADR_DEMO_PASSWORD token_env=HADR_X",  # variable NAMES
        "design=1 config=2 keyword=ok",
        "Basic authentication is required",
        "clusters[0].password_env: The name of an environment variable",
        "check web is down: connection refused (HTTP 503)",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text, environ=NO_ENV) == text


def test_redacting_twice_changes_nothing():
    text = "postgresql://u:pw@db/x password=abc /push/heartbeat/tok Authorization: Bearer 1234567890"
    once = redact(text, environ=NO_ENV)
    assert redact(once, environ=NO_ENV) == once


def test_values_of_secret_variables_are_cut_out_wherever_they_appear(monkeypatch):
    from hadr_portal.core import redaction

    monkeypatch.setattr(redaction, "_registered", set())  # the settings' own secrets, added at start-up
    environ = {
        "HADR_DEMO_PASSWORD": "Kq8-secret-value",
        "HADR_SECRET_KEY_FILE": "/run/secrets/key-file",  # a path, not the secret
        "HADR_PORT": "80001234",  # not a secret's name
        "PGPASSWORD": "postgres",  # a plain word: redacting it would blank every "postgres"
    }
    assert secret_values(environ) == ["Kq8-secret-value"]
    text = "connect as postgres with Kq8-secret-value from /run/secrets/key-file on 80001234"
    assert redact(text, environ=environ) == (
        f"connect as postgres with {REDACTED} from /run/secrets/key-file on 80001234"
    )


def test_added_secret_values_are_cut_out(monkeypatch):
    from hadr_portal.core import redaction

    monkeypatch.setattr(redaction, "_registered", set())
    secret_values_add("read-from-a-file-9", None, "", "short")
    assert redact("the key is read-from-a-file-9.", environ=NO_ENV) == f"the key is {REDACTED}."


def test_the_environment_is_read_again_when_it_changes(monkeypatch):
    monkeypatch.setenv("HADR_WEBHOOK_TOKEN", "first-token-value")
    assert redact("first-token-value") == REDACTED
    monkeypatch.setenv("HADR_WEBHOOK_TOKEN", "second-token-value")
    assert redact("first-token-value second-token-value") == f"first-token-value {REDACTED}"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("api_token", True),
        ("AccessKeyId", True),
        ("ssh-key", True),
        ("key", True),
        ("sig", True),
        ("password_env", False),
        ("secret_key_env", False),
        ("keyword", False),
        ("keep_daily", False),
        ("url", False),
    ],
)
def test_secret_keys_by_name(key, secret):
    assert is_secret_key(key) is secret


def test_mappings_hide_secret_keys_and_redact_every_string():
    data = {
        "password": "hunter2",
        "password_env": "HADR_X",
        "options": {"api_token": "t0k", "dsn": "postgresql://u:pw@db/x"},
        "urls": ["https://u:pw@h/", "https://h/"],
        "empty_password": "",
        "depth": 3,
    }
    assert redact_mapping(data, environ=NO_ENV) == {
        "password": REDACTED,
        "password_env": "HADR_X",
        "options": {"api_token": REDACTED, "dsn": REDACTED},
        "urls": [f"https://u:{REDACTED}@h/", "https://h/"],
        "empty_password": "",
        "depth": 3,
    }


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_the_log_filter_redacts_message_arguments_extras_and_traceback():
    try:
        raise RuntimeError("could not reach postgresql://u:hunter2@db/x")
    except RuntimeError:
        record = _record("connecting to %s", "postgresql://u:hunter2@db/x", token="tok-123456", url="https://u:pw@h/")
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"connecting to postgresql://u:{REDACTED}@db/x"
    assert (record.token, record.url) == (REDACTED, f"https://u:{REDACTED}@h/")
    assert record.exc_info is None and "hunter2" not in record.exc_text and "RuntimeError" in record.exc_text
    for formatter in (logging.Formatter(), __import__("pythonjsonlogger.json").json.JsonFormatter()):
        assert "hunter2" not in formatter.format(record)


def test_the_log_filter_redacts_a_record_once_on_every_handler():
    record = _record("%s", "password=abc")
    first, second = RedactingFilter(), RedactingFilter()
    assert first.filter(record) and second.filter(record)
    assert record.getMessage() == f"password={REDACTED}"


def test_a_request_in_the_extras_is_shown_without_its_token(rf):
    record = _record("Not Found: %s", "/push/heartbeat/abc123", request=rf.get("/push/heartbeat/abc123"))
    RedactingFilter().filter(record)
    assert "abc123" not in record.getMessage() and "abc123" not in str(record.request)
