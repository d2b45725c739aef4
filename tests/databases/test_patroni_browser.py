"""The Databases page of a Patroni cluster in Chromium, during a switchover the DBA starts there: Patroni's state on
the card, the switchover page, the operation while it runs, and afterwards the new leader with the change the
write probe measured (RTO, nothing lost). Against the real Patroni cluster, the probe ticking as beat would."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from playwright.sync_api import expect

from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster, LeaderChange
from hadr_portal.databases.writeprobe import probe_tick
from tests.conftest import make_user, sign_in
from tests.databases.patroni_fixtures import VARIABLES, ha_cluster  # noqa: F401
from tests.infra.patroni import PatroniCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("patroni"),
]


class Ticking:
    """The write probe every half second in a thread, as beat runs it in the checks worker."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.stopped = cluster, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                probe_tick(Cluster.objects.get(pk=self.cluster.pk))
                time.sleep(0.5)
        finally:
            connection.close()

    def __enter__(self) -> Ticking:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(10)


def test_the_dba_switches_over_from_the_databases_page_and_sees_what_it_cost(
    live_server,
    page,
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
    start_worker,
) -> None:
    start_worker("ops", name="ops", env=VARIABLES).wait_ready()
    leader = patroni_cluster.leader()
    candidate = next(node.name for node in patroni_cluster.nodes if node.name != leader)
    make_user("dina", Role.DBA)
    with Ticking(ha_cluster):
        sign_in(page, live_server.url, "dina")
        page.goto(f"{live_server.url}/databases/")
        card = page.locator(f"#cluster-{ha_cluster.name}")
        expect(card.locator(".patroni h3")).to_contain_text(f"Patroni: {leader} leads", timeout=10000)
        expect(card.locator(".write-probe")).to_contain_text(f"Last write on {leader}", timeout=10000)

        card.get_by_role("link", name="Switch over…").click()
        expect(page.locator(".ha-members")).to_contain_text(candidate)
        page.select_option("select[name=candidate]", candidate)
        page.fill("input[name=confirm]", "not-the-name")
        page.get_by_role("button", name="Switch over").click()
        expect(page.locator(".banner.error")).to_contain_text(f"Type {ha_cluster.name} to confirm")
        page.fill("input[name=confirm]", ha_cluster.name)
        page.get_by_role("button", name="Switch over").click()
        expect(page.locator(".badge-succeeded").first).to_be_visible(timeout=60000)
        expect(page.locator("body")).to_contain_text(f"First write committed on {candidate}")

        page.goto(f"{live_server.url}/databases/")
        expect(card.locator(".patroni h3")).to_contain_text(f"Patroni: {candidate} leads", timeout=15000)
        changes = card.locator(".leader-changes")
        expect(changes).to_contain_text(f"{leader} → {candidate}", timeout=15000)
        expect(changes).to_contain_text("Switchover")
        expect(changes).to_contain_text("0 of")  # no committed probe row lost
    change = LeaderChange.objects.get(cluster=ha_cluster)
    assert change.cause == LeaderChange.Cause.SWITCHOVER and change.operation is not None
    assert change.rows_lost == 0 and change.rto_seconds is not None and change.rto_seconds < 30
