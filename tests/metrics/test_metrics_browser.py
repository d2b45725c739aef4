"""The Metrics and Errors pages in Chromium: a person reads conversion next to what happened, then the errors."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.core.permissions import Role
from tests.conftest import make_user, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_conversion_next_to_failovers_then_the_errors(live_server, page, portal_data):
    make_user("pm", Role.PRODUCT_MANAGER)
    sign_in(page, live_server.url, "pm")

    page.get_by_role("link", name="Metrics", exact=True).click()
    funnel = page.locator("#funnel-onboarding")
    expect(funnel.get_by_role("heading", name="Onboarding conversion")).to_be_visible()
    expect(funnel.locator(".period-card").first).to_contain_text("21.0 %")
    expect(funnel.locator(".funnel-row")).to_have_count(4)
    expect(funnel.locator("svg.metrics-chart line.event")).to_have_count(3)  # failover, restore drill, failed backup
    page.get_by_role("link", name="48h").click()
    expect(page).to_have_url(f"{live_server.url}/metrics/overview/?range=48h")
    expect(page.locator("#resources svg.metrics-chart")).to_have_count(3)  # CPU, memory, disk /
    expect(page.get_by_text("Failover cluster:demo")).to_have_count(0)  # three days ago: not in 48 h
    page.get_by_role("link", name="30d").click()

    page.locator(".markers").get_by_role("link", name="Failover cluster:demo (succeeded)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("on cluster:demo")

    page.get_by_role("link", name="Errors", exact=True).click()
    expect(page.locator("#errors-table")).to_contain_text("pg_dump: connection refused")
    page.select_option("select[name=source]", "log")
    expect(page.locator("#errors-table")).not_to_contain_text("pg_dump: connection refused")
    expect(page).to_have_url(f"{live_server.url}/errors/?source=log&level=&since=&until=&q=")
