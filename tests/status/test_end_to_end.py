"""The acceptance path with real processes: the demo application dies, the engine notices through
Celery beat and workers, the transition is recorded, alerts reach an SMTP sink and a webhook;
the application comes back, and so does a recovery alert."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import close_old_connections

from hadr_portal.status.models import AlertChannel, AlertDelivery, Service, Transition
from tests.conftest import ROOT, wait_for
from tests.infra.plugin import free_port
from tests.status.factories import http_target, make_check, make_service

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode(errors="replace"))
        return "250 OK"


@pytest.fixture
def smtp_sink(monkeypatch) -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("HADR_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("HADR_EMAIL_HOST", "127.0.0.1")
    monkeypatch.setenv("HADR_EMAIL_PORT", str(port))
    yield inbox
    controller.stop()


def start_demo_app(infra, port: int) -> subprocess.Popen[bytes]:
    dsn = (
        f"host=127.0.0.1 port={infra.primary.port} dbname=onboarding user=postgres "
        f"password={infra.demo_password} connect_timeout=3"
    )
    env = {**os.environ, "ONBOARDING_DSN": dsn, "ONBOARDING_PORT": str(port), "ONBOARDING_RATE": "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "demo.onboarding"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def beat(monkeypatch, tmp_path: Path) -> Iterator[None]:
    from django.db import connection

    env = dict(os.environ)
    env["HADR_DATABASE_URL"] = env["HADR_DATABASE_URL"].rsplit("/", 1)[0] + f"/{connection.settings_dict['NAME']}"
    env["HADR_CHECK_TICK_SECONDS"] = "1"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hadr_portal",
            "beat",
            "-s",
            str(tmp_path / "schedule"),
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=15)


def state_of(name: str) -> str:
    close_old_connections()
    return Service.objects.get(name=name).state


def test_stopped_demo_app_goes_red_alerts_and_recovers(infra, smtp_sink, start_worker, beat):
    port = free_port()
    app = start_demo_app(infra, port)
    with http_target() as webhook:
        AlertChannel.objects.create(name="mail", kind="email", address="oncall@example.com")
        AlertChannel.objects.create(name="hook", kind="webhook", address=webhook.url + "/alerts")
        service = make_service("onboarding-app", tier=1, display_name="Onboarding application")
        make_check(
            service,
            config={"url": f"http://127.0.0.1:{port}/health", "keyword": '"status": "ok"'},
            interval_seconds=2,
            timeout_seconds=1.5,
            failures_before_down=2,
        )
        start_worker("checks,default")
        try:
            wait_for(lambda: state_of("onboarding-app") == "up", timeout=40, message="never came up")
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=10)
            stopped = time.monotonic()
            # 2 check intervals + the failure threshold, plus tick and scheduling slack
            wait_for(lambda: state_of("onboarding-app") == "down", timeout=2 * 2 + 2 * 2 + 6, message="never went down")
            detected = time.monotonic() - stopped
            down = Transition.objects.get(service__name="onboarding-app", to_state="down")
            assert down.from_state == "up" and "health:" in down.reason
            wait_for(
                lambda: AlertDelivery.objects.filter(transition=down, status="sent").count() == 2,
                timeout=20,
                message="alerts not delivered",
            )
            assert any("[DOWN] Onboarding application is DOWN" in m for m in smtp_sink.messages)
            assert webhook.received[0]["to_state"] == "down"

            app = start_demo_app(infra, port)
            wait_for(lambda: state_of("onboarding-app") == "up", timeout=30, message="never recovered")
            recovery = Transition.objects.filter(service__name="onboarding-app", to_state="up").first()
            wait_for(lambda: AlertDelivery.objects.filter(transition=recovery, status="sent").count() == 2, timeout=20)
            assert any("[UP] Onboarding application recovered" in m for m in smtp_sink.messages)
            print(f"down detected {detected:.1f} s after the app stopped")
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=10)
