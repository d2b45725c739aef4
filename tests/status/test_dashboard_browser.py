"""The live dashboard in Chromium: it changes under the reader's eyes, without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.core.permissions import Role
from hadr_portal.status import engine
from tests.conftest import make_user, sign_in
from tests.status.factories import http_target, make_check, make_service

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dashboard_tile_turns_red_without_a_reload(live_server, page):
    make_user("olga", Role.VIEWER)
    with http_target() as target:
        service = make_service("shop", tier=1, display_name="Shop front")
        check = make_check(service, config={"url": target.url}, failures_before_down=1)
        engine.checks_run([check.pk])
        sign_in(page, live_server.url, "olga")
        tile = page.locator("#service-shop")
        expect(tile).to_have_class("tile state-up")
        page.evaluate("window.__marker = 'same page'")

        target.status = 503
        engine.checks_run([check.pk])
        expect(tile).to_have_class("tile state-down", timeout=10000)  # HADR_DASHBOARD_REFRESH_SECONDS=1 in tests
        expect(tile).to_contain_text("HTTP 503")
        assert page.evaluate("window.__marker") == "same page", "the page was reloaded"

        page.locator("#service-shop").click()  # its tile (the open incident and readiness name it too)
        expect(page.locator(".timeline .seg.state-down")).to_have_count(1)
        expect(page.locator("#live")).to_contain_text("health: HTTP 503")


def test_check_form_shows_only_the_chosen_kinds_settings(live_server, page):
    make_user("dev", Role.DEVOPS)
    make_service("shop", tier=1, display_name="Shop front")
    sign_in(page, live_server.url, "dev")
    page.goto(f"{live_server.url}/services/shop/checks/new")
    page.select_option("#id_kind", "tcp")
    expect(page.locator("#id_port")).to_be_visible()
    expect(page.locator("#id_url")).to_be_hidden()
    page.select_option("#id_kind", "http")
    expect(page.locator("#id_url")).to_be_visible()
    expect(page.locator("#id_port")).to_be_hidden()
    page.fill("#id_name", "api")
    page.fill("#id_url", "htp:/bad")
    page.get_by_role("button", name="Save check").click()
    expect(page.get_by_role("alert").first).to_contain_text("Enter a full http:// or https:// URL")
    page.fill("#id_url", f"{live_server.url}/login/")
    page.get_by_role("button", name="Save check").click()
    expect(page.get_by_role("heading", name="Shop front")).to_be_visible()
    expect(page.locator("#live")).to_contain_text("api")
