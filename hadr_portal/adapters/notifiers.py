"""Sending alerts out: a JSON webhook (Slack-compatible payload). E-mail goes through Django's mail."""

from __future__ import annotations

from typing import Any

import httpx


class DeliveryFailed(Exception):
    """The receiver did not take the alert; the message says why (retried by the caller)."""


def webhook_post(*, url: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    """POST the payload as JSON; any non-2xx answer or network error raises DeliveryFailed."""
    try:
        response = httpx.post(url, json=payload, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.status_code
