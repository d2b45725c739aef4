"""Alerts: one per transition and channel, delivered by a task with retries, every attempt recorded.

Which transitions alert: to `down`; to `degraded` for tier-1 services; and the recovery back to
`up` from a state that alerted. A transition inside a maintenance window alerts nobody. Security alerts
(core's `security_alert` signal: a sign-in lockout) go to every enabled channel, retried the same way.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from hadr_portal.adapters.notifiers import DeliveryFailed, webhook_post
from hadr_portal.core.delivery import delivery_attempt
from hadr_portal.core.dispatch import task_send_on_commit
from hadr_portal.core.signals import security_alert
from hadr_portal.core.validators import env_reference

from .models import AlertChannel, AlertDelivery, State, Transition
from .signals import transition_committed

EMOJI = {State.DOWN: ":red_circle:", State.DEGRADED: ":large_orange_circle:", State.UP: ":large_green_circle:"}


def transition_alerts(transition: Transition) -> bool:
    """Whether this transition deserves an alert (before channels and maintenance)."""
    tier1 = transition.service.tier == 1
    alerting = {State.DOWN} | ({State.DEGRADED} if tier1 else set())
    if transition.to_state in alerting:
        return True
    return transition.to_state == State.UP and transition.from_state in alerting


def alerts_queue(transition: Transition) -> list[AlertDelivery]:
    """Create one pending delivery per matching channel and enqueue each once committed."""
    if transition.silenced or not transition_alerts(transition):
        return []
    deliveries = []
    for channel in AlertChannel.objects.filter(enabled=True, min_tier__gte=transition.service.tier):
        delivery, created = AlertDelivery.objects.get_or_create(transition=transition, channel=channel)
        if created:
            deliveries.append(delivery)
            task_send_on_commit("hadr_portal.status.tasks.alert_deliver", args=[delivery.pk], queue="default")
    return deliveries


@receiver(transition_committed)
def on_transition(sender: Any, transition: Transition, **_: Any) -> None:
    with transaction.atomic():
        alerts_queue(transition)


def alert_message(transition: Transition) -> tuple[str, str, dict[str, Any]]:
    """Subject, text and webhook payload for a transition."""
    service = transition.service
    link = settings.PORTAL_URL + reverse("status:service", kwargs={"name": service.name})
    verb = "recovered" if transition.to_state == State.UP else f"is {transition.to_state.upper()}"
    subject = f"[{transition.to_state.upper()}] {service.display_name} {verb} (tier {service.tier})"
    at = timezone.localtime(transition.at).strftime("%Y-%m-%d %H:%M:%S %Z")
    text = (
        f"{service.display_name} {verb}.\n\nWas: {transition.from_state} · Now: {transition.to_state} · Since: {at}\n"
        f"Why: {transition.reason}\nTier {service.tier} · owner {service.owner_role} · RTO {service.rto_minutes} min\n"
        f"{'Runbook: ' + service.runbook + chr(10) if service.runbook else ''}Details: {link}\n"
    )
    payload = {
        "text": f"{EMOJI.get(State(transition.to_state), '')} {subject}\n{transition.reason}\n<{link}|Open in HADR Portal>",
        "service": service.name,
        "display_name": service.display_name,
        "tier": service.tier,
        "from_state": transition.from_state,
        "to_state": transition.to_state,
        "reason": transition.reason,
        "at": transition.at.isoformat(),
        "url": link,
    }
    return subject, text, payload


def alert_deliver(*, delivery_id: int) -> AlertDelivery:
    """One attempt. Raises DeliveryFailed (the task retries) until the attempts run out."""
    delivery = AlertDelivery.objects.select_related("transition__service", "channel").get(pk=delivery_id)
    if delivery.status != AlertDelivery.Status.PENDING:
        return delivery
    subject, text, payload = alert_message(delivery.transition)
    delivery_attempt(
        delivery,
        lambda: channel_send(delivery.channel, subject=subject, text=text, payload=payload),
        sent=AlertDelivery.Status.SENT,
        failed=AlertDelivery.Status.FAILED,
    )
    return delivery


@receiver(security_alert)
def on_security_alert(sender: Any, subject: str, text: str, payload: dict[str, Any], **_: Any) -> None:
    """One delivery task per enabled channel, each retried on its own, queued once the sender commits."""
    for channel_id in AlertChannel.objects.filter(enabled=True).values_list("pk", flat=True):
        task_send_on_commit(
            "hadr_portal.status.tasks.security_alert_deliver",
            kwargs={"channel_id": channel_id, "subject": subject, "text": text, "payload": payload},
            queue="default",
        )


def security_alert_deliver(*, channel_id: int, subject: str, text: str, payload: dict[str, Any]) -> None:
    """Send one channel's security alert (none if the channel was disabled since); DeliveryFailed propagates
    (the task retries)."""
    channel = AlertChannel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is not None:
        channel_send(channel, subject=subject, text=text, payload=payload)


def channel_send(channel: AlertChannel, *, subject: str, text: str, payload: dict[str, Any]) -> None:
    """One message on an alert channel, to the address or URL it names (directly, or in an environment variable)."""
    address = env_reference(channel.address_env) if channel.address_env else channel.address
    message_send(
        kind=channel.kind, address=address, subject=subject, text=text, payload=payload, where=channel.address_env
    )


def message_send(*, kind: str, address: str, subject: str, text: str, payload: dict[str, Any], where: str = "") -> None:
    """One e-mail (to the comma-separated addresses in `address`) or one webhook POST; DeliveryFailed says why not.
    Alerts and incident escalations both send through here."""
    if kind == AlertChannel.Kind.EMAIL:
        recipients = [a.strip() for a in address.split(",") if a.strip()]
        try:
            send_mail(subject, text, None, recipients, fail_silently=False)
        except Exception as exc:  # SMTP errors come in many classes
            raise DeliveryFailed(f"{exc.__class__.__name__}: {exc}") from None
    else:
        if not address:
            raise DeliveryFailed(f"no webhook URL (is {where or 'the address'} set?)")
        webhook_post(url=address, payload=payload, allow_private=settings.ALLOW_PRIVATE_TARGETS)
