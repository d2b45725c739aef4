"""Runbooks: every one renders with sound front matter and real actions; hostile Markdown stays inert."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hadr_portal.core.catalog import catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.demo.catalog import demo_catalog
from hadr_portal.runbooks import documents
from hadr_portal.runbooks.actions import runbook_segments
from hadr_portal.runbooks.documents import BLOCK_ACTIONS, runbook_load, runbook_parse, runbooks_all
from hadr_portal.status.models import Service
from tests.conftest import make_user

SCENARIOS = {
    "service-failure",
    "database-problem",
    "data-corruption",
    "lost-environment",
    "restore-by-hand",
    "missed-backups",
}


@pytest.fixture
def demo(db):
    catalog_import(demo_catalog({"HADR_DEMO_NODES": "primary=127.0.0.1:5441,replica=127.0.0.1:5442"}))


def test_every_runbook_renders_with_front_matter_and_real_actions(demo):
    runbooks = runbooks_all()
    assert SCENARIOS <= {runbook.scenario for runbook in runbooks}
    services = set(Service.objects.values_list("name", flat=True))
    for runbook in runbooks:
        assert not runbook.problems, (runbook.name, runbook.problems)
        assert runbook.title and runbook.role and runbook.html and "<h2" in runbook.html
        assert set(runbook.services) <= services, runbook.name
        for block in runbook.blocks:
            assert block.action in BLOCK_ACTIONS
            assert block.service in services | {""}, (runbook.name, block)
    # the plan's scenarios come with buttons and checklists
    service_failure = runbook_load("service-failure")
    assert [block.action for block in service_failure.blocks] == ["restart_service"] and service_failure.steps


@pytest.mark.parametrize("role", [Role.DEVOPS, Role.VIEWER])
def test_a_runbook_page_shows_buttons_only_to_the_roles_allowed(client_as, demo, role):
    Service.objects.filter(name="onboarding-app").update(restart={"controller": "command", "argv": ["true"]})
    html = client_as(role).get(reverse("runbooks:detail", kwargs={"name": "service-failure"})).content.decode()
    restart = reverse("status:service-restart", kwargs={"name": "onboarding-app"})
    assert ('action="' + restart + '"' in html) == (role == Role.DEVOPS)
    assert "Restart · Onboarding application" in html
    if role == Role.VIEWER:
        assert "DevOps may do this" in html
    assert 'class="toc"' in html


def test_backup_restore_and_failover_buttons_lead_to_the_policy_and_cluster_behind_the_service(client_as, demo):
    dba = client_as(Role.DBA)
    lost = dba.get(reverse("runbooks:detail", kwargs={"name": "lost-environment"})).content.decode()
    for view, label in (("backups:restore-start", "Open the restore wizard"), ("backups:backup-now", "Back up now")):
        assert 'action="' + reverse(view, kwargs={"name": "demo-onboarding"}) + '"' in lost
        assert f"{label} · {Service.objects.get(name='demo-db-primary').display_name}" in lost
    problem = dba.get(reverse("runbooks:detail", kwargs={"name": "database-problem"})).content.decode()
    assert '<a class="button" href="' + reverse("databases:failover", kwargs={"name": "demo"}) + '">' in problem


def test_an_action_that_cannot_work_for_a_service_says_why(demo):
    runbook = runbook_parse(
        "notes",
        "---\ntitle: t\nscenario: s\nrole: DBA\nservices: []\nactions: []\n---\n"
        "[[action: run_backup portal-web]]\n\n[[action: failover onboarding-app]]\n\n"
        "[[action: restart_service portal-db]]\n\n[[action: restore ghost]]\n",
    )
    parts = runbook_segments(runbook, user=make_user("dora", Role.DBA), service=None, ticks=None)
    buttons = [button for part in parts for button in part.get("buttons", [])]
    assert [(button.url, button.note) for button in buttons] == [
        ("", "no backup policy watches it"),
        ("", "it is not a database of a managed cluster"),
        ("", "it has no restart controller"),
        ("", "no service 'ghost' in the catalog"),
    ]
    assert [button.subject for button in buttons][-1] == "ghost"


def test_hostile_markdown_is_inert():
    runbook = runbook_parse(
        "evil",
        "---\ntitle: t\nscenario: s\nrole: DevOps\nservices: []\nactions: []\n---\n"
        "# Evil\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[click](javascript:alert(3))\n\n"
        '<a href="javascript:alert(4)" onclick="alert(5)">x</a>\n\n<input type="checkbox" onchange="alert(6)">\n\n'
        "```bash\necho <script>\n```\n",
    )
    html = str(runbook.html)
    for vector in ("<script", "onerror", "javascript:", "onclick", "onchange", "<input"):
        assert vector not in html.lower(), vector
    assert "&lt;script&gt;" in html  # the code block shows it as text
    assert not runbook.problems


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# no front matter\n", "no front matter"),
        ("---\ntitle: x\nscenario: s\nrole: Wizard\nservices: []\nactions: []\n---\n", "unknown role 'Wizard'"),
        ("---\ntitle: x\nscenario: s\nrole: DBA\nservices: []\nactions: [launch_missiles]\n---\n", "unknown action"),
        ("---\ntitle: x\nrole: DBA\nservices: []\nactions: []\n---\n", "`scenario` is missing"),
        ("---\ntitle: x\nscenario: s\nrole: DBA\nservices: a\nactions: []\n---\n", "`services` must be a list"),
        (
            "---\ntitle: x\nscenario: s\nrole: DBA\nservices: []\nactions: []\n---\n[[action: drop_everything]]\n",
            "line 8: unknown action 'drop_everything'",
        ),
        (
            "---\ntitle: x\nscenario: s\nrole: DBA\nservices: []\nactions: []\n---\n[[action restart]]\n",
            "is not `[[action:",
        ),
    ],
)
def test_broken_runbooks_say_why(text, problem):
    assert any(problem in found for found in runbook_parse("broken", text).problems)


def test_the_index_lists_broken_runbooks_with_the_reason_and_searches(client_as, tmp_path, monkeypatch):
    (tmp_path / "good.md").write_text(
        "---\ntitle: Good one\nscenario: service-failure\nrole: DevOps\nservices: []\nactions: []\n---\nRestart it.\n"
    )
    (tmp_path / "bad.md").write_text("---\ntitle: Bad one\nscenario: x\nrole: DevOps\n---\nno end")
    (tmp_path / "worse.md").write_bytes(b"---\ntitle: \xff\n")  # not even UTF-8
    monkeypatch.setattr(documents, "runbooks_directory", lambda: tmp_path)
    client = client_as(Role.VIEWER)
    response = client.get(reverse("runbooks:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Good one" in html and "Bad one" in html and "broken" in html and "`services` is missing" in html
    assert "worse" in html and "not UTF-8" in html
    searched = client.get(reverse("runbooks:index"), {"q": "restart", "scenario": "service-failure"})
    assert "Good one" in searched.content.decode() and "Bad one" not in searched.content.decode()
    fragment = client.get(reverse("runbooks:index"), {"q": "nothing-like-this"}, headers={"HX-Request": "true"})
    assert "<h1" not in fragment.content.decode() and "No runbook matches" in fragment.content.decode()
    assert client.get(reverse("runbooks:detail", kwargs={"name": "bad"})).status_code == 200
    assert client.get(reverse("runbooks:detail", kwargs={"name": "nope"})).status_code == 404
