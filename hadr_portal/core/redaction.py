"""One way to keep secrets out of everything the portal writes or shows.

`redact(text)` removes credentials from free text (URL userinfo, `password=` in DSNs, bearer tokens,
heartbeat tokens in push URLs, AWS keys, and the values of the portal's own secret variables);
`redact_mapping(data)` does the same to a JSON-like structure and also hides values whose *key* names
a secret. Audit parameters, log records, the catalog export, operation logs and error pages all go
through these two functions. Pure Python (no Django): adapters and logging handlers may import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
# Keys whose values are secrets, by name. `*_env` keys hold a variable's NAME, which is not a secret.
SECRET_KEY_MARKERS = ("password", "passwd", "secret", "token", "credential", "authorization", "api_key", "dsn")
NOT_SECRET_SUFFIXES = ("_env", "_envs")
# Environment variables whose values are secrets wherever they show up in text.
SECRET_VARIABLE_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "DSN", "DATABASE_URL", "REDIS_URL", "CREDENTIAL")
_MIN_SECRET_LENGTH = 6  # shorter values ("on", "1") would blank ordinary words

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  →  scheme://user:[redacted]@host   (and scheme://token@host)
    (
        re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]*):(?P<pw>[^\s/@]*)@", re.I),
        r"\g<head>\g<user>:" + REDACTED + "@",
    ),
    (re.compile(r"(?P<head>\b(?:https?|wss?)://)(?P<tok>[^\s:/@]{12,})@", re.I), r"\g<head>" + REDACTED + "@"),
    # key=value conninfo / query strings: password=..., sslpassword=..., token=..., secret=...
    (
        re.compile(
            r"(?P<key>\b[A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|sig|signature)\s*=\s*)"
            r"(?P<val>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s'\"&;]+)",
            re.I,
        ),
        r"\g<key>" + REDACTED,
    ),
    # Authorization headers and bearer tokens
    (re.compile(r"(?P<key>\b(?:bearer|basic|token)\s+)(?P<val>[A-Za-z0-9._~+/=-]{8,})", re.I), r"\g<key>" + REDACTED),
    # heartbeat tokens in push URLs
    (re.compile(r"(?P<head>/push/heartbeat/)(?P<tok>[^\s/?\"'#]+)"), r"\g<head>" + REDACTED),
    # AWS access key ids and secret keys
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"(?P<key>aws_secret_access_key\s*[=:]\s*)(?P<val>\S+)", re.I), r"\g<key>" + REDACTED),
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of environment variables that hold secrets, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if len(value) >= _MIN_SECRET_LENGTH and any(marker in name.upper() for marker in SECRET_VARIABLE_MARKERS)
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, *, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> str:
    """`text` with every credential the portal can recognise replaced by `[redacted]`."""
    if not text:
        return text
    for value in [*secret_values(environ), *(e for e in extra if e and len(e) >= _MIN_SECRET_LENGTH)]:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith(NOT_SECRET_SUFFIXES):
        return False
    return any(marker in lowered for marker in SECRET_KEY_MARKERS) or lowered in {"key", "secret_key", "access_key"}


def redact_mapping(data: Any, *, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of a JSON-like value: secret-named keys hidden, every string passed through `redact`."""
    if isinstance(data, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key) and value not in ("", None)
            else redact_mapping(value, environ=environ)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_mapping(item, environ=environ) for item in data]
    if isinstance(data, str):
        return redact(data, environ=environ)
    return data
