"""The HTTP(S) probe: status, keyword and TLS certificate expiry, through the SSRF guard."""

from __future__ import annotations

import functools
import ssl
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from hadr_portal.adapters import netguard

from .base import DEGRADED, DOWN, UP, ProbeResult, failure_message, format_bytes, ms_since, run_bounded, worst_of


def probe_http(
    *,
    url: str,
    timeout: float,
    expected_status: int = 200,
    keyword: str = "",
    max_body_bytes: int = 1_048_576,
    tls_warning_days: int = 14,
    verify_tls: bool = True,
    allow_private: bool = False,
) -> ProbeResult:
    """GET `url`; check the status, optionally a keyword in the first `max_body_bytes`, and for
    https the certificate's expiry. Redirects are not followed: a 302 is what the target said.
    The connection goes through the SSRF guard (netguard): loopback and private addresses only
    with `allow_private`, link-local and metadata addresses never."""

    def work() -> ProbeResult:
        parsed = httpx.URL(url)
        # Say what is wrong without echoing the URL: it may carry a password.
        if parsed.scheme not in ("http", "https"):
            return ProbeResult(DOWN, f"not an http(s) URL (scheme: {parsed.scheme or 'none'})")
        if not parsed.host:
            return ProbeResult(DOWN, "URL has no host name")
        deadline = time.monotonic() + timeout
        # Ask for the body as sent, so the byte cap counts what crosses the wire.
        headers = {"User-Agent": "hadr-portal-probe", "Accept-Encoding": "identity"}
        body, out_of_time = bytearray(), False
        with netguard.http_client(
            allow_private=allow_private, timeout=timeout, verify=_tls_context(verify_tls), headers=headers
        ) as client:
            started = time.monotonic()
            with client.stream("GET", parsed) as response:
                latency_ms = ms_since(started)
                data: dict[str, Any] = {"status_code": response.status_code}
                tls = _check_certificate(response, tls_warning_days, data) if parsed.scheme == "https" else None
                # httpx's timeouts apply per read: a target trickling bytes would never trip them.
                for chunk in response.iter_bytes():
                    body += chunk
                    out_of_time = time.monotonic() > deadline
                    if len(body) > max_body_bytes or out_of_time:
                        break
        cut = len(body) > max_body_bytes
        data["body_bytes"], data["body_truncated"] = min(len(body), max_body_bytes), cut
        if out_of_time and not cut:
            return ProbeResult(DOWN, f"timed out after {timeout:.1f} s reading the body", latency_ms, data)
        if response.status_code == expected_status:
            checks = [(UP, f"HTTP {response.status_code} in {latency_ms:.0f} ms")]
        else:
            checks = [(DOWN, f"HTTP {response.status_code} (expected {expected_status})")]
        if keyword and keyword.encode() not in body[:max_body_bytes]:
            where = f" (first {format_bytes(max_body_bytes)})" if cut else ""
            checks.append((DOWN, f"keyword {keyword!r} not found in body{where}"))
        if tls:
            checks.append(tls)
        if cut:
            data["body_note"] = f"body cut at {format_bytes(max_body_bytes)}"
            checks.append((UP, data["body_note"]))
        return worst_of(checks, latency_ms, data)

    return run_bounded(timeout, work)


def certificate_not_after(der: bytes) -> datetime:
    """The notAfter date of a DER-encoded X.509 certificate.

    The stdlib decodes only certificates it has verified, and we want the date of self-signed
    ones too (verify_tls=False), so walk the few DER fields in front of it: Certificate →
    TBSCertificate → [0] version, serialNumber, signature, issuer, validity → notBefore, notAfter.
    """

    def element(pos: int) -> tuple[int, int, int]:  # (tag, content start, content end)
        tag, length, pos = der[pos], der[pos + 1], pos + 2
        if length & 0x80:  # long form: the low bits say how many length bytes follow
            size = length & 0x7F
            length, pos = int.from_bytes(der[pos : pos + size], "big"), pos + size
        return tag, pos, pos + length

    _, tbs, _ = element(0)
    _, pos, _ = element(tbs)
    tag, _, end = element(pos)
    pos = end if tag == 0xA0 else pos
    for _ in range(3):  # serialNumber, signature, issuer
        pos = element(pos)[2]
    _, validity, _ = element(pos)
    tag, start, end = element(element(validity)[2])
    text = der[start:end].decode("ascii")
    return datetime.strptime(text, "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _check_certificate(response: httpx.Response, warning_days: int, data: dict[str, Any]) -> tuple[str, str]:
    """Read the certificate from the connection the response came on: no second handshake."""
    try:
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
        expires = certificate_not_after(ssl_object.getpeercert(True))
    except Exception as exc:  # the page answered; an unreadable certificate is worth a look, not an alarm
        data["tls_error"] = failure_message(exc, 0)
        return DEGRADED, f"could not read the TLS certificate's expiry ({data['tls_error']})"
    days_left = (expires - datetime.now(UTC)).days
    data["tls_expires_at"], data["tls_days_left"] = expires.isoformat(), days_left
    if expires <= datetime.now(UTC):
        return DOWN, f"TLS certificate expired on {expires:%Y-%m-%d}"
    if days_left < warning_days:
        return DEGRADED, f"TLS certificate expires in {days_left} days ({expires:%Y-%m-%d})"
    return UP, f"TLS certificate valid for {days_left} days"


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs ~20 ms of CPU, too much for every probe."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
