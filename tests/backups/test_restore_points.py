"""Restore points on the session's real primary, made as the real backup role (hadr_backup, no superuser): the
service, `manage.py restore_point`, `POST /api/restore-points` and the Backups page's form."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse
from playwright.sync_api import Page, expect

from hadr_portal.backups import restore_points
from hadr_portal.backups.models import BackupPolicy, RestorePoint, StorageTarget
from hadr_portal.backups.restore_points import (
    RestorePointFailed,
    RestorePointNameInvalid,
    RestorePointNameTaken,
    RestorePointNotRecoverable,
    RestorePointPrimaryUnavailable,
    restore_point_create,
)
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.topology import cluster_probe
from tests.conftest import make_user, sign_in
from tests.infra.plugin import Infrastructure

TOKEN = "deploy-pipeline-token-0123456789"
API = "/api/restore-points"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def archived(demo_cluster: Cluster) -> Iterator[Cluster]:
    """The demo cluster with a pgBackRest policy row (all a restore point asks of the catalog) and its
    primary known from a real probe."""
    path = Path(tempfile.mkdtemp(prefix="hadr-restore-points-"))
    storage = StorageTarget.objects.create(name="pitr-local", kind="local", config={"path": str(path)})
    BackupPolicy.objects.create(
        name="demo-pitr", cluster=demo_cluster, dbname="onboarding", storage=storage, engine="pgbackrest"
    )
    cluster_probe(demo_cluster)
    yield demo_cluster
    shutil.rmtree(path, ignore_errors=True)


def primary_sql(infra: Infrastructure, query: str, *params: object) -> object:
    with psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as conn:
        row = conn.execute(query, list(params)).fetchone()
    assert row is not None
    return row[0]


def wal_lsn(infra: Infrastructure) -> str:
    """Where the primary inserts WAL now (`pg_current_wal_lsn` is where it has written to: it may lag)."""
    return str(primary_sql(infra, "SELECT pg_current_wal_insert_lsn()::text"))


def lsn_between(infra: Infrastructure, low: str, lsn: str, high: str) -> bool:
    return bool(primary_sql(infra, "SELECT %s::pg_lsn > %s::pg_lsn AND %s::pg_lsn < %s::pg_lsn", lsn, low, lsn, high))


def wal_segment(infra: Infrastructure, lsn: str) -> int:
    return int(
        primary_sql(
            infra,
            "SELECT div(pg_wal_lsn_diff(%s::pg_lsn, '0/0'), setting::numeric) FROM pg_settings"
            " WHERE name = 'wal_segment_size'",
            lsn,
        )
    )


def entries(action: str = "restore_point.create") -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


# --- the service ------------------------------------------------------------------------------------------


def test_a_restore_point_is_a_real_wal_position_made_as_the_backup_role(archived, infra):
    dba = make_user("dba", Role.DBA)
    before = wal_lsn(infra)
    point = restore_point_create(
        cluster=archived, name="before-migration-42", actor=dba, source="web", note="add column users.plan"
    )
    after = wal_lsn(infra)
    assert lsn_between(infra, before, point.lsn, after), (before, point.lsn, after)
    assert wal_segment(infra, after) > wal_segment(infra, point.lsn), "the WAL was switched: archived at once"
    stored = RestorePoint.objects.get(cluster=archived, name="before-migration-42")
    assert (stored.lsn, stored.source, stored.requested_by, stored.note) == (
        point.lsn,
        "web",
        dba,
        "add column users.plan",
    )
    (entry,) = entries()
    assert (entry.actor_name, entry.outcome, entry.target) == ("dba", "success", "cluster:demo")
    assert point.lsn in entry.detail
    # the role the portal connected as: the cluster's backup role, no superuser, with just these two functions
    with psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, has_function_privilege(r.rolname, 'pg_create_restore_point(text)', 'EXECUTE'),"
            " has_function_privilege(r.rolname, 'pg_switch_wal()', 'EXECUTE'),"
            " has_function_privilege(r.rolname, 'pg_promote(boolean, integer)', 'EXECUTE')"
            " FROM pg_roles r WHERE r.rolname = %s",
            [archived.backup_user],
        ).fetchone()
    assert archived.backup_user == "hadr_backup" and row == (False, True, True, False)


def test_a_name_used_before_on_the_cluster_is_refused_clearly(archived, monkeypatch):
    first = restore_point_create(cluster=archived, name="before-deploy-7", actor=None, source="cli")
    monkeypatch.setattr(restore_points, "primary_restore_point_create", lambda *args, **kwargs: pytest.fail("asked"))
    with pytest.raises(RestorePointNameTaken, match="already has a restore point named 'before-deploy-7'"):
        restore_point_create(cluster=archived, name=" before-deploy-7 ", actor=None, source="cli")
    assert list(RestorePoint.objects.values_list("lsn", flat=True)) == [first.lsn]
    assert [entry.outcome for entry in entries()] == ["success", "refused"]


def test_two_requests_racing_for_one_name_make_one_point(archived, monkeypatch):
    """The check before the primary is asked can pass twice; the unique index decides, and the loser is told."""
    restore_point_create(cluster=archived, name="racing", actor=None, source="api")
    monkeypatch.setattr(restore_points, "_acceptable", lambda cluster, name, note: None)
    with pytest.raises(RestorePointNameTaken, match="racing"):
        restore_point_create(cluster=archived, name="racing", actor=None, source="api")
    assert RestorePoint.objects.filter(name="racing").count() == 1


@pytest.mark.parametrize("name", ["", "   ", "two words", "x" * 64, "naïve", "semi;colon", "quote'", "new\nline"])
def test_names_postgresql_and_the_wizard_could_not_both_use_are_refused(archived, name):
    with pytest.raises(RestorePointNameInvalid, match="letters, digits"):
        restore_point_create(cluster=archived, name=name, actor=None, source="cli")
    assert not RestorePoint.objects.exists()
    assert [entry.outcome for entry in entries()] == ["refused"]


def test_the_longest_name_and_every_allowed_character_pass(archived):
    name = ("Ab9._-:" * 10)[:63]
    assert restore_point_create(cluster=archived, name=name, actor=None, source="cli").name == name


def test_a_cluster_without_a_wal_archive_is_refused(demo_cluster):
    with pytest.raises(RestorePointNotRecoverable, match="Cluster demo has no WAL archive: a restore point there"):
        restore_point_create(cluster=demo_cluster, name="pointless", actor=None, source="cli")


def test_a_cluster_whose_primary_is_unknown_or_down_is_refused(archived):
    archived.nodes.update(last_probe={})
    with pytest.raises(RestorePointPrimaryUnavailable, match="no known primary"):
        restore_point_create(cluster=archived, name="nowhere", actor=None, source="cli")
    primary = archived.nodes.get(name="primary")
    primary.last_probe = {"reachable": False, "refused": True}
    primary.save()
    Cluster.objects.filter(pk=archived.pk).update(primary=primary)
    archived.refresh_from_db()
    with pytest.raises(RestorePointPrimaryUnavailable, match="primary, was down at the last check"):
        restore_point_create(cluster=archived, name="nowhere", actor=None, source="cli")


def test_an_unreachable_primary_is_named(archived):
    archived.nodes.filter(name="primary").update(port=1)
    with pytest.raises(RestorePointPrimaryUnavailable, match=r"Could not reach the primary of cluster demo, primary"):
        restore_point_create(cluster=archived, name="unreachable", actor=None, source="cli")
    assert not RestorePoint.objects.exists()
    assert [entry.outcome for entry in entries()] == ["failed"]


def test_a_replica_reported_as_primary_is_refused(archived):
    """A failover since the last check: the node the portal thinks is primary is in recovery."""
    archived.nodes.filter(name="primary").update(last_probe={"reachable": True, "role": "replica"})
    archived.nodes.filter(name="replica").update(last_probe={"reachable": True, "role": "primary"})
    with pytest.raises(RestorePointPrimaryUnavailable, match="replica is in recovery"):
        restore_point_create(cluster=archived, name="on-a-replica", actor=None, source="cli")


def test_a_backup_role_without_the_grant_is_told_the_grant(archived, infra):
    grant = "EXECUTE ON FUNCTION pg_create_restore_point(text) {} hadr_backup"
    infra.primary.psql(f"REVOKE {grant.format('FROM')}", dbname="onboarding")
    try:
        with pytest.raises(RestorePointFailed, match=r"GRANT EXECUTE ON FUNCTION pg_create_restore_point\(text\)"):
            restore_point_create(cluster=archived, name="no-grant", actor=None, source="cli")
    finally:
        infra.primary.psql(f"GRANT {grant.format('TO')}", dbname="onboarding")
    assert not RestorePoint.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER, Role.PRODUCT_MANAGER])
def test_roles_other_than_dba_and_devops_are_refused(archived, role):
    with pytest.raises(PermissionDenied):
        restore_point_create(cluster=archived, name="not-mine", actor=make_user("someone", role), source="web")
    assert not RestorePoint.objects.exists()
    (entry,) = entries()
    assert (entry.actor_name, entry.outcome) == ("someone", "refused")


def test_devops_may_create_one(archived):
    point = restore_point_create(cluster=archived, name="devops", actor=make_user("ops", Role.DEVOPS), source="web")
    assert point.lsn


# --- the HTTP API ---------------------------------------------------------------------------------------------


def api_post(body: object, token: str | None = TOKEN, *, raw: bytes | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else json.dumps(body).encode()
    response = Client().post(API, data=data, content_type="application/json", headers=headers)
    return response.status_code, json.loads(response.content)


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
def test_a_deploy_pipeline_creates_a_restore_point_with_its_token(archived, infra):
    before = wal_lsn(infra)
    status, body = api_post({"cluster": "demo", "name": "before-deploy-1234", "note": "release 1234"})
    assert status == 201, body
    assert set(body) == {"cluster", "name", "lsn", "created_at"}
    assert (body["cluster"], body["name"]) == ("demo", "before-deploy-1234")
    assert lsn_between(infra, before, body["lsn"], wal_lsn(infra))
    point = RestorePoint.objects.get(name="before-deploy-1234")
    assert (point.source, point.note, point.requested_by, point.lsn) == ("api", "release 1234", None, body["lsn"])
    (entry,) = entries()
    assert (entry.actor_name, entry.outcome, entry.address) == ("api", "success", "127.0.0.1")
    assert TOKEN not in json.dumps(entry.parameters) + entry.detail


@override_settings(RESTORE_POINT_TOKEN="")
def test_without_a_token_configured_the_api_is_off(archived):
    status, body = api_post({"cluster": "demo", "name": "x"}, token="")
    assert status == 403 and "set HADR_RESTORE_POINT_TOKEN" in body["error"]


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_a_missing_or_wrong_token_is_refused_before_the_body_is_read(archived, token):
    status, body = api_post(None, token=token, raw=b"{not json")
    assert status == 401 and "Authorization: Bearer" in body["error"]
    assert not RestorePoint.objects.exists()


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "expected a JSON object"),
        (b'["demo", "x"]', "expected a JSON object"),
        (b'{"cluster": "demo"}', "missing field(s): name"),
        (b'{"name": "x"}', "missing field(s): cluster"),
        (b'{"cluster": "demo", "name": 7}', "name: expected a string"),
        (b'{"cluster": "demo", "name": "x", "notes": "typo"}', "unknown field(s): notes"),
        (b'{"cluster": "demo", "name": "two words"}', "not a restore point name"),
        (b'{"cluster": "demo", "name": "x", "note": "' + b"n" * 201 + b'"}', "at most 200"),
    ],
)
def test_bad_requests_are_400_with_the_reason(archived, raw, message):
    status, body = api_post(None, raw=raw)
    assert status == 400 and message in body["error"], body
    assert not RestorePoint.objects.exists()


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
def test_an_unknown_cluster_is_404_and_a_name_used_before_409(archived):
    status, body = api_post({"cluster": "nope", "name": "before-deploy-1"})
    assert status == 404 and "no cluster named 'nope' (known: demo)" in body["error"]
    assert api_post({"cluster": "demo", "name": "before-deploy-1"})[0] == 201
    status, body = api_post({"cluster": "demo", "name": "before-deploy-1"})
    assert status == 409 and "already has a restore point named 'before-deploy-1'" in body["error"]


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
def test_a_cluster_without_archive_is_422(demo_cluster):
    status, body = api_post({"cluster": "demo", "name": "before-deploy-1"})
    assert status == 422 and "no WAL archive" in body["error"]


@override_settings(RESTORE_POINT_TOKEN=TOKEN)
def test_other_methods_are_405(db):
    for method in ("get", "put", "delete"):
        assert getattr(Client(), method)(API, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


# --- manage.py restore_point ----------------------------------------------------------------------------------


def test_the_command_prints_the_lsn(archived, capsys):
    call_command("restore_point", "demo", "before-hotfix", "--note", "hotfix 3")
    out = capsys.readouterr().out
    point = RestorePoint.objects.get(name="before-hotfix")
    assert f"Restore point before-hotfix created on demo at LSN {point.lsn}." in out
    assert (point.source, point.note) == ("cli", "hotfix 3")
    assert entries()[0].actor_name == "system"


def test_the_command_acts_as_a_named_account(archived):
    make_user("ops", Role.DEVOPS)
    make_user("watcher", Role.VIEWER)
    call_command("restore_point", "demo", "as-ops", "--user", "ops")
    assert RestorePoint.objects.get(name="as-ops").requested_by.username == "ops"
    with pytest.raises(CommandError, match="Only"):
        call_command("restore_point", "demo", "as-watcher", "--user", "watcher")


def test_the_command_says_what_is_wrong(archived):
    with pytest.raises(CommandError, match=r"No cluster named 'nope' \(known: demo\)"):
        call_command("restore_point", "nope", "x")
    with pytest.raises(CommandError, match="not a restore point name"):
        call_command("restore_point", "demo", "a;b")
    call_command("restore_point", "demo", "once")
    with pytest.raises(CommandError, match="already has a restore point named 'once'"):
        call_command("restore_point", "demo", "once")


# --- the Backups page -----------------------------------------------------------------------------------------


def test_the_backups_page_proposes_a_name_and_lists_the_points(archived, client_as):
    restore_point_create(cluster=archived, name="from-the-api", actor=None, source="api", note="release 9")
    html = client_as(Role.DBA).get(reverse("backups:list")).content.decode()
    assert 'id="restore-points-demo"' in html
    assert 'name="name" value="before-change-' in html and "Create restore point" in html
    assert "from-the-api" in html and "release 9" in html and "The HTTP API (a deploy pipeline)" in html


def test_the_button_creates_a_point_and_shows_it_in_place(archived, client_as):
    dba = client_as(Role.DBA)
    url = reverse("backups:restore-point-new", args=["demo"])
    response = dba.post(url, {"name": "before-change-by-hand", "note": "vacuum full"}, headers=HTMX)
    html = response.content.decode()
    point = RestorePoint.objects.get(name="before-change-by-hand")
    assert response.status_code == 200 and html.lstrip().startswith('<div class="card" id="restore-points-demo"')
    assert f"Restore point before-change-by-hand created on demo at {point.lsn}." in html
    assert point.lsn in html and dba.user.username in html
    assert (point.source, point.requested_by) == ("web", dba.user)
    assert "Create restore point" in html and 'name="name" value="before-change-' in html, "the form, ready again"


def test_a_refusal_is_shown_beside_the_form_with_what_was_typed(archived, client_as):
    dba = client_as(Role.DBA)
    url = reverse("backups:restore-point-new", args=["demo"])
    response = dba.post(url, {"name": "two words", "note": "kept"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and 'role="alert"' in html and "not a restore point name" in html
    assert 'value="two words"' in html and 'value="kept"' in html
    dba.post(url, {"name": "same"}, headers=HTMX)
    assert "already has a restore point named" in dba.post(url, {"name": "same"}, headers=HTMX).content.decode()


def test_the_button_without_javascript_goes_back_to_the_page(archived, client_as):
    dba = client_as(Role.DBA)
    url = reverse("backups:restore-point-new", args=["demo"])
    response = dba.post(url, {"name": "plain-post"}, follow=True)
    assert response.redirect_chain[-1][0].endswith("#restore-points-demo")
    assert "Restore point plain-post created on demo" in response.content.decode()
    response = dba.post(url, {"name": "plain-post"}, follow=True)
    assert "already has a restore point named" in response.content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_roles_that_may_not_see_no_form_and_are_refused(archived, client_as, role):
    client = client_as(role)
    html = client.get(reverse("backups:list")).content.decode()
    assert 'id="restore-points-demo"' in html and "Create restore point" not in html
    response = client.post(reverse("backups:restore-point-new", args=["demo"]), {"name": "sneaky"}, headers=HTMX)
    assert response.status_code == 403 and not RestorePoint.objects.exists()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_dba_creates_a_restore_point_from_the_backups_page(archived, live_server, page: Page, tmp_path):
    make_user("dora", Role.DBA)
    sign_in(page, live_server.url, "dora")
    page.get_by_role("link", name="Backups").click()
    section = page.locator("#restore-points-demo")
    expect(section.locator("input[name=name]")).to_have_value(re.compile(r"^before-change-\d{8}-\d{4}$"))
    section.locator("input[name=name]").fill("before-the-big-migration")
    section.locator("input[name=note]").fill("users.plan column")
    section.get_by_role("button", name="Create restore point").click()
    expect(section.get_by_role("status")).to_contain_text("Restore point before-the-big-migration created on demo")
    point = RestorePoint.objects.get(name="before-the-big-migration")
    row = section.locator("tbody tr", has_text="before-the-big-migration")
    expect(row).to_contain_text(point.lsn)
    expect(row).to_contain_text("dora")
    expect(row.locator("time")).to_have_text(re.compile(r"\((now|.+ ago)\)$"))  # the reader's time zone, how long ago
    section.locator("input[name=name]").fill("before-the-big-migration")
    section.get_by_role("button", name="Create restore point").click()
    expect(section.get_by_role("alert")).to_contain_text("already has a restore point named 'before-the-big-migration'")
    page.screenshot(path=tmp_path / "restore-points.png", full_page=True)
    assert RestorePoint.objects.count() == 1
