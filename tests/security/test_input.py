"""Finding 7: bad input is a clear 400 (a form error on forms), never a 500, never silently cut or accepted.

Each test is the attack as it arrives: an HTTP request against the portal (real PostgreSQL, the whole middleware
stack), as the role that would send it. The push endpoints are driven over a real socket (live_server + httpx).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory
from django.urls import reverse

from hadr_portal.backups.models import BackupPolicy, Restore, StorageTarget
from hadr_portal.core import pushbody
from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.incidents.models import Incident, RecoveryPriority, TimelineEntry
from hadr_portal.metrics.models import Funnel
from hadr_portal.status.models import Check, CheckResult, Service
from hadr_portal.status.push import MESSAGE_MAX_LENGTH
from tests.conftest import make_user
from tests.status.factories import SERVICE_FORM_FIELDS, make_check, make_service

NUL_WORDS = "NUL character"


# --- NUL bytes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/audit/?actor=ad%00min",
        "/audit/?target=%00",
        "/operations/?q=restore%00",
        "/errors/?q=x%00y",
        "/backups/?policy=nightly%00",
        "/incidents/?status=open%00",
        "/runbooks/?q=fail%00over",
        "/metrics/overview/?range=7d%00",
    ],
)
def test_a_nul_in_a_filter_is_a_400_not_a_500(client_as, url):
    response = client_as(superuser=True).get(url)
    assert response.status_code == 400, response.content[:300]
    assert NUL_WORDS in response.content.decode()


def test_a_nul_in_a_form_field_is_a_400_and_nothing_is_stored(client_as):
    developer = client_as(Role.DEVELOPER)
    response = developer.post(reverse("incidents:open"), {"title": "sign-ups\x00fail", "severity": "sev2"})
    assert response.status_code == 400 and NUL_WORDS in response.content.decode()
    response = developer.post(reverse("incidents:open"), {"title": "sign-ups fail", "sev\x00erity": "sev2"})
    assert response.status_code == 400
    assert not Incident.objects.exists()


def test_a_nul_in_the_path_is_a_400(db):
    response = Client().get("/push/heartbeat/abc%00def")
    assert response.status_code == 400 and NUL_WORDS in response.content.decode()


def test_a_nul_in_a_multipart_form_is_a_400(client_as):
    response = client_as(Role.DEVELOPER).post(
        reverse("incidents:open"), {"title": "x\x00", "severity": "sev2"}, format="multipart"
    )
    assert response.status_code == 400


# --- Push bodies: the token first, then size and depth --------------------------------------------


@pytest.fixture
def host_check(db) -> Check:
    return make_check(make_service("db-host", kind="host"), "pushed", kind="host_push", failures_before_down=1)


@pytest.fixture
def body_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a push body was read (the reader is wrapped; it still works)."""
    calls: list[int] = []
    real = pushbody.body_bytes

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pushbody, "body_bytes", counted)
    return calls


