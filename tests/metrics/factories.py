"""Builders for metrics tests: funnels, counts, the demo application's tables on the real primary."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
from django.utils import timezone

from demo.onboarding import SCHEMA_SQL, STEPS
from hadr_portal.databases.models import Cluster
from hadr_portal.demo.catalog import DEMO_FUNNEL
from hadr_portal.metrics.models import Funnel, FunnelDayCount
from tests.conftest import wait_for
from tests.infra.plugin import Infrastructure


def make_funnel(name: str = "onboarding", **fields: Any) -> Funnel:
    """The demo funnel with `fields` changed, its cluster and node named as in the catalog file ("" for none)."""
    values = {key: value for key, value in DEMO_FUNNEL.items() if key != "name"} | fields
    cluster_name, node_name = values.pop("cluster"), values.pop("node")
    cluster = Cluster.objects.get(name=cluster_name) if cluster_name else None
    node = cluster.nodes.get(name=node_name) if cluster and node_name else None
    return Funnel.objects.create(name=name, cluster=cluster, node=node, **values)


def make_day_counts(funnel: Funnel, counts: dict[str, int], *, days: int = 1, today: date | None = None) -> None:
    """The same counts on each of the last `days` days."""
    today = today or timezone.localdate()
    FunnelDayCount.objects.bulk_create(
        FunnelDayCount(funnel=funnel, day=today - timedelta(days=offset), step=step, count=count)
        for offset in range(days)
        for step, count in counts.items()
    )


def dsn(infra: Infrastructure, node: str) -> str:
    port = infra.primary.port if node == "primary" else infra.replica.port
    return f"host=127.0.0.1 port={port} dbname=onboarding user=postgres password={infra.demo_password}"


def onboarding_reset(infra: Infrastructure) -> None:
    """The demo application's tables on the primary, empty, and the replica caught up."""
    with psycopg.connect(dsn(infra, "primary"), autocommit=True) as conn:
        for statement in SCHEMA_SQL:
            conn.execute(statement)
        conn.execute("TRUNCATE onboarding_events, app_users RESTART IDENTITY")
    replica_caught_up(infra)


def onboarding_events(infra: Infrastructure, events: list[tuple[str, int]]) -> None:
    """Users walking the funnel: (step reached, hours ago) — each user does every step up to the one given."""
    with psycopg.connect(dsn(infra, "primary"), autocommit=True) as conn:
        for last_step, hours_ago in events:
            at = timezone.now() - timedelta(hours=hours_ago)
            user = conn.execute(
                "INSERT INTO app_users (email, created_at) VALUES (gen_random_uuid() || '@example.com', %s) RETURNING id",
                [at],
            ).fetchone()[0]
            for step in STEPS[: STEPS.index(last_step) + 1]:
                conn.execute(
                    "INSERT INTO onboarding_events (user_id, step, created_at) VALUES (%s, %s, %s)", [user, step, at]
                )
    replica_caught_up(infra)


def replica_caught_up(infra: Infrastructure) -> None:
    with psycopg.connect(dsn(infra, "primary"), autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    with psycopg.connect(dsn(infra, "replica"), autocommit=True) as conn:
        wait_for(
            lambda: conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0],
            timeout=10,
            interval=0.05,
            message="the replica did not catch up",
        )


def direct_counts(infra: Infrastructure, since: Any) -> dict[str, int]:
    """What a person would count by hand, on the primary."""
    with psycopg.connect(dsn(infra, "primary"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT step, count(*) FROM onboarding_events WHERE created_at >= %s GROUP BY step", [since]
        ).fetchall()
    return dict(rows)
