"""User journeys in a real Chromium (Playwright) against the live portal and a real worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hadr_portal.core.permissions import Role
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM = os.environ.get("HADR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make install-dev`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login/?next=/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_dba_runs_a_connectivity_check_and_finds_it_in_the_audit_log(live_server, page, demo_cluster, start_worker):
    start_worker("ops")
    make_user("dana", Role.DBA)
    sign_in(page, live_server.url, "dana", "wrong password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=username]", "dana")
    page.click("button[type=submit]")

    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#cluster-demo")).to_contain_text("primary")
    page.get_by_role("button", name="Run connectivity check").first.click()

    expect(page.get_by_role("heading", name="Operation #")).to_contain_text("Connectivity check")
    progress = page.locator(".operation-progress")
    expect(progress.locator(".badge")).to_have_text("Succeeded", timeout=30000)  # htmx polling, no reload
    expect(progress.get_by_label("Operation log")).to_contain_text("is replica")
    expect(progress).not_to_have_attribute("hx-trigger", "every 1s")

    page.get_by_role("link", name="Dashboard").click()
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
    expect(page.locator("#cluster-demo")).to_be_visible()
    expect(page.get_by_role("button", name="Run connectivity check")).to_have_count(0)
    page.get_by_role("link", name="Roles").click()
    expect(page.locator("table.matrix")).to_contain_text("failover")