@pytest.fixture
def portal(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.django_db(transaction=True)
def test_deep_json_without_a_token_is_refused_before_the_body_is_read(portal, body_reads):
    make_check(make_service("db-host", kind="host"), "pushed", kind="host_push")
    response = portal.post("/push/host", content=deep(100_000), headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and "token" in response.json()["error"]
    response = portal.post(
        "/push/host",
        content=deep(100_000),
        headers={"Content-Type": "application/json", "Authorization": "Bearer not-the-token"},
    )
    assert response.status_code == 401
    assert body_reads == [], "the body of a request without a valid token was read"


@pytest.mark.django_db(transaction=True)
def test_deep_json_with_a_valid_token_is_a_400_naming_the_limit(portal, settings, body_reads):
    check = make_check(make_service("db-host", kind="host"), "pushed", kind="host_push")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {check.token}"}
    settings.PUSH_MAX_BYTES = 1024 * 1024  # so that it is the depth, not the size, that refuses it
    response = portal.post("/push/host", content=deep(100_000), headers=headers)
    assert response.status_code == 400, response.text
    assert "deeper than 10 levels" in response.json()["error"] and "HADR_PUSH_MAX_DEPTH" in response.json()["error"]
    within = {"cpu": 1, "memory": 2, "disks": {"/": 3}, "note": [[[[[[1]]]]]]}  # 7 levels: accepted
    assert portal.post("/push/host", content=json.dumps(within), headers=headers).status_code == 200
    assert body_reads == [1, 1]
    assert CheckResult.objects.filter(health_check=check).count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_oversize_body_is_a_413(portal):
    check = make_check(make_service("db-host", kind="host"), "pushed", kind="host_push")
    headers = {"Content-Type": "application/json", "X-HADR-Token": check.token}
    big = json.dumps({"cpu": 1, "memory": 1, "padding": "x" * 70_000})
    response = portal.post("/push/host", content=big, headers=headers)
    assert response.status_code == 413 and "65536 bytes (HADR_PUSH_MAX_BYTES)" in response.json()["error"]
    # 100 000 levels are 200 kB: the size alone refuses them, before any scan
    assert portal.post("/push/host", content=deep(100_000), headers=headers).status_code == 413
    heartbeat = make_check(make_service("job", kind="job"), "cron", kind="heartbeat", config={"period_seconds": 60})
    response = portal.post("/push/heartbeat", content=b"x" * 70_000, headers={"X-HADR-Token": heartbeat.token})
    assert response.status_code == 413
    assert not CheckResult.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_funnel_counts_have_the_same_limits(portal, body_reads):
    funnel = Funnel.objects.create(name="onboarding", source="push", steps=["signed_up", "activated"])
    url = f"/api/funnels/{funnel.name}/counts"
    assert portal.post(url, content=deep(100_000)).status_code == 401
    assert body_reads == []
    headers = {"Authorization": f"Bearer {funnel.token}", "Content-Type": "application/json"}
    assert portal.post(url, content=deep(100_000), headers=headers).status_code == 413
    response = portal.post(url, content=b'{"counts": ' + deep(20) + b"}", headers=headers)
    assert response.status_code == 400 and "deeper than" in response.json()["error"]
    response = portal.post(url, content=b'{"day": "2025-01-31\\u0000", "counts": {"signed_up": 1}}', headers=headers)
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    response = portal.post(url, content=b'{"day": "2025-01-31", "counts": {"signed_up": NaN}}', headers=headers)
    assert response.status_code == 400
    response = portal.post(url, content=b'{"hour": "0001-01-01T00:00:00+14:00", "counts": {"signed_up": 1}}',
                           headers=headers)  # fmt: skip
    assert response.status_code == 400 and "out of range" in response.json()["error"]


# --- Tokens in a header --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_heartbeat_and_host_push_take_the_token_in_a_header(portal):
    heartbeat = make_check(make_service("nightly", kind="job"), "cron", kind="heartbeat", config={"period_seconds": 60})
    response = portal.post("/push/heartbeat", content=b"backup done", headers={"X-HADR-Token": heartbeat.token})
    assert response.status_code == 200 and response.text == "OK\n"
    response = portal.get("/push/heartbeat", headers={"Authorization": f"Bearer {heartbeat.token}"})
    assert response.status_code == 200
    assert portal.get(f"/push/heartbeat/{heartbeat.token}").status_code == 200  # cron's one-line curl
    assert portal.get("/push/heartbeat", headers={"X-HADR-Token": "guess"}).status_code == 404
    assert portal.get("/push/heartbeat").status_code == 401
    heartbeat.refresh_from_db()
    assert heartbeat.state == "up"
    assert CheckResult.objects.filter(health_check=heartbeat, message="backup done").exists()

    host = make_check(make_service("db-host", kind="host"), "pushed", kind="host_push", failures_before_down=1)
    body = json.dumps({"cpu": 10, "memory": 20, "disks": {"/": 30}})
    response = portal.post("/push/host", content=body, headers={"X-HADR-Token": host.token})
    assert response.status_code == 200 and response.json()["state"] == "up"


# --- Cardinality ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_thousand_disk_keys_are_refused_and_make_no_metrics_series(portal, settings):
    settings.METRICS_TOKEN = "scrape-token"
    check = make_check(make_service("db-host", kind="host"), "pushed", kind="host_push", failures_before_down=1)
    headers = {"Authorization": f"Bearer {check.token}", "Content-Type": "application/json"}
    scrape = {"Authorization": "Bearer scrape-token"}

    def disk_series() -> list[str]:
        text = portal.get("/metrics", headers=scrape).text
        return [line for line in text.splitlines() if line.startswith("hadr_host_disk_ratio{")]

    ok = portal.post("/push/host", content=json.dumps({"cpu": 1, "memory": 2, "disks": {"/": 3, "/data": 4}}),
                     headers=headers)  # fmt: skip
    assert ok.status_code == 200
    assert len(disk_series()) == 2

    flood = {"cpu": 1, "memory": 2, "disks": {f"/mnt/d{number}": 5 for number in range(1000)}}
    response = portal.post("/push/host", content=json.dumps(flood), headers=headers)
    assert response.status_code == 400
    assert "1000 given, at most 32" in response.json()["error"] and "HADR_PUSH_MAX_DISKS" in response.json()["error"]
    assert len(disk_series()) == 2

    for bad in ("relative/path", "/" + "a" * 300, "/mnt/\nnewline"):
        body = json.dumps({"cpu": 1, "memory": 2, "disks": {bad: 5}})
        response = portal.post("/push/host", content=body, headers=headers)
        assert response.status_code == 400 and "not a mount point" in response.json()["error"]
    assert len(disk_series()) == 2


# --- Forms: duplicates, dates, references, paths, lengths ----------------------------------------


def test_a_duplicate_check_name_is_a_form_error(client_as):
    service = make_service("shop", display_name="Shop")
    make_check(service, "health", config={"url": "http://127.0.0.1:9/"})
    form = {
        "name": "health",
        "kind": "tcp",
        "enabled": "on",
        "interval_seconds": "30",
        "timeout_seconds": "2",
        "failures_before_down": "2",
        "host": "127.0.0.1",
        "port": "5432",
    }
    response = client_as(Role.DEVOPS).post(reverse("status:check-new", kwargs={"name": "shop"}), form)
    assert response.status_code == 400
    assert "Shop already has a check named health." in response.content.decode()
    assert service.checks.count() == 1


def test_a_check_can_be_saved_again_under_its_own_name(client_as):
    service = make_service("shop")
    check = make_check(service, "db", kind="tcp", config={"host": "127.0.0.1", "port": 5432})
    form = {
        "name": "db",
        "kind": "tcp",
        "interval_seconds": "60",
        "timeout_seconds": "2",
        "failures_before_down": "2",
        "host": "127.0.0.1",
        "port": "5433",
    }
    url = reverse("status:check-edit", kwargs={"name": "shop", "check_id": check.pk})
    assert client_as(Role.DEVOPS).post(url, form).status_code == 302
    check.refresh_from_db()
    assert check.config["port"] == 5433


@pytest.fixture
def draft_restore(demo_cluster, tmp_path) -> Callable[[Client], Restore]:
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    policy = BackupPolicy.objects.create(name="nightly", cluster=demo_cluster, dbname="onboarding", storage=storage)

    def start(client: Client) -> Restore:
        client.post(reverse("backups:restore-start", kwargs={"name": policy.name}))
        return Restore.objects.latest("pk")

    return start


@pytest.mark.parametrize("when", ["2025-02-30 10:00", "2025-01-31 25:00", "2025-13-01T10:00", "0001-01-01T00:00+14:00"])
def test_an_impossible_date_in_the_restore_wizard_is_a_form_error(client_as, draft_restore, when):
    dba = client_as(Role.DBA)
    restore = draft_restore(dba)
    url = reverse("backups:restore-step", kwargs={"pk": restore.pk, "step": "situation"})
    response = dba.post(url, {"situation": "corruption", "incident_at": when})
    assert response.status_code == 400, response.content[:300]
    assert "not a date and time that exists" in response.content.decode() or "Give a date" in response.content.decode()
    restore.refresh_from_db()
    assert restore.incident_at is None


@pytest.mark.parametrize("url", ["/audit/?until=9999-12-31", "/errors/?until=9999-12-31", "/audit/?since=0001-01-01"])
def test_the_last_day_of_the_calendar_in_a_filter_is_no_500(client_as, url):
    assert client_as(superuser=True).get(url).status_code == 200


def _service_form(**changes: str) -> dict[str, str]:
    return {
        **SERVICE_FORM_FIELDS,
        "runbook": "",
        "restart_controller": "none",
        **changes,
    }


@pytest.mark.parametrize("runbook", ["../../etc/passwd", "/etc/passwd", "service-failure/../../x", "no-such-runbook"])
def test_a_runbook_outside_runbooks_is_a_form_error(client_as, runbook):
    make_service("shop", display_name="Shop")
    response = client_as(Role.DEVOPS).post(
        reverse("status:service-edit", kwargs={"name": "shop"}), _service_form(runbook=runbook)
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "not a runbook&#x27;s name" in page or "There is no runbook" in page
    assert Service.objects.get(name="shop").runbook == ""
    ok = client_as(Role.DEVOPS).post(
        reverse("status:service-edit", kwargs={"name": "shop"}), _service_form(runbook="service-failure")
    )
    assert ok.status_code == 302 and Service.objects.get(name="shop").runbook == "service-failure"


def test_the_catalog_import_refuses_runbook_paths_and_nul(db):
    service = {"name": "shop", "display_name": "Shop", "kind": "web", "runbook": "../../etc/passwd"}
    with pytest.raises(CatalogError) as refused:
        catalog_import({"services": [service]})
    assert "services[0] (shop).runbook: '../../etc/passwd' is not a runbook's name" in str(refused.value)
    with pytest.raises(CatalogError) as refused:
        catalog_import({"services": [{**service, "runbook": "", "display_name": "Sh\x00op"}]})
    assert "services[0] (shop).display_name: contains a NUL character" in str(refused.value)
    assert not Service.objects.exists()


def test_an_unknown_service_on_an_incident_is_refused(client_as):
    response = client_as(Role.DEVELOPER).post(
        reverse("incidents:open"),
        {"title": "Shop is down", "severity": "sev2", "service": "no-such-service"},
        follow=True,
    )
    assert "No service &#x27;no-such-service&#x27; in the catalog" in response.content.decode()
    assert not Incident.objects.exists()


def test_an_unknown_cluster_or_another_clusters_node_on_a_funnel_is_an_admin_form_error(db):
    request = RequestFactory().get("/")
    request.user = make_user("root", superuser=True)
    form_class = site._registry[Funnel].get_form(request)
    ours = Cluster.objects.create(name="ours", dbname="app")
    theirs_cluster = Cluster.objects.create(name="theirs", dbname="app")
    theirs = Node.objects.create(cluster=theirs_cluster, name="b", host="h", port=1)
    data = {
        "name": "onboarding",
        "source": "query",
        "steps": '["signed_up", "activated"]',
        "cluster": "9999",
        "query": "SELECT step, hour, count FROM t WHERE created_at >= %(since)s",
        "interval_seconds": "300",
        "timeout_seconds": "10",
        "token": "t",
    }
    form = form_class(data)
    assert not form.is_valid()
    assert "Select a valid choice" in form.errors["cluster"][0]
    form = form_class(data | {"cluster": str(ours.pk), "node": str(theirs.pk)})
    assert not form.is_valid()
    assert form.errors["node"] == ["Node theirs/b is not in cluster ours."]


def test_too_long_is_an_error_never_a_cut(client_as):
    developer = client_as(Role.DEVELOPER)
    response = developer.post(reverse("incidents:open"), {"title": "x" * 201, "severity": "sev2"}, follow=True)
    assert "The title is 201 characters long; at most 200." in response.content.decode()
    assert not Incident.objects.exists()

    developer.post(reverse("incidents:open"), {"title": "Shop is down", "severity": "sev2"})
    incident = Incident.objects.get()
    response = developer.post(reverse("incidents:note", kwargs={"pk": incident.pk}), {"text": "n" * 4001}, follow=True)
    assert "The note is 4001 characters long; at most 4000" in response.content.decode()
    assert not TimelineEntry.objects.filter(incident=incident, kind="note").exists()

    make_service("shop")
    manager = client_as(Role.PRODUCT_MANAGER)
    response = manager.post(
        reverse("incidents:priorities"), {"service": ["shop"], "reason-shop": "r" * 301}, follow=True
    )
    assert "The reason for shop is 301 characters long; at most 300." in response.content.decode()
    assert not RecoveryPriority.objects.exists()


def test_a_heartbeat_message_too_long_is_a_400_not_a_cut(db):
    check = make_check(make_service("job", kind="job"), "cron", kind="heartbeat", config={"period_seconds": 60})
    client = Client()
    url = reverse("status:heartbeat", kwargs={"token": check.token})
    response = client.post(url, data="m" * (MESSAGE_MAX_LENGTH + 1), content_type="text/plain")
    assert response.status_code == 400
    assert f"at most {MESSAGE_MAX_LENGTH} are kept" in response.content.decode()
    assert not CheckResult.objects.exists()
    response = client.post(url, data="m" * MESSAGE_MAX_LENGTH, content_type="text/plain")
    assert response.status_code == 200
    assert CheckResult.objects.get().message == "m" * MESSAGE_MAX_LENGTH
    response = client.post(url, data="done\x00", content_type="text/plain")
    assert response.status_code == 400 and "NUL" in response.content.decode()


# --- The reader itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[[[[[[[[[[[[[["}', 1),
        (b'["\\"[[[[", [[]]]', 3),
        (deep(50_000), 50_000),
    ],
)
def test_json_depth_counts_brackets_outside_strings_without_recursion(raw, depth):
    assert pushbody.json_depth(raw) == depth


def test_json_depth_stops_counting_past_the_limit():
    assert pushbody.json_depth(deep(1_000_000), stop_after=10) == 11


def test_the_token_comes_from_a_header_first():
    factory = RequestFactory()
    assert pushbody.push_token(factory.get("/", headers={"Authorization": "Bearer abc"}), "url") == "abc"
    assert pushbody.push_token(factory.get("/", headers={"X-HADR-Token": "xyz"}), "url") == "xyz"
    assert pushbody.push_token(factory.get("/"), "url") == "url"
    assert pushbody.push_token(factory.get("/", headers={"X-HADR-Token": "t" * 65})) == ""
