"""A sign-in lockout is announced on every enabled alert channel (e-mail, webhook), like a service going down.

The channels belong to the status app, above this one: the alert goes out as core's `security_alert` signal,
which status delivers on each channel."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from hadr_portal.core.signals import security_alert


def lockout_alerts_queue(*, address: str, failures: int, minutes: int) -> None:
    """Announce the lockout: one delivery per enabled channel, each retried on its own, once this commits."""
    subject, text, payload = lockout_message(address=address, failures=failures, minutes=minutes)
    security_alert.send(sender=lockout_alerts_queue, subject=subject, text=text, payload=payload)


def lockout_message(*, address: str, failures: int, minutes: int) -> tuple[str, str, dict[str, object]]:
    """Subject, text and webhook payload. The attempted user name is not in it: administrators see it in the
    audit log."""
    link = settings.PORTAL_URL + reverse("core:audit") + "?action=auth.lockout"
    subject = f"[SECURITY] Sign-in locked out after {failures} failed attempts from {address or 'an unknown address'}"
    text = (
        f"{failures} wrong passwords for one account from {address or 'an unknown address'}: that account is locked "
        f"on that address for {minutes} min.\n\nIf this was not one of you mistyping, someone is guessing passwords. "
        f"Administrators see which account in the audit log: {link}\nUnlock early: manage.py axes_reset_username NAME "
        f"(or delete the access attempt in the admin).\n"
    )
    payload = {
        "text": f":lock: {subject}\n<{link}|Open the audit log>",
        "event": "sign_in_lockout",
        "address": address,
        "failures": failures,
        "minutes": minutes,
        "url": link,
    }
    return subject, text, payload
