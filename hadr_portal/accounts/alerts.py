"""A sign-in lockout is announced on every enabled alert channel (e-mail, webhook), like a service going down."""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from hadr_portal.core.validators import env_reference


def lockout_alerts_queue(*, address: str, failures: int, minutes: int) -> None:
    """One delivery task per enabled channel, each retried on its own."""
    from hadr_portal.status.models import AlertChannel

    from .tasks import lockout_alert_task

    for channel_id in AlertChannel.objects.filter(enabled=True).values_list("pk", flat=True):
        transaction.on_commit(
            partial(
                lockout_alert_task.apply_async,
                kwargs={"channel_id": channel_id, "address": address, "failures": failures, "minutes": minutes},
                queue="default",
            )
        )


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


def lockout_alert_send(*, channel_id: int, address: str, failures: int, minutes: int) -> None:
    """Send one channel's lockout alert; DeliveryFailed propagates (the task retries)."""
    from hadr_portal.status.alerts import message_send
    from hadr_portal.status.models import AlertChannel

    channel = AlertChannel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is None:
        return
    subject, text, payload = lockout_message(address=address, failures=failures, minutes=minutes)
    target = env_reference(channel.target_env) if channel.target_env else channel.target
    message_send(
        kind=channel.kind, target=target, subject=subject, text=text, payload=payload, where=channel.target_env
    )
