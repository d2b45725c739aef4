"""A DBA takes the demo cluster back to a second in Chromium: rows deleted after that second are seen in the scratch
instance's query box, copied back into production, and the scratch instance is discarded."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from hadr_portal.adapters.pg.scratch import port_in_use
from hadr_portal.backups.models import Restore
from hadr_portal.core.permissions import Role
from tests.backups.conftest import archived_past, backup_now, sql
from tests.conftest import make_user, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dba_recovers_deleted_rows_from_a_point_in_time(live_server, page, physical_policy, start_worker, infra):
    backup_now(physical_policy)
    sql(infra, "DROP TABLE IF EXISTS pitr_orders")
    sql(infra, "CREATE TABLE pitr_orders (id int PRIMARY KEY, note text)")
    sql(infra, "INSERT INTO pitr_orders SELECT n, 'order ' || n FROM generate_series(1, 10) n")
    time.sleep(1.1 - time.time() % 1)  # to the next whole second: the point
    point = datetime.fromtimestamp(int(time.time()), UTC)
    time.sleep(0.5)
    sql(infra, "DELETE FROM pitr_orders WHERE id > 6")  # the mistake, after the point
    archived_past(infra, point)
    start_worker("ops")
    make_user("dora", Role.DBA)
    sign_in(page, live_server.url, "dora")

    page.goto(f"{live_server.url}/backups/")
    page.locator("#policy-demo-cluster").get_by_role("button", name="Restore…").click()
    page.get_by_label("Data corruption").check()
    page.get_by_role("button", name="Next: choose the point in time").click()
    expect(page.locator("ol.stepper [aria-current=step]")).to_have_text("2. Point in time")
    expect(page.locator("#window")).to_contain_text("any second from")
    page.locator("input[name=when]").fill(f"{point:%Y-%m-%d %H:%M:%S}")
    page.get_by_label("the time is in UTC").check()
    page.get_by_role("button", name="Next: the scratch instance").click()
    expect(page.locator("#step-destination")).to_contain_text("scratch instance")
    page.get_by_role("button", name="Next: pre-flight checks").click()
    expect(page.locator("#step-preflight")).to_contain_text("Base backup: full set", timeout=30000)
    page.get_by_role("button", name="Restore now").click()

    expect(page.locator("#step-decide")).to_contain_text("The scratch instance is at", timeout=120000)
    page.locator("#scratch-query-form textarea").fill("SELECT count(*) AS orders FROM pitr_orders")
    page.get_by_role("button", name="Run on the scratch instance").click()
    expect(page.locator("#scratch-answer td")).to_have_text("10")
    expect(page.locator("#scratch-tables")).to_contain_text("public.pitr_orders")

    page.locator("#copy-back-form input[name=tables]").fill("pitr_orders")
    page.locator("#copy-back-form input[name=confirm]").fill("onboarding")
    page.get_by_role("button", name="Copy back").click()
    expect(page.locator("body")).to_contain_text("Succeeded", timeout=60000)
    assert sql(infra, "SELECT count(*) FROM pitr_orders") == [(10,)]

    restore = Restore.objects.get()
    page.goto(f"{live_server.url}/backups/restores/{restore.pk}/")
    page.locator("#decide-discard input[name=confirm]").fill(str(restore.pk))
    page.get_by_role("button", name="Discard").click()
    expect(page.locator("#step-outcome")).to_contain_text("removed")
    restore.refresh_from_db()
    assert restore.scratch_removed_at and not port_in_use(restore.port)
