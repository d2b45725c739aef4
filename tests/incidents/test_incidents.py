"""Incidents against the real parts: check transitions, restart operations, SMTP and webhook escalation,
postmortem times, readiness from backup and failover records, priorities, hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.urls import reverse
from django.utils import timezone

from hadr_portal.adapters.notifiers import DeliveryFailed
from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.humanize import duration_text
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Failover
from hadr_portal.incidents import escalation, services
from hadr_portal.incidents.models import Contact, EscalationNotice, EscalationStep, Incident, RecoveryPriority
from hadr_portal.incidents.postmortem import incident_times
from hadr_portal.incidents.recovery import readiness_of
from hadr_portal.incidents.tasks import notice_deliver_task
from hadr_portal.status import engine
from hadr_portal.status.restart import restart_request
from tests.backups.test_backups import make_backup
from tests.conftest import make_user
from tests.infra.plugin import free_port
from tests.status.factories import http_target, make_check, make_service
from tests.status.test_end_to_end import Inbox
from tests.status.test_push_and_alerts import retry_countdowns


@pytest.fixture
def app(db):
    with http_target() as target:
        target.status = 500
        service = make_service(
            "shop",
            tier=1,
            display_name="Shop",
            runbook="service-failure",
            restart={"controller": "command", "argv": ["true"]},
        )
        check = make_check(service, "health", "http", {"url": target.url}, failures_before_down=1)
        yield service, check, target


def run_checks(check, capture) -> None:
    with capture(execute=True):
        engine.checks_run([check.pk])


def test_a_failing_service_opens_one_incident_and_failing_again_joins_it(app, django_capture_on_commit_callbacks):
    _, check, target = app
    run_checks(check, django_capture_on_commit_callbacks)
    incident = Incident.objects.get()
    assert (incident.status, incident.severity, incident.runbook, incident.role) == (
        "triggered",
        "sev1",
        "service-failure",
        "DevOps",
    )
    assert incident.began_at <= incident.opened_at
    target.status = 200
    run_checks(check, django_capture_on_commit_callbacks)
    target.status = 500
    run_checks(check, django_capture_on_commit_callbacks)
    assert Incident.objects.count() == 1
    texts = list(incident.timeline.values_list("text", flat=True))
    assert len([text for text in texts if "→ down" in text]) == 2 and "Failed again" in texts[-1]
    assert AuditEntry.objects.filter(action="incident.open", target=incident.target, actor_name="system").exists()


@pytest.mark.redis  # the restart is queued on commit
def test_the_timeline_links_a_restart_started_for_the_service(app, client_as, django_capture_on_commit_callbacks):
    _, check, _ = app
    run_checks(check, django_capture_on_commit_callbacks)
    incident = Incident.objects.get()
    devops = client_as(Role.DEVOPS)
    with django_capture_on_commit_callbacks(execute=True):
        devops.post(reverse("status:service-restart", kwargs={"name": "shop"}))
    operation = Operation.objects.get(kind="restart_service")
    entry = incident.timeline.get(operation=operation)
    assert "Restart" in entry.text or "restart" in entry.text
    html = devops.get(reverse("incidents:detail", kwargs={"pk": incident.pk})).content.decode()
    assert reverse("core:operation", kwargs={"pk": operation.pk}) in html
    # the runbook's restart button posts to the same restart view
    assert 'action="' + reverse("status:service-restart", kwargs={"name": "shop"}) + '"' in html
    # an operation on another service stays off this timeline
    other = make_service("other", restart={"controller": "command", "argv": ["true"]})
    with django_capture_on_commit_callbacks(execute=True):
        restart_request(service=other, actor=devops.user)
    assert incident.timeline.filter(kind="operation").count() == 1


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield inbox
    controller.stop()


def test_escalate_notifies_the_next_contact_and_a_dead_channel_is_retried_and_logged(smtp, client_as, settings):
    settings.ALERT_MAX_ATTEMPTS = 3
    with http_target() as hook:
        hook.status = 503  # the chat webhook is down
        first = Contact.objects.create(name="Mauricio", email="mauricio@example.com", webhook=hook.url, phone="+55 1")
        second = Contact.objects.create(name="Ana", email="ana@example.com")
        for position, contact in enumerate([first, second], 1):
            EscalationStep.objects.create(severity="sev2", position=position, contact=contact)
        person = client_as(Role.DEVELOPER)
        person.post(reverse("incidents:open"), {"title": "Sign-ups fail", "severity": "sev2"})
        incident = Incident.objects.get()
        person.post(reverse("incidents:escalate", kwargs={"pk": incident.pk}))
        notices = {notice.channel: notice for notice in EscalationNotice.objects.filter(contact=first)}
        assert set(notices) == {"email", "webhook"}
        escalation.notice_deliver(notice_id=notices["email"].pk)
        assert f"Incident #{incident.pk}: Sign-ups fail" in smtp.messages[0]
        for _ in range(2):
            with pytest.raises(DeliveryFailed):
                escalation.notice_deliver(notice_id=notices["webhook"].pk)
        webhook = escalation.notice_deliver(notice_id=notices["webhook"].pk)
        assert (webhook.status, webhook.attempts, len(hook.received)) == ("failed", 3, 3)
        assert hook.received[0]["incident"] == incident.pk
    texts = list(incident.timeline.values_list("text", flat=True))
    assert any("Escalated to Mauricio" in text for text in texts)
    assert any("Mauricio notified by email" in text for text in texts)
    assert any("Could not reach Mauricio by webhook after 3 attempts: HTTP 503" in text for text in texts)
    # the workflow goes on: the next escalation reaches the next person, acknowledging works
    person.post(reverse("incidents:escalate", kwargs={"pk": incident.pk}))
    assert EscalationNotice.objects.filter(contact=second).exists()
    person.post(reverse("incidents:status", kwargs={"pk": incident.pk}), {"status": "acknowledged"})
    incident.refresh_from_db()
    assert incident.status == "acknowledged"


def test_a_notice_is_retried_like_an_alert_then_marked_undelivered(db, settings):
    settings.ALERT_MAX_ATTEMPTS = 4
    contact = Contact.objects.create(name="Rita", webhook="http://127.0.0.1:1/hook")
    EscalationStep.objects.create(severity="sev1", position=1, contact=contact)
    incident = services.incident_open(title="Down", severity="sev1", service=None, actor=make_user("ops", Role.DEVOPS))
    [notice] = escalation.incident_escalate(incident=incident, actor=None)
    result, countdowns = retry_countdowns(notice_deliver_task, notice.pk)
    assert countdowns == [2, 4, 8]
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("failed", 4) and result.successful()
    assert incident.timeline.filter(text__startswith="Could not reach Rita by webhook after 4 attempts").exists()


def test_reminders_escalate_until_someone_acknowledges(db, settings):
    settings.ESCALATION_REMINDER_MINUTES = 5
    for position, name in enumerate(["A", "B"], 1):
        EscalationStep.objects.create(severity="sev1", position=position, contact=Contact.objects.create(name=name))
    user = make_user("ops", Role.DEVOPS)
    incident = services.incident_open(title="Down", severity="sev1", service=None, actor=user)
    later = timezone.now() + timedelta(minutes=6)
    assert escalation.escalations_remind(now=later) == [incident]
    assert escalation.escalations_remind(now=later) == []  # just escalated
    services.incident_status_set(incident=incident, status="acknowledged", actor=user)
    assert escalation.escalations_remind(now=later + timedelta(minutes=10)) == []


def test_resolve_writes_a_postmortem_whose_times_match_the_records(app, client_as, django_capture_on_commit_callbacks):
    service, check, target = app
    run_checks(check, django_capture_on_commit_callbacks)
    incident = Incident.objects.get()
    person = client_as(Role.DEVOPS)
    person.post(reverse("incidents:status", kwargs={"pk": incident.pk}), {"status": "acknowledged"})
    target.status = 200
    run_checks(check, django_capture_on_commit_callbacks)
    person.post(reverse("incidents:status", kwargs={"pk": incident.pk}), {"status": "resolved"})
    incident.refresh_from_db()
    down = service.transitions.get(to_state="down")
    up = service.transitions.get(to_state="up")
    times = incident_times(incident)
    assert (times.detected_at, times.recovered_at) == (down.at, up.at)
    assert incident.mitigated_at and incident.resolved_at and incident.acknowledged_at
    text = incident.postmortem
    assert (
        f"| time to recover (began → recovered) | {duration_text((up.at - incident.began_at).total_seconds())}" in text
    )
    assert "within the RTO" in text and "| data lost | none recorded" in text and "## Timeline" in text
    download = person.get(reverse("incidents:postmortem", kwargs={"pk": incident.pk}), {"download": "1"})
    assert download["Content-Disposition"] == f'attachment; filename="incident-{incident.pk}-postmortem.md"'
    assert download.content.decode() == text
    person.post(reverse("incidents:postmortem", kwargs={"pk": incident.pk}), {"text": "# Edited\n"})
    incident.refresh_from_db()
    assert incident.postmortem == "# Edited\n"


def test_hostile_titles_notes_and_service_names_are_inert(client_as):
    vector = '<img src=x onerror="alert(1)"><script>alert(2)</script><a href="javascript:alert(3)">x</a>'
    make_service("evil", display_name=vector, runbook="service-failure")
    person = client_as(Role.DEVOPS)
    person.post(reverse("incidents:open"), {"title": vector, "severity": "sev3", "service": "evil"})
    incident = Incident.objects.get()
    person.post(reverse("incidents:note", kwargs={"pk": incident.pk}), {"text": vector})
    person.post(reverse("incidents:status", kwargs={"pk": incident.pk}), {"status": "resolved"})
    for url in (
        reverse("incidents:detail", kwargs={"pk": incident.pk}),
        reverse("incidents:list"),
        reverse("dashboard"),
    ):
        html = person.get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html and 'href="javascript:' not in html, url
    assert "&lt;script&gt;" in person.get(reverse("incidents:detail", kwargs={"pk": incident.pk})).content.decode()


def test_a_viewer_reads_incidents_but_changes_nothing(client_as):
    user = make_user("dev", Role.DEVELOPER)
    incident = services.incident_open(title="Slow", severity="sev3", service=None, actor=user)
    viewer = client_as(Role.VIEWER)
    assert viewer.get(reverse("incidents:detail", kwargs={"pk": incident.pk})).status_code == 200
    assert (
        viewer.post(reverse("incidents:status", kwargs={"pk": incident.pk}), {"status": "resolved"}).status_code == 403
    )
    fragment = viewer.get(reverse("incidents:detail", kwargs={"pk": incident.pk}), headers={"HX-Request": "true"})
    assert 'id="timeline"' in fragment.content.decode() and "<h1" not in fragment.content.decode()


def test_product_manager_reorders_priorities_and_a_viewer_cannot(client_as):
    for name in ("shop", "blog", "api"):
        make_service(name)
    manager = client_as(Role.PRODUCT_MANAGER)
    response = manager.post(
        reverse("incidents:priorities"),
        {"service": ["api", "shop", "blog"], "reason-api": "customers pay through it"},
    )
    assert response.status_code == 302
    order = list(RecoveryPriority.objects.values_list("service__name", "reason"))
    assert order[:3] == [("api", "customers pay through it"), ("shop", ""), ("blog", "")]
    moved = manager.post(
        reverse("incidents:priority-move", kwargs={"name": "blog"}), {"direction": "up"}, headers={"HX-Request": "true"}
    )
    assert moved.status_code == 200 and 'id="priorities"' in moved.content.decode()
    assert list(RecoveryPriority.objects.values_list("service__name", flat=True))[:3] == ["api", "blog", "shop"]
    viewer = client_as(Role.VIEWER)
    assert viewer.post(reverse("incidents:priorities"), {"service": ["blog"]}).status_code == 403
    assert viewer.post(reverse("incidents:priority-move", kwargs={"name": "api"})).status_code == 403
    assert "customers pay through it" in viewer.get(reverse("incidents:priorities")).content.decode()
    assert AuditEntry.objects.filter(action="priorities.save").count() == 2


def test_readiness_colours_come_from_backup_and_failover_records(demo_cluster, client_as, tmp_path):
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    policy = BackupPolicy.objects.create(
        name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage
    )
    database = make_service("demo-db-primary", kind="database", rpo_minutes=60, rto_minutes=10)
    make_check(database, "postgres", "postgres", node=demo_cluster.nodes.get(name="primary"))
    make_check(database, "backup", "backup", policy=policy)
    assert readiness_of(database).rpo.color == "red"  # no good backup at all
    assert readiness_of(database).rto.color == "amber"  # never measured
    backup = make_backup(policy, key="b1")
    backup.started_at = timezone.now() - timedelta(minutes=90)
    backup.save()
    assert readiness_of(database).rpo.color == "amber"  # 90 min against 60
    make_backup(policy, key="b2")
    operation = Operation.objects.create(kind="failover", target=demo_cluster.target, status="succeeded")
    now = timezone.now()
    Failover.objects.create(
        operation=operation,
        cluster=demo_cluster,
        new_primary="replica",
        old_primary_state="down",
        writable_at=now,
        seconds_to_writable=2.5,
    )
    row = readiness_of(database)
    assert (row.rpo.color, row.rto.color, row.rto.seconds, row.rto.source) == ("green", "green", 2.5, "last failover")
    Failover.objects.create(
        operation=Operation.objects.create(kind="failover", target="cluster:x", status="succeeded"),
        cluster=demo_cluster,
        new_primary="primary",
        old_primary_state="down",
        writable_at=now + timedelta(seconds=1),
        seconds_to_writable=1200,
    )
    assert readiness_of(database).color == "red"  # 20 min against an RTO of 10
    html = client_as(Role.VIEWER).get(reverse("incidents:readiness")).content.decode()
    assert 'id="readiness-demo-db-primary"' in html and "badge-red" in html
    stateless = readiness_of(make_service("web"))
    assert stateless.rpo.color == "none" and stateless.color == "amber"  # RTO never measured


@pytest.mark.django_db
def test_a_stateless_service_s_rto_is_its_last_outage_from_down_to_up():
    from hadr_portal.status.models import Transition

    web = make_service("web", rto_minutes=5)
    now = timezone.now()
    Transition.objects.create(service=web, from_state="up", to_state="down", at=now - timedelta(minutes=30))
    Transition.objects.create(service=web, from_state="down", to_state="up", at=now - timedelta(minutes=27))
    rto = readiness_of(web).rto
    assert (rto.seconds, rto.source, rto.color) == (180, "last outage, down → up", "green")
    Transition.objects.create(service=web, from_state="up", to_state="down", at=now - timedelta(minutes=20))
    Transition.objects.create(service=web, from_state="down", to_state="up", at=now - timedelta(minutes=10))
    rto = readiness_of(web).rto
    assert (rto.seconds, rto.color) == (600, "red")  # the latest outage, 10 min against an RTO of 5
