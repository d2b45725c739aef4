"""Heartbeats, pushed host reports, alerts and maintenance windows, history."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from celery.signals import task_retry
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hadr_portal.adapters.notifiers import DeliveryFailed
from hadr_portal.status import alerts, engine, history
from hadr_portal.status.models import (
    AlertChannel,
    AlertDelivery,
    CheckResult,
    CheckRollup,
    MaintenanceWindow,
    Transition,
)
from hadr_portal.status.tasks import alert_deliver_task, security_alert_deliver_task
from tests.status.factories import http_target, make_check, make_service


@pytest.fixture
def heartbeat(db):
    service = make_service("nightly-job", kind="job", tier=1)
    return make_check(
        service, "cron", kind="heartbeat", config={"period_seconds": 60, "grace_seconds": 30}, failures_before_down=1
    )


def test_heartbeat_ping_late_and_recovery(heartbeat):
    client = Client()
    url = reverse("status:heartbeat", kwargs={"token": heartbeat.token})
    assert client.get(url).content == b"OK\n"
    heartbeat.refresh_from_db()
    assert heartbeat.state == "up"

    heartbeat.last_ping_at = timezone.now() - timedelta(seconds=80)  # late, but within grace
    heartbeat.save()
    engine.checks_run([heartbeat.pk])
    heartbeat.refresh_from_db()
    assert heartbeat.state == "up" and "within grace" in heartbeat.last_message

    heartbeat.last_ping_at = timezone.now() - timedelta(seconds=100)
    heartbeat.save()
    engine.checks_run([heartbeat.pk])
    heartbeat.refresh_from_db()
    assert heartbeat.state == "down" and "no ping for" in heartbeat.last_message

    client.post(url, data="backup done", content_type="text/plain")
    heartbeat.refresh_from_db()
    assert heartbeat.state == "up" and heartbeat.last_message == "backup done"
    assert client.get(reverse("status:heartbeat", kwargs={"token": "guess"})).status_code == 404


def test_host_push_endpoint_authenticates_validates_and_records(db):
    check = make_check(
        make_service("db-host", kind="host"),
        "pushed",
        kind="host_push",
        config={"disk_critical": 90},
        failures_before_down=1,
    )
    client = Client()
    url = reverse("status:host-report")

    def post(body: object, token: str | None = check.token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(
            url,
            data=json.dumps(body) if not isinstance(body, str) else body,
            content_type="application/json",
            headers=headers,
        )

    assert post({"cpu": 1}, token="wrong").status_code == 401
    assert post({"cpu": 1}, token=None).status_code == 401
    assert post("{not json").status_code == 400
    bad = post({"cpu": -5, "memory": 10, "disks": {}})
    assert bad.status_code == 400 and "cpu" in bad.json()["error"]
    assert CheckResult.objects.count() == 0
    ok = post({"cpu": 12.5, "memory": 40, "disks": {"/": 71.2}})
    assert ok.status_code == 200 and ok.json()["state"] == "up"
    full = post({"cpu": 12.5, "memory": 40, "disks": {"/data": 93}})
    assert full.json()["state"] == "down" and "/data" in full.json()["message"]


@pytest.fixture
def channels(db):
    with http_target() as sink:
        email = AlertChannel.objects.create(name="mail", kind="email", address="ops@example.com, dba@example.com")
        hook = AlertChannel.objects.create(name="hook", kind="webhook", address=sink.url + "/hook")
        yield email, hook, sink


def _transition(service, to_state, from_state="up"):
    return Transition.objects.create(
        service=service, from_state=from_state, to_state=to_state, reason="health: HTTP 503"
    )


def test_down_and_recovery_alert_by_email_and_webhook(channels, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    _, _, sink = channels
    service = make_service("shop", tier=2, display_name="Shop")
    down = _transition(service, "down")
    deliveries = alerts.alerts_queue(down)
    assert {d.channel.name for d in deliveries} == {"mail", "hook"}
    for delivery in deliveries:
        assert alerts.alert_deliver(delivery_id=delivery.pk).status == "sent"
    assert mail.outbox[0].subject == "[DOWN] Shop is DOWN (tier 2)"
    assert mail.outbox[0].to == ["ops@example.com", "dba@example.com"]
    assert "Why: health: HTTP 503" in mail.outbox[0].body
    assert sink.received[0]["to_state"] == "down" and "Shop is DOWN" in sink.received[0]["text"]
    assert alerts.alerts_queue(down) == [], "one alert per transition and channel, never two"

    recovery = _transition(service, "up", from_state="down")
    for delivery in alerts.alerts_queue(recovery):
        alerts.alert_deliver(delivery_id=delivery.pk)
    assert mail.outbox[-1].subject == "[UP] Shop recovered (tier 2)"


def test_degraded_alerts_only_for_tier_1(channels):
    assert alerts.alerts_queue(_transition(make_service("minor", tier=3), "degraded")) == []
    assert len(alerts.alerts_queue(_transition(make_service("major", tier=1), "degraded"))) == 2


def test_maintenance_window_silences_alerts(channels):
    service = make_service("upgrading")
    MaintenanceWindow.objects.create(
        service=service,
        starts_at=timezone.now() - timedelta(minutes=1),
        ends_at=timezone.now() + timedelta(hours=1),
        reason="upgrade",
    )
    with http_target() as target:
        target.status = 500
        check = make_check(service, config={"url": target.url}, failures_before_down=1)
        engine.checks_run([check.pk])
    transition = Transition.objects.get(service=service, to_state="down")
    assert transition.silenced
    assert alerts.alerts_queue(transition) == []


def test_webhook_down_is_retried_then_marked_undelivered(db, settings):
    settings.ALERT_MAX_ATTEMPTS = 3
    AlertChannel.objects.create(name="dead", kind="webhook", address="http://127.0.0.1:1/hook")
    [delivery] = alerts.alerts_queue(_transition(make_service("x"), "down"))
    for attempt in (1, 2):
        with pytest.raises(DeliveryFailed):
            alerts.alert_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.status) == (attempt, "pending")
    assert alerts.alert_deliver(delivery_id=delivery.pk).status == "failed"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.last_error


def retry_countdowns(task, *args, **kwargs):
    """Run a delivery task as a worker would, each retry at once (Celery's eager mode): its result, and the
    countdowns it asked for before each retry."""
    countdowns: list[float] = []

    def note(sender, reason, **_):
        countdowns.append(reason.when)

    task_retry.connect(note, weak=False)
    try:
        result = task.apply(args=args, kwargs=kwargs)
    finally:
        task_retry.disconnect(note)
    return result, countdowns


def test_an_alert_is_retried_after_2_4_8_seconds_at_most_5_minutes_apart_then_marked_undelivered(db, settings):
    settings.ALERT_MAX_ATTEMPTS = 11
    AlertChannel.objects.create(name="dead", kind="webhook", address="http://127.0.0.1:1/hook")
    [delivery] = alerts.alerts_queue(_transition(make_service("x"), "down"))
    result, countdowns = retry_countdowns(alert_deliver_task, delivery.pk)
    assert countdowns == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 11) and result.successful()


def test_a_security_alert_is_retried_like_an_alert_and_given_up_after_the_attempts(db, settings):
    channel = AlertChannel.objects.create(name="dead", kind="webhook", address="http://127.0.0.1:1/hook")
    message = {"subject": "[SECURITY] test", "text": "test", "payload": {"text": "test"}}
    result, countdowns = retry_countdowns(security_alert_deliver_task, channel_id=channel.pk, **message)
    assert countdowns == [min(300, 2**retry) for retry in range(1, settings.ALERT_MAX_ATTEMPTS)]
    assert result.failed() and isinstance(result.result, DeliveryFailed)


def test_rollups_uptime_and_pruning(db, settings):
    check = make_check(make_service("hist"), kind="tcp", config={"host": "127.0.0.1", "port": 1})
    now = timezone.now().replace(minute=30)
    for minutes, outcome, latency in ((0, "up", 10), (1, "up", 30), (2, "down", None), (65, "up", 20)):
        CheckResult.objects.create(
            health_check=check, at=now - timedelta(minutes=minutes), outcome=outcome, latency_ms=latency
        )
    old = CheckResult.objects.create(
        health_check=check, at=now - timedelta(days=settings.CHECK_RESULTS_DAYS + 1), outcome="up"
    )
    assert history.rollups_refresh(since=now - timedelta(hours=3)) == 2
    assert history.rollups_refresh(since=now - timedelta(hours=3)) == 2  # idempotent
    current = CheckRollup.objects.get(health_check=check, hour=now.replace(minute=0, second=0, microsecond=0))
    assert (current.total, current.up, current.down, current.latency_avg_ms, current.latency_max_ms) == (
        3,
        2,
        1,
        20.0,
        30.0,
    )
    assert history.uptimes_by_service([check.service_id], windows=(1,))[check.service_id][1] == pytest.approx(75.0)
    raw, _ = history.results_prune(now=now)
    assert raw == 1 and not CheckResult.objects.filter(pk=old.pk).exists()


def test_delivery_status_for_unknown_channel_address_env(db, monkeypatch):
    monkeypatch.delenv("HOOK_URL", raising=False)
    AlertChannel.objects.create(name="envhook", kind="webhook", address_env="HOOK_URL")
    [delivery] = alerts.alerts_queue(_transition(make_service("y"), "down"))
    with pytest.raises(DeliveryFailed, match="HOOK_URL"):
        alerts.alert_deliver(delivery_id=delivery.pk)
    assert AlertDelivery.objects.get(pk=delivery.pk).last_error.startswith("no webhook URL")
