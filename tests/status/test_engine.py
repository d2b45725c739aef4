"""The check engine against real targets: HTTP servers, the demo PostgreSQL pair, Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.workers import worker_announce, worker_withdraw
from hadr_portal.status import engine
from hadr_portal.status.models import Check, CheckResult, Transition
from tests.status.factories import http_target, make_check, make_service


def run(*checks: Check) -> None:
    engine.checks_run([c.pk for c in checks])
    for c in checks:
        c.refresh_from_db()


def test_state_changes_only_after_the_consecutive_failure_threshold(db):
    with http_target() as target:
        service = make_service("app")
        check = make_check(service, config={"url": target.url, "keyword": "ok"}, failures_before_down=2)
        run(check)
        service.refresh_from_db()
        assert (check.state, service.state) == ("up", "up")

        target.status = 503
        run(check)
        service.refresh_from_db()
        assert check.consecutive_failures == 1
        assert (check.state, service.state) == ("up", "up"), "one failure must not change the state"
        run(check)
        service.refresh_from_db()
        assert (check.state, service.state) == ("down", "down")
        down = Transition.objects.filter(service=service).first()
        assert (down.from_state, down.to_state) == ("up", "down")
        assert "health: HTTP 503" in down.reason

        target.status = 200
        run(check)
        service.refresh_from_db()
        assert service.state == "up"
        assert list(Transition.objects.filter(service=service).values_list("to_state", flat=True)) == [
            "up",
            "down",
            "up",
        ]
        assert CheckResult.objects.filter(health_check=check).count() == 4


@pytest.mark.slow  # waits out a hanging target's timeout
def test_a_hanging_target_delays_no_other_check(db):
    with http_target() as slow, http_target() as fast:
        slow.delay = 3.0
        service = make_service("many")
        hanging = make_check(service, "hanging", config={"url": slow.url}, timeout_seconds=2.0)
        quick = [make_check(service, f"quick{i}", config={"url": fast.url}) for i in range(8)]
        started = timezone.now()
        t0 = time.monotonic()
        engine.checks_run([hanging.pk, *[c.pk for c in quick]])
        elapsed = time.monotonic() - t0
        quick_done = CheckResult.objects.filter(health_check__in=quick).values_list("at", flat=True)
        assert max(quick_done) - started < timedelta(seconds=1), "fast checks waited for the hanging one"
        hanging.refresh_from_db()
        assert hanging.last_outcome == "down" and "timed out" in hanging.last_message
        assert elapsed < 2.0 + 1.5


def test_service_state_is_its_worst_known_check(db):
    with http_target() as ok, http_target() as bad:
        bad.status = 500
        service = make_service("mixed")
        good = make_check(service, "good", config={"url": ok.url})
        broken = make_check(service, "broken", config={"url": bad.url}, failures_before_down=1)
        make_check(service, "never-ran", kind="tcp", config={"host": "127.0.0.1", "port": 1}, enabled=False)
        run(good, broken)
        service.refresh_from_db()
        assert service.state == "down"
        assert service.state_reason.startswith("broken:")


def test_misconfigured_check_is_a_failed_check_not_a_crash(db):
    service = make_service("bad-config")
    # names kept in config, no node key: what the migration leaves of a check that named a node nowhere in the catalog
    check = make_check(service, kind="postgres", config={"cluster": "nope", "node": "x"}, failures_before_down=1)
    run(check)
    assert check.state == "down"
    assert "misconfigured" in check.last_message and "its node nope/x is not in the catalog" in check.last_message


def test_a_check_whose_node_left_the_catalog_goes_down_saying_so(demo_cluster):
    replica = demo_cluster.nodes.get(name="replica")
    service = make_service("pg-replica", kind="database")
    check = make_check(service, kind="postgres", node=replica, failures_before_down=1)
    replica.delete()
    check.refresh_from_db()
    assert check.node is None  # kept, not deleted with its node: a check that cannot run must be seen
    run(check)
    assert check.state == "down"
    assert "its node is not in the catalog" in check.last_message


def test_a_backup_check_judges_its_policy_and_says_when_it_has_none(demo_cluster, tmp_path):
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    policy = BackupPolicy.objects.create(name="nightly", cluster=demo_cluster, dbname="onboarding", storage=storage)
    service = make_service("db", kind="database")
    check = make_check(service, "backup", "backup", policy=policy, failures_before_down=1)
    run(check)
    assert (check.state, check.last_message.split(" (")[0]) == ("down", "no good backup yet")
    dangling = make_check(service, "old-backup", "backup", {"policy": "gone"}, failures_before_down=1)
    run(dangling)
    assert (dangling.state, dangling.last_message) == ("down", "no backup policy named 'gone'")
    policy.delete()
    run(check)
    assert (check.policy, check.last_message) == (None, "its backup policy is not in the catalog")


def test_a_postgres_check_keeps_its_nodes_view_current(demo_cluster):
    replica = demo_cluster.nodes.get(name="replica")
    run(make_check(make_service("pg-replica", kind="database"), kind="postgres", node=replica))
    replica.refresh_from_db()
    assert replica.last_probe["role"] == "replica" and replica.last_probe["lag_bytes"] is not None


def test_postgres_checks_read_role_and_replication(demo_cluster):
    nodes = {node.name: node for node in demo_cluster.nodes.all()}
    primary = make_check(make_service("pg-primary", kind="database"), kind="postgres", node=nodes["primary"])
    replica = make_check(make_service("pg-replica", kind="database"), kind="postgres", node=nodes["replica"])
    run(primary, replica)
    assert primary.state == "up", primary.last_message
    assert primary.last_data["role"] == "primary"
    assert len(primary.last_data["replicas"]) == 1
    assert replica.last_data["role"] == "replica" and replica.last_data["streaming"] is True


@pytest.mark.redis
def test_redis_and_celery_worker_checks(db, settings):
    service = make_service("queue", kind="queue")
    ping = make_check(service, "ping", kind="redis", config={})
    workers = make_check(service, "ops-workers", kind="celery", config={"queue": "ops"}, failures_before_down=1)
    worker_withdraw(url=settings.REDIS_URL, hostname="fake@test")
    run(ping, workers)
    assert ping.state == "up"
    assert workers.state == "down" and "no live worker" in workers.last_message
    worker_announce(url=settings.REDIS_URL, hostname="fake@test", queues=["ops"])
    try:
        run(workers)
        assert workers.state == "up" and "fake@test" in workers.last_message
    finally:
        worker_withdraw(url=settings.REDIS_URL, hostname="fake@test")


def test_due_checks_are_claimed_once(db):
    service = make_service("claim")
    due = make_check(service, "due", kind="tcp", config={"host": "127.0.0.1", "port": 1})
    make_check(
        service,
        "later",
        kind="tcp",
        config={"host": "127.0.0.1", "port": 1},
        next_run_at=timezone.now() + timedelta(minutes=5),
    )
    assert engine.checks_claim_due() == [due.pk]
    assert engine.checks_claim_due() == []
    due.refresh_from_db()
    assert timedelta(seconds=14) < due.next_run_at - timezone.now() <= timedelta(seconds=15)


def test_sparkline_series_are_the_newest_latencies_oldest_first(db):
    from hadr_portal.status import history

    check = make_check(make_service("spark"), kind="tcp", config={"host": "127.0.0.1", "port": 1})
    now = timezone.now()
    for i in range(40):
        CheckResult.objects.create(
            health_check=check, at=now - timedelta(seconds=40 - i), outcome="up", latency_ms=float(i)
        )
    series = history.latency_series([check.pk], points=30)[check.pk]
    assert series == [float(i) for i in range(10, 40)]
