"""The whole incident in a real Chromium: a service goes down, its incident opens with the runbook, the
runbook's Restart brings it back, the restart is on the timeline, resolve, download the postmortem."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.incidents.models import Incident
from hadr_portal.status import engine
from hadr_portal.status.models import Service
from tests.conftest import ARTIFACTS, make_user, sign_in
from tests.status.test_restart import shop, shop_service  # noqa: F401 - the fixture and its service

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_down_incident_runbook_restart_resolve_postmortem(live_server, page, shop):  # noqa: F811
    service, check = shop_service(shop, argv=shop.restart_argv())
    Service.objects.filter(pk=service.pk).update(tier=1, runbook="service-failure")
    check.failures_before_down = 1
    check.save()
    # the shop is not running: its check fails
    engine.checks_run([check.pk])
    incident = Incident.objects.get()
    make_user("ops", Role.DEVOPS)
    sign_in(page, live_server.url, "ops")

    page.goto(f"{live_server.url}/")
    page.locator("#open-incidents a").first.click()
    expect(page.locator("h1")).to_contain_text("Shop front is down")
    expect(page.locator("#runbook")).to_contain_text("A service is down")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".page-head .badge-acknowledged")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)

    page.get_by_role("button", name="Restart · Shop front").click()
    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    operation = Operation.objects.get(kind="restart_service")
    operation_execute(operation_id=operation.pk)  # here, not on a worker: seconds saved, same code
    assert shop.answers()
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    expect(page.locator("#timeline")).to_contain_text(f"operation #{operation.pk}")
    expect(page.locator("#timeline")).to_contain_text("→ up")  # the restart's own checks saw it green

    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#postmortem")).to_contain_text("time to recover")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download (Markdown)").click()
    text = download.value.path().read_text()
    incident.refresh_from_db()
    assert text == incident.postmortem and "within the RTO" in text and f"operation #{operation.pk}" not in text
    assert f"Restart #{operation.pk}" in text or "restart" in text.lower()
    for path, name in (
        ("/runbooks/", "runbooks"),
        ("/runbooks/service-failure/", "runbook"),
        ("/readiness/", "readiness"),
    ):
        page.goto(f"{live_server.url}{path}")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
