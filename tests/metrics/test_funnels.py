"""The funnel collector against the real primary and replica: counts match a direct SQL count, the query never
runs on a primary, and a failing or slow query leaves the counts alone and says why, without breaking a page."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Node
from hadr_portal.metrics.funnels import FunnelUnavailable, funnel_collect, funnels_collect_due
from hadr_portal.metrics.models import Funnel, FunnelDayCount, FunnelHourCount
from hadr_portal.metrics.selectors import funnel_summaries
from tests.infra.plugin import free_port
from tests.metrics.factories import direct_counts, make_funnel, onboarding_events, onboarding_reset

pytestmark = pytest.mark.django_db

# (last step reached, hours ago): 6 sign-ups today-ish, more over the last weeks, one older than 30 days
EVENTS = [
    ("first_project_created", 0),
    ("profile_completed", 0),
    ("email_verified", 1),
    ("signed_up", 1),
    ("signed_up", 2),
    ("first_project_created", 30),
    ("email_verified", 50),
    ("profile_completed", 24 * 9),
    ("signed_up", 24 * 20),
    ("first_project_created", 24 * 40),
]


@pytest.fixture
def onboarding(infra, demo_cluster):
    onboarding_reset(infra)
    onboarding_events(infra, EVENTS)
    return infra


def _day_start(days_ago: int) -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate() - timedelta(days=days_ago), datetime.min.time()))


def test_counts_come_from_the_replica_and_match_a_direct_count(onboarding):
    funnel = make_funnel(node="replica")

    done = funnel_collect(funnel=funnel)

    assert done.hours > 0
    funnel.refresh_from_db()
    assert funnel.last_error == "" and funnel.last_success_at is not None
    summary = funnel_summaries([funnel])[0]
    assert not summary.stale
    for period in summary.periods:
        expected = direct_counts(onboarding, _day_start(period.days - 1))
        assert {f.step: f.count for f in period.steps} == {s: expected.get(s, 0) for s in funnel.steps}, period.label
    month = summary.periods[-1]
    assert month.overall == pytest.approx(expected_rate(onboarding, 29))
    # every day since the first collection has its row per step, zeros included
    assert FunnelDayCount.objects.filter(funnel=funnel, step="signed_up", count=0).exists()


def expected_rate(infra, days_ago: int) -> float:
    counts = direct_counts(infra, _day_start(days_ago))
    return counts.get("first_project_created", 0) / counts["signed_up"]


def test_a_second_run_replaces_the_recent_counts_and_picks_up_new_events(onboarding):
    funnel = make_funnel(node="replica")
    funnel_collect(funnel=funnel)
    before = FunnelHourCount.objects.filter(funnel=funnel).count()
    onboarding_events(onboarding, [("email_verified", 0)])

    funnel_collect(funnel=funnel)

    today = funnel_summaries([funnel])[0].periods[0]
    assert {f.step: f.count for f in today.steps} == {
        s: direct_counts(onboarding, _day_start(0)).get(s, 0) for s in funnel.steps
    }
    assert FunnelHourCount.objects.filter(funnel=funnel).count() == before  # replaced, not added


def test_the_query_is_refused_on_a_primary(onboarding):
    funnel = make_funnel(node="primary")

    with pytest.raises(FunnelUnavailable, match=r"refused: demo/primary .* reports being a primary"):
        funnel_collect(funnel=funnel)

    funnel.refresh_from_db()
    assert "only on a replica" in funnel.last_error
    assert not FunnelHourCount.objects.exists()


def test_without_a_node_the_collector_reads_the_node_the_checks_say_is_the_replica(onboarding, demo_cluster):
    funnel = make_funnel(node="")
    with pytest.raises(FunnelUnavailable, match=r"no reachable replica in cluster demo \(primary: unknown"):
        funnel_collect(funnel=funnel)
    Node.objects.filter(name="primary").update(last_probe={"reachable": True, "role": "primary"})
    Node.objects.filter(name="replica").update(last_probe={"reachable": True, "role": "replica"})

    funnel_collect(funnel=funnel)

    assert FunnelHourCount.objects.filter(funnel=funnel).exists()


def test_a_slow_query_times_out_keeps_the_counts_and_the_pages_say_why(onboarding, client_as):
    funnel = make_funnel(node="replica")
    funnel_collect(funnel=funnel)
    counts = list(FunnelDayCount.objects.values_list("day", "step", "count"))
    Funnel.objects.filter(pk=funnel.pk).update(
        query=(
            "SELECT 'signed_up', now(), count(*)::int FROM generate_series(1, 100000) a, generate_series(1, 100000) b"
            " WHERE %(since)s IS NOT NULL"
        ),
        timeout_seconds=1,
    )
    funnel.refresh_from_db()

    with pytest.raises(FunnelUnavailable, match=r"timed out after 1 s \(statement_timeout\)"):
        funnel_collect(funnel=funnel)

    assert list(FunnelDayCount.objects.values_list("day", "step", "count")) == counts
    viewer = client_as(Role.VIEWER)
    page = viewer.get(reverse("metrics:page"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Data stale since" in html and "timed out after 1 s" in html
    assert 'id="resources"' in html  # the rest of the page is there
    board = viewer.get(reverse("dashboard")).content.decode()
    assert 'id="conversion-onboarding"' in board and "Data stale since" in board


def test_a_replica_that_is_down_makes_the_funnel_stale_with_the_reason(onboarding, demo_cluster):
    Node.objects.create(cluster=demo_cluster, name="replica2", host="127.0.0.1", port=free_port())
    funnel = make_funnel(node="replica2", timeout_seconds=2)

    outcomes = funnels_collect_due()

    assert outcomes == {"onboarding": funnel_reason(funnel)}
    assert "connection refused" in outcomes["onboarding"]
    summary = funnel_summaries()[0]
    assert summary.stale and "demo/replica2 (127.0.0.1:" in summary.stale_reason
    funnel.refresh_from_db()
    assert funnel.next_run_at > timezone.now()  # claimed: the next tick leaves it alone
    assert funnels_collect_due() == {}


def funnel_reason(funnel: Funnel) -> str:
    funnel.refresh_from_db()
    return funnel.last_error


def test_collect_funnel_command(onboarding):
    make_funnel(node="replica")
    make_funnel("broken", node="primary")
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match="1 of 2 funnel"):
        call_command("collect_funnel", stdout=out, stderr=err)

    assert out.getvalue().startswith("onboarding: ")
    assert "broken: not collected: refused" in err.getvalue()
    with pytest.raises(CommandError, match="No query funnel named nope"):
        call_command("collect_funnel", "nope")


def test_a_node_that_accepts_and_says_nothing_is_given_up_on_in_time(demo_cluster):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        Node.objects.create(cluster=demo_cluster, name="silent", host="127.0.0.1", port=silent.getsockname()[1])
        funnel = make_funnel(node="silent", timeout_seconds=1)
        started = time.monotonic()
        with pytest.raises(FunnelUnavailable, match="demo/silent"):
            funnel_collect(funnel=funnel)
    assert time.monotonic() - started < 1 + 5 + 1  # the timeout and the grace, never forever
