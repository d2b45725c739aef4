"""Where the catalog may point the portal: the save-time half of the SSRF guard and of "no secrets stored".

Every URL or host an operator enters (HTTP and TCP checks, alert channel and contact webhooks, storage
endpoints; restart webhooks in adapters.controllers) is refused when it carries credentials, which belong in
an environment variable, or names an address the guard refuses (adapters.netguard: link-local and cloud
metadata always; loopback and private networks unless HADR_ALLOW_PRIVATE_TARGETS). The connection itself is
checked again when it is made. Messages are sentences for the form or the import report.
"""

from __future__ import annotations

from django.conf import settings

from hadr_portal.adapters import netguard


def credentials_refusal(url: str, *, env_key: str) -> str | None:
    """Why a URL with credentials may not be saved, sending them to the variable named in `env_key`."""
    return netguard.userinfo_refusal(url, instead=f"put the URL in an environment variable and name it in {env_key}")


def outbound_url_refusal(url: str, *, env_key: str | None) -> str | None:
    """Why an outbound URL may not be saved: credentials in it (to move into the variable `env_key` names, or
    simply refused where there is none), or a refused address."""
    if env_key:
        refusal = credentials_refusal(url, env_key=env_key)
    else:
        refusal = netguard.userinfo_refusal(url, instead="give the URL without them")
    return refusal or netguard.url_refusal(url, allow_private=settings.ALLOW_PRIVATE_TARGETS)


def outbound_host_refusal(host: str) -> str | None:
    """Why a host (a TCP check's) may not be saved: a refused literal address or well-known name."""
    return netguard.host_refusal(host, allow_private=settings.ALLOW_PRIVATE_TARGETS)
