"""The restore wizard through HTTP: every step as a page and as an htmx fragment, back and forth, who may use it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hadr_portal.backups.models import Restore
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.permissions import Role
from tests.backups.conftest import APP_DB, backup_of, run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def step_url(restore: Restore, step: str) -> str:
    return reverse("backups:restore-step", kwargs={"pk": restore.pk, "step": step})


def test_a_dba_walks_the_wizard_without_javascript(client_as, app_policy):
    backup = backup_of(app_policy)
    dba = client_as(Role.DBA)
    response = dba.post(reverse("backups:restore-start", kwargs={"name": app_policy.name}))
    restore = Restore.objects.get()
    assert response.status_code == 302 and response.url == step_url(restore, "situation")
    page = dba.get(response.url).content.decode()
    assert 'aria-current="step"' in page and "1. Situation" in page
    assert "Data corruption, step by step" in page  # the runbook beside the first step

    response = dba.post(step_url(restore, "situation"), {"situation": ""})
    assert response.status_code == 400 and "Choose what happened." in response.content.decode()
    response = dba.post(step_url(restore, "situation"), {"situation": "corruption", "incident_at": "2020-01-01T10:00"})
    assert response.url == step_url(restore, "backup")
    page = dba.get(response.url).content.decode()
    assert f'value="{backup.pk}"' in page and "suggested" in page and backup.sha256[:10] in page

    assert dba.post(step_url(restore, "backup"), {"backup": str(backup.pk)}).url == step_url(restore, "destination")
    page = dba.get(step_url(restore, "destination")).content.decode()
    assert "3. Destination" in page and "Where to restore?" in page
    assert "safe default" in page and f"Type <strong>{APP_DB}</strong> to replace it" in page
    # back to the first step, and forward again: the choices are kept
    page = dba.get(step_url(restore, "situation")).content.decode()
    assert 'value="corruption" checked' in page
    assert f'href="{step_url(restore, "backup")}"' in page and f'href="{step_url(restore, "destination")}"' in page

    response = dba.post(step_url(restore, "destination"), {"destination": "replace", "confirm": "nope"})
    assert response.status_code == 400 and f"Type the database&#x27;s name, {APP_DB}, to replace it." in (
        response.content.decode()
    )
    response = dba.post(
        step_url(restore, "destination"), {"destination": "new_database", "database": "restore_app_web"}
    )
    assert response.url == step_url(restore, "preflight")
    assert "Run the checks" in dba.get(response.url).content.decode()  # they start on load
    page = dba.post(step_url(restore, "preflight")).content.decode()
    assert "Checksum re-read and compared" in page and "Restore now" in page

    response = dba.post(step_url(restore, "run"))
    assert response.status_code == 302 and response.url == reverse("backups:restore", kwargs={"pk": restore.pk})
    restore.refresh_from_db()
    assert restore.status == "queued" and restore.operation.kind == "restore"
    page = dba.get(response.url).content.decode()
    assert "Waiting for a worker" in page and 'hx-trigger="every 1s"' in page
    # a queued restore's steps can no longer be changed
    assert dba.post(step_url(restore, "destination"), {"destination": "replace"}).url == response.url

    restore = run(restore.operation)
    page = dba.get(response.url).content.decode()
    assert "RTO measured" in page and "pass" in page and "hx-trigger" not in page
    assert "data-loss window" in page.lower()


def test_htmx_steps_get_the_fragment_and_the_url_to_push(client_as, app_policy):
    backup_of(app_policy)
    dba = client_as(Role.DBA)
    dba.post(reverse("backups:restore-start", kwargs={"name": app_policy.name}))
    restore = Restore.objects.get()
    response = dba.get(step_url(restore, "situation"), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and html.lstrip().startswith('<div id="wizard"')
    assert "hx-request" in response.get("Vary", "").lower()
    response = dba.post(step_url(restore, "situation"), {"situation": "verification"}, headers=HTMX)
    assert response.status_code == 200 and response["HX-Push-Url"] == step_url(restore, "backup")
    assert 'id="step-backup"' in response.content.decode()
    response = dba.post(
        step_url(restore, "destination"), {"destination": "other_server", "database": "x"}, headers=HTMX
    )
    assert response.status_code == 200 and "Choose another cluster of the catalog" in response.content.decode()
    # the Run step refuses until the pre-flight ran, and says so in the fragment
    response = dba.post(step_url(restore, "run"), headers=HTMX)
    assert response.status_code == 200 and "Run the pre-flight checks first" in response.content.decode()
    assert not Operation.objects.filter(kind="restore").exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVOPS, Role.DEVELOPER, Role.PRODUCT_MANAGER])
def test_only_a_dba_reaches_the_wizard_even_posting_directly(client_as, app_policy, role):
    backup_of(app_policy)
    dba = client_as(Role.DBA)
    dba.post(reverse("backups:restore-start", kwargs={"name": app_policy.name}))
    restore = Restore.objects.get()
    dba.post(step_url(restore, "situation"), {"situation": "corruption"})
    dba.post(step_url(restore, "destination"), {"destination": "new_database", "database": "restore_app_web"})
    dba.post(step_url(restore, "preflight"))
    other = client_as(role)
    assert other.post(step_url(restore, "run")).status_code == 403
    assert other.get(step_url(restore, "situation")).status_code == 403
    assert other.post(reverse("backups:restore-start", kwargs={"name": app_policy.name})).status_code == 403
    assert other.post(reverse("backups:drill-now", kwargs={"name": app_policy.name})).status_code == 403
    restore.refresh_from_db()
    assert restore.status == "draft" and not Operation.objects.filter(kind__startswith="restore").exists()
    refused = AuditEntry.objects.filter(outcome="refused", actor=other.user).values_list("action", "target")
    assert (
        "view.backups:restore-step",
        step_url(restore, "run"),
    ) in refused, "a refused Run is in the audit log, once per attempt"
    assert len(refused) == 4
    # reading what a restore did is for everyone
    assert other.get(reverse("backups:restores")).status_code == 200
    html = other.get(reverse("backups:list")).content.decode()
    assert "Restore…" not in html and "Run a restore drill now" not in html
    assert "Restore…" in dba.get(reverse("backups:list")).content.decode()


def test_drill_now_and_the_restores_page(client_as, app_policy):
    backup_of(app_policy)
    dba = client_as(Role.DBA)
    response = dba.post(reverse("backups:drill-now", kwargs={"name": app_policy.name}))
    drill = Restore.objects.get(kind="drill")
    assert response.url == reverse("core:operation", kwargs={"pk": drill.operation.pk})
    run(drill.operation)
    page = client_as(Role.VIEWER).get(reverse("backups:restores")).content.decode()
    assert f"#{drill.pk}" in page and "Verified" in page and "Restore drill" in page
    fragment = client_as(Role.VIEWER).get(reverse("backups:restores"), headers=HTMX).content.decode()
    assert fragment.lstrip().startswith('<div id="restores"') and "hx-trigger" not in fragment
    html = dba.get(reverse("backups:list")).content.decode()
    assert "Last verified restore" in html and 'id="rto-restore-app"' in html
