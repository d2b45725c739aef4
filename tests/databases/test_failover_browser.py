"""The DBA's failover journey in Chromium, with the demo application writing through a multi-host DSN:
the primary stops, the DBA fails over from the Databases page, the application keeps recording events on
the new primary without a restart, and the old primary is rebuilt as a streaming replica."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from hadr_portal.core.permissions import Role
from hadr_portal.databases.topology import cluster_probe
from tests.conftest import make_user, sign_in, wait_for
from tests.demo.test_onboarding import _answers, get, start_app
from tests.infra.plugin import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dba_fails_over_from_the_browser_while_the_demo_app_keeps_writing(live_server, page, pg_pair, start_worker):
    start_worker("ops", name="ops").wait_ready()
    primary, replica = pg_pair.primary, pg_pair.replica
    port = free_port()
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={primary.port},{replica.port} dbname=onboarding user=postgres"
        f" password={primary.superuser_password} target_session_attrs=read-write connect_timeout=2"
    )
    app = start_app(dsn, port, rate="20")
    health = f"http://127.0.0.1:{port}/health"
    try:
        wait_for(lambda: _answers(port) and get(health)[0] == 200, timeout=20)
        wait_for(lambda: get(health)[1]["events_written"] > 10, timeout=10)
        cluster_probe(pg_pair.cluster)
        replicated = "SELECT count(*) FROM onboarding_events"
        primary.stop(mode="fast")  # a clean stop: everything committed reached the replica
        committed_before = pg_pair.execute(replica, replicated)[0][0]
        assert committed_before > 0

        make_user("dina", Role.DBA)
        sign_in(page, live_server.url, "dina")
        page.goto(f"{live_server.url}/databases/")
        page.get_by_role("link", name="Fail over…").click()
        expect(page.locator("#plan")).to_contain_text("Primary primary is down")
        expect(page.locator("#plan")).to_contain_text("Replica replica is reachable and in recovery")
        page.fill("input[name=confirm]", pg_pair.cluster.name)
        page.get_by_role("button", name="Fail over to replica").click()
        expect(page.locator(".badge-succeeded").first).to_be_visible(timeout=30000)

        # the application found the new primary by itself and records events again
        written = get(health)[1]["events_written"]
        wait_for(lambda: get(health)[1]["events_written"] > written + 5, timeout=20)
        assert get(health)[1]["database"]["port"] == replica.port
        assert pg_pair.execute(replica, replicated)[0][0] > committed_before  # nothing committed was lost

        page.goto(f"{live_server.url}/")
        tile = page.locator(f"#cluster-tile-{pg_pair.cluster.name}")
        expect(tile).to_contain_text("Primary: replica")
        expect(tile).to_contain_text("no redundancy")

        page.goto(f"{live_server.url}/databases/")
        card = page.locator(f"#cluster-{pg_pair.cluster.name}")
        expect(card).to_contain_text("Applications should use: replica")
        card.get_by_text("Rebuild as replica…").click()
        card.locator("input[name=confirm]").last.fill("primary")
        card.get_by_role("button", name="Rebuild primary").click()
        expect(page.locator(".badge-succeeded").first).to_be_visible(timeout=60000)
        expect(page.locator("body")).to_contain_text("primary streams from replica")
        assert pg_pair.in_recovery(primary)
        page.goto(f"{live_server.url}/")
        expect(tile).to_contain_text("redundant")
        expect(tile).to_contain_text("Streaming: hadr_primary (1 of 1)")
    finally:
        app.terminate()
        app.wait(10)
