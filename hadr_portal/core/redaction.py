"""One way to keep secrets out of everything the portal writes or shows.

`redact(text)` removes credentials from free text; `redact_mapping(data)` does the same to a JSON-like
structure and also hides values whose *key* names a secret. Audit parameters, log records (every handler,
the Errors page's table, gunicorn's access log), the catalog export, operation logs and error pages all go
through these two functions. What `redact` recognises:

- URL userinfo: `scheme://user:password@host` → `scheme://user:[redacted]@host`; `https://TOKEN@host`
- secrets as `key=value` in DSNs, command lines and query strings: `password=`, `sslpassword=`, `token=`,
  `secret=`, `api_key=`, `sig=`, `?key=` ... (a `*_env` key holds a variable's NAME and is kept)
- quoted `"key": "value"` pairs whose key names a secret (JSON, Python reprs of dicts)
- `Authorization`, `Cookie` and `X-…-Token` / `X-…-Key` headers; `Bearer` and `Basic` credentials
- tokens in push URLs (`/push/heartbeat/<token>`) and chat webhook URLs (Slack, Discord)
- well-known token shapes: AWS access key ids, GitHub, Slack, Google and Stripe keys, JWTs, PEM private keys
- the values of secret variables: environment variables whose names contain PASSWORD, SECRET, TOKEN, KEY, DSN,
  DATABASE_URL ... (8 characters or more, not a plain lower-case word or a number), and values added with
  `secret_values_add()` (secrets the settings read from `*_FILE`)

Pure Python (no Django): adapters and logging handlers may import it. Text that contains none of the words a
pattern needs costs one lower-casing and a few substring tests.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "[redacted]"
# Keys whose values are secrets, by name: any key containing one of these ...
SECRET_KEY_MARKERS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "authorization",
    "apikey",
    "api_key",
    "private_key",
    "dsn",
    "cookie",
)
# ... or having one of these as a whole word (`access_key`, `AccessKeyId`, `ssh-key`, `sig`; not `keyword`).
SECRET_KEY_WORDS = frozenset({"key", "pwd", "pass", "sig", "signature"})
# `*_env` keys hold a variable's NAME, which is not a secret.
NOT_SECRET_SUFFIXES = ("_env", "_envs")
# Environment variables whose values are secrets wherever they show up in text (`*_FILE` ones hold a path).
SECRET_VARIABLE_MARKERS = (
    "PASS",
    "SECRET",
    "TOKEN",
    "KEY",
    "DSN",
    "DATABASE_URL",
    "REDIS_URL",
    "BROKER_URL",
    "CREDENTIAL",
    "AUTH",
    "HOOK",
    "PRIVATE",
)
_MIN_SECRET_LENGTH = 8  # shorter values ("on", "5432") would blank ordinary words

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "dsn", "cookie", "sig", "private")
_KEY_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_registered: set[str] = set()
# what comes before a "://" that hides a token as the user name; before a "=" whose value is a secret
_WEB_SCHEME = re.compile(r"\b(?:https?|wss?)$", re.I)
_SECRET_KEY_BEFORE = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|sig(?:nature)?)\s*$",
    re.I,
)


@dataclass(frozen=True)
class _Rule:
    """A pattern, what replaces a match, and what text must contain for it to match: one of `needs`, and all of
    `requires` (lower-case)."""

    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]
    needs: tuple[str, ...]
    requires: tuple[str, ...] = ()


def _quoted_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    quote = match["val"][0]
    return f"{match['q']}{match['key']}{match['q']}{match['sep']}{quote}{REDACTED}{quote}"


def _token_userinfo(match: re.Match[str]) -> str:
    if _WEB_SCHEME.search(match.string, max(0, match.start() - 8), match.start()):
        return "://" + REDACTED + "@"
    return match[0]


def _keyed_value(match: re.Match[str]) -> str:
    if _SECRET_KEY_BEFORE.search(match.string, max(0, match.start() - 40), match.start()):
        return match["sep"] + REDACTED
    return match[0]


def _credential(match: re.Match[str]) -> str:
    value = match["val"]
    # "Basic authentication" is prose; "Basic dXNlcjpwYXNz" is a credential
    if len(value) >= 20 or any(char.isdigit() or char in "+/=_-.~" for char in value):
        return f"{match['key']}{REDACTED}"
    return match[0]


_RULES: tuple[_Rule, ...] = (
    _Rule(
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
        REDACTED,
        ("private key",),
    ),
    # scheme://user:password@host → scheme://user:[redacted]@host (the password may hold an unescaped "@");
    # https://TOKEN@host → https://[redacted]@host. Anchored on "://", which the engine finds fast.
    _Rule(re.compile(r"://(?P<user>[^\s:/@?#\[\]]*):[^\s/?#]*@"), r"://\g<user>:" + REDACTED + "@", ("://",), ("@",)),
    _Rule(re.compile(r"://[^\s:/@?#]{12,}@"), _token_userinfo, ("://",), ("@",)),
    # chat webhooks carry their secret in the path
    _Rule(
        re.compile(
            r"(?P<head>hooks\.slack\.com/(?:services|workflows|triggers)/|discord(?:app)?\.com/api/webhooks/)[^\s\"'<>]+",
            re.I,
        ),
        r"\g<head>" + REDACTED,
        ("hooks.slack.com", "discord"),
    ),
    # push URLs: /push/heartbeat/<token>
    _Rule(re.compile(r"(?P<head>/push/[a-z-]+/)[^\s/?\"'#<>]+"), r"\g<head>" + REDACTED, ("/push/",)),
    # 'password': 'x', "api_token": "x" (JSON, dict reprs)
    _Rule(
        re.compile(
            r"(?P<q>['\"])(?P<key>[A-Za-z0-9_.-]+)(?P=q)(?P<sep>\s*:\s*)"
            r"(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
        ),
        _quoted_pair,
        _SECRET_WORDS,
        (":",),
    ),
    # Authorization: ..., Cookie: ..., X-Heartbeat-Token: ...
    _Rule(
        re.compile(
            r"(?P<key>\b(?:proxy-)?authorization|\bset-cookie|\bcookie|\bx-[a-z0-9-]*(?:token|key|secret|auth|signature)[a-z0-9-]*)"
            r"(?P<sep>\s*:[ \t]*)(?!//)[^\r\n'\"]+",
            re.I,
        ),
        r"\g<key>\g<sep>" + REDACTED,
        ("authorization", "cookie", "x-"),
    ),
    # password=..., sslpassword='...', token=..., aws_secret_access_key=... (anchored on "=", the key checked after)
    _Rule(
        re.compile(r"(?P<sep>=\s*)(?:'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s'\"&;]+)"),
        _keyed_value,
        _SECRET_WORDS,
        ("=",),
    ),
    _Rule(
        re.compile(r"(?P<key>[?&](?:key|code|auth)=)[^\s&#'\"]+", re.I),
        r"\g<key>" + REDACTED,
        ("key=", "code=", "auth="),
    ),
    _Rule(
        re.compile(r"(?P<key>aws_secret_access_key\s*:\s*)\S+", re.I), r"\g<key>" + REDACTED, ("aws_secret_access_key",)
    ),
    _Rule(
        re.compile(r"(?P<key>\b(?:bearer|basic)\s+)(?P<val>[A-Za-z0-9._~+/=-]{8,})", re.I),
        _credential,
        ("bearer", "basic"),
    ),
    _Rule(
        re.compile(
            r"\b(?:(?:AKIA|ASIA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
        ),
        REDACTED,
        (
            "akia",
            "asia",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "xox",
            "aiza",
            "k_live_",
            "k_test_",
            "eyj",
        ),
    ),
)


def _looks_secret(value: str) -> bool:
    return len(value) >= _MIN_SECRET_LENGTH and not value.isdigit() and not (value.isalpha() and value.islower())


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of environment variables that hold secrets, and those added with `secret_values_add()`,
    longest first."""
    if environ is None:
        data = getattr(os.environ, "_data", None)  # the raw environment: no decoding on every log record
        found = _environ_secrets(tuple(data.items())) if isinstance(data, dict) else _secrets_of(os.environ.items())
    else:
        found = _secrets_of(environ.items())
    return sorted({*found, *_registered}, key=lambda value: (-len(value), value))


