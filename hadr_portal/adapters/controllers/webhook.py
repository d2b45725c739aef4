"""Restarting by POSTing to a webhook, through the SSRF guard; its URL and headers may be read from the
environment when the restart runs, so that a secret in them is never stored."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from hadr_portal.adapters import netguard
from hadr_portal.adapters.commands import env_reference_problem

from .base import DEFAULT_TIMEOUT_SECONDS, OUTPUT_LIMIT, ControllerFailed, ControllerResult
from .table import TableReader, is_http_url, is_reference

HEADER_PATTERN = re.compile(r"^[A-Za-z0-9-]+$")
URL_ENV = "the name of the environment variable holding the URL, e.g. DEPLOY_HOOK_URL (never one of the portal's own)"
CREDENTIALS_IN_ENV = "put the URL in an environment variable and name it in url_env"
HEADERS = (
    'a table of header name = environment variable name, e.g. { Authorization = "DEPLOY_HOOK_AUTH" }'
    " (never one of the portal's own secrets)"
)


@dataclass(frozen=True)
class WebhookController:
    """POSTs JSON to a URL (given, or read from `url_env`), with headers read from environment variables.
    Any answer but 2xx is a failure; redirects are not followed. The connection goes through the SSRF guard
    (netguard): loopback and private addresses only with `allow_private`, link-local and metadata never."""

    kind: ClassVar[str] = "webhook"
    url: str = ""
    url_env: str = ""
    headers_env: tuple[tuple[str, str], ...] = ()  # (header, name of the variable holding its value)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    allow_private: bool = False

    def describe(self) -> str:
        return f"POSTs to {f'the URL in {self.url_env}' if self.url_env else _site(self.url)}"

    def restart(
        self, *, service: str, operation: int | None = None, environ: Mapping[str, str] | None = None
    ) -> ControllerResult:
        environ = os.environ if environ is None else environ
        url = self.url or _variable(environ, self.url_env, "the webhook's URL")
        headers = {header: _variable(environ, name, f"the {header} header") for header, name in self.headers_env}
        payload = {"service": service, "action": "restart", "operation": operation}
        site = _site(url)  # never the whole URL in a message: it may carry a token
        refusal = netguard.url_refusal(url, allow_private=self.allow_private)
        if refusal:
            raise ControllerFailed(f"{site}: {refusal}")
        try:
            with netguard.http_client(allow_private=self.allow_private, timeout=self.timeout) as client:
                response = client.post(url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise ControllerFailed(f"{site} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ControllerFailed(f"cannot reach {site}: {exc}") from None
        except httpx.InvalidURL:
            raise ControllerFailed("the webhook's URL is not a valid http(s) URL") from None
        body = response.text[-OUTPUT_LIMIT:]
        if not response.is_success:
            raise ControllerFailed(f"{site} answered HTTP {response.status_code}", body)
        return ControllerResult(body, {"http_status": response.status_code})


def _site(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the webhook"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _variable(environ: Mapping[str, str], name: str, what: str) -> str:
    if problem := env_reference_problem(name):
        raise ControllerFailed(f"refused: {problem}")
    value = environ.get(name, "")
    if not value:
        raise ControllerFailed(f"environment variable {name} ({what}) is not set for the worker")
    return value


def webhook_from_table(read: TableReader, timeout: float) -> WebhookController:
    url = read.take("url", is_http_url, "an http(s) URL")
    url_env = read.take("url_env", is_reference, URL_ENV)
    headers = read.take(
        "headers_env",
        lambda v: isinstance(v, Mapping) and all(HEADER_PATTERN.match(h) and is_reference(n) for h, n in v.items()),
        HEADERS,
    )
    given_url = read.config.get("url")
    if isinstance(given_url, str) and (refusal := netguard.userinfo_refusal(given_url, instead=CREDENTIALS_IN_ENV)):
        read.problems.append(f"url: {refusal}")
    given = [key for key in ("url", "url_env") if key in read.config]
    if len(given) != 1:
        read.problems.append(
            "url, url_env: give the webhook's URL (url), or the environment variable holding it (url_env) "
            f"when it carries a secret — {'not both' if given else 'one of them'}."
        )
    return WebhookController(url or "", url_env or "", tuple(sorted((headers or {}).items())), timeout)
