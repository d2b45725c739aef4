"""User journeys in a real Chromium (Playwright) against the live portal and a real worker."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.core.permissions import Role
from tests.conftest import PASSWORD, make_user, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_dba_runs_a_connectivity_check_and_finds_it_in_the_audit_log(live_server, page, demo_cluster, start_worker):
    start_worker("ops")
    make_user("dana", Role.DBA)
    sign_in(page, live_server.url, "dana", "wrong password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=username]", "dana")
    page.click("button[type=submit]")

    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Databases").click()
    expect(page.locator("#cluster-demo")).to_contain_text("primary")
    page.get_by_role("button", name="Run connectivity check").first.click()

    expect(page.get_by_role("heading", name="Operation #")).to_contain_text("Connectivity check")
    progress = page.locator(".operation-progress")
    expect(progress.locator(".badge")).to_have_text("Succeeded", timeout=30000)  # htmx polling, no reload
    expect(progress.get_by_label("Operation log")).to_contain_text("is replica")
    expect(progress).not_to_have_attribute("hx-trigger", "every 1s")

    page.get_by_role("link", name="Databases").click()
    expect(page.locator("#cluster-demo")).to_contain_text("replica")
    expect(page.locator("#cluster-demo")).to_contain_text("succeeded")

    page.get_by_role("link", name="Audit log").click()
    requested = page.locator("#audit-table tr", has_text="Accepted")
    expect(requested).to_have_count(1)
    expect(requested).to_contain_text("operation.connectivity_check")
    expect(requested).to_contain_text("dana")
    expect(requested).to_contain_text("DBA")
    finished = page.locator("#audit-table tr", has_text="operation.connectivity_check.finished")
    expect(finished).to_contain_text("system")
    expect(finished).to_contain_text("Success")


def test_viewer_sees_no_action_buttons(live_server, page, demo_cluster):
    make_user("vic", Role.VIEWER)
    sign_in(page, live_server.url, "vic")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Databases").click()
    expect(page.locator("#cluster-demo")).to_be_visible()
    expect(page.get_by_role("button", name="Run connectivity check")).to_have_count(0)
    page.get_by_title("Roles and what each may do").click()
    expect(page.locator("table.matrix")).to_contain_text("failover")