def _secrets_of(items: Iterable[tuple[Any, Any]]) -> tuple[str, ...]:
    values = set()
    for raw_name, raw_value in items:
        name, value = os.fsdecode(raw_name), os.fsdecode(raw_value)
        if (
            not name.endswith("_FILE")
            and any(marker in name.upper() for marker in SECRET_VARIABLE_MARKERS)
            and _looks_secret(value)
        ):
            values.add(value)
    return tuple(values)


@functools.lru_cache(maxsize=8)
def _environ_secrets(snapshot: tuple[tuple[Any, Any], ...]) -> tuple[str, ...]:
    return _secrets_of(snapshot)


def secret_values_add(*values: str | None) -> None:
    """Redact these values too, wherever they appear: secrets that are not in the environment (read from a
    `*_FILE`, or parsed out of a URL) but must never be shown."""
    _registered.update(value for value in values if value and _looks_secret(value))


@functools.lru_cache(maxsize=16)
def _values_pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(map(re.escape, values))) if values else None


def redact(text: str, *, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> str:
    """`text` with every credential the portal can recognise replaced by `[redacted]` (see the module's docstring).
    Idempotent: redacting redacted text changes nothing."""
    if not text:
        return text
    text = str(text)  # a lazy string (a proxy that passes for one) becomes a real one
    values = secret_values(environ)
    added = [value for value in extra if value and len(value) >= _MIN_SECRET_LENGTH]
    if added:
        values = sorted({*values, *added}, key=lambda value: (-len(value), value))
    pattern = _values_pattern(tuple(values))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    lowered = text.lower()
    for rule in _RULES:
        if any(word in lowered for word in rule.needs) and all(word in lowered for word in rule.requires):
            text = rule.pattern.sub(rule.replacement, text)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a value stored under this key is a secret by its name (`password`, `api_token`, `AccessKeyId`),
    never a `*_env` key (which names the variable holding the secret)."""
    lowered = key.lower()
    if lowered.endswith(NOT_SECRET_SUFFIXES):
        return False
    if any(marker in lowered for marker in SECRET_KEY_MARKERS):
        return True
    return any(word.lower() in SECRET_KEY_WORDS for word in _KEY_WORD_SPLIT.split(key))


def redact_mapping(data: Any, *, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of a JSON-like value: secret-named keys hidden, every string passed through `redact`."""
    if isinstance(data, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key) and data[key] not in ("", None)
            else redact_mapping(data[key], environ=environ)
            for key in data
        }
    if isinstance(data, list | tuple | set | frozenset):
        return [redact_mapping(item, environ=environ) for item in data]
    if isinstance(data, str):
        return redact(data, environ=environ)
    return data
