"""Reading what machines push (heartbeats, host reports, funnel counts): the token, then a bounded body.

The order is the guarantee. A push view takes the token with `push_token()` and checks it (a database lookup)
before it calls `body_bytes()` or `body_json()`: nobody without a valid token makes the portal read, decode or
parse a single byte of a body. The body is then limited in size (HADR_PUSH_MAX_BYTES, 413 above it: from
Content-Length before reading, and by reading at most one byte more than the limit) and, for JSON, in nesting
depth (HADR_PUSH_MAX_DEPTH, 400) by a scan that does not recurse, before `json.loads` sees it. What cannot be
stored in PostgreSQL (NUL in a string, NaN and infinities) is refused there too, with a 400 saying so.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

# Longest token the portal hands out (the models' token fields): anything longer cannot match one.
TOKEN_MAX_LENGTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_OPENING = frozenset(b"[{")


class BodyRefused(Exception):
    """A push request the portal will not act on: `status` (400, 401, 413) and a message for the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JsonResponse:
        return JsonResponse({"error": self.message}, status=self.status)


def push_token(request: HttpRequest, url_token: str = "") -> str:
    """The token of a push request: `Authorization: Bearer <token>`, `X-HADR-Token: <token>`, or the one in
    the URL (kept for cron's one-line curl). "" when there is none, or none that could be a token."""
    authorization = request.headers.get("Authorization", "")
    token = (
        authorization.removeprefix("Bearer ").strip()
        if authorization.startswith("Bearer ")
        else request.headers.get("X-HADR-Token", "").strip() or url_token
    )
    return token if len(token) <= TOKEN_MAX_LENGTH and "\x00" not in token else ""


def body_bytes(request: HttpRequest, *, max_bytes: int | None = None) -> bytes:
    """The body, at most `max_bytes` (HADR_PUSH_MAX_BYTES) long; BodyRefused(413) beyond that."""
    limit = settings.PUSH_MAX_BYTES if max_bytes is None else max_bytes
    too_big = BodyRefused(413, f"the body is larger than {limit} bytes (HADR_PUSH_MAX_BYTES); send less")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyRefused(400, "the Content-Length header is not a number") from None
    if declared > limit:
        raise too_big
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_big
    return body


def json_depth(raw: bytes, *, stop_after: int | None = None) -> int:
    """How deeply arrays and objects nest in `raw` (brackets inside strings do not count). Linear, no recursion;
    stops counting once past `stop_after`."""
    depth = deepest = 0
    for char in _STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS):
        if char in _OPENING:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    break
        else:
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _nul_free(value: Any) -> bool:
    """True when no string of the document (key or value) holds a NUL; iterative, the depth is bounded anyway."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def body_json(request: HttpRequest, *, max_bytes: int | None = None, max_depth: int | None = None) -> Any:
    """The body parsed as JSON, within the size and depth limits; BodyRefused (400 or 413) naming what is wrong."""
    depth_limit = settings.PUSH_MAX_DEPTH if max_depth is None else max_depth
    raw = body_bytes(request, max_bytes=max_bytes)
    if json_depth(raw, stop_after=depth_limit) > depth_limit:
        raise BodyRefused(400, f"the JSON nests deeper than {depth_limit} levels (HADR_PUSH_MAX_DEPTH)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, "the body is not UTF-8 text") from None
    try:
        value = json.loads(text or "null", parse_float=_finite, parse_constant=_constant)
    except ValueError as exc:  # JSONDecodeError, out-of-range numbers, over-long integers
        raise BodyRefused(400, f"the body is not valid JSON: {exc}") from None
    if not _nul_free(value):
        raise BodyRefused(400, "the JSON contains a NUL character (\\u0000), which cannot be stored")
    return value
