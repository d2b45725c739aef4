"""Sending alerts out: a JSON webhook (Slack-compatible payload). E-mail goes through Django's mail."""

from __future__ import annotations

from typing import Any

import httpx

from . import netguard


class DeliveryFailed(Exception):
    """The receiver did not take the alert; the message says why (retried by the caller)."""


def webhook_post(*, url: str, payload: dict[str, Any], timeout: float = 10.0, allow_private: bool = False) -> int:
    """POST the payload as JSON, through the SSRF guard (netguard: loopback and private addresses only with
    `allow_private`, link-local and metadata addresses never, no redirects); any non-2xx answer, refused target
    or network error raises DeliveryFailed, whose message never carries the URL (it may hold a token); what the
    network error says is redacted by whoever stores or shows it (`core.delivery`, the log filter)."""
    refusal = netguard.url_refusal(url, allow_private=allow_private)
    if refusal:
        raise DeliveryFailed(refusal)
    try:
        with netguard.http_client(allow_private=allow_private, timeout=timeout) as client:
            response = client.post(url, json=payload)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.status_code
