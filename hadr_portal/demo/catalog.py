"""The demo catalog: everything `make run` starts, its backups included, as catalog data (the same shape as
the TOML file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from hadr_portal.backups.models import DEFAULT_DRILL_SCHEDULE

from .cluster import LOCAL_ROLES

# The onboarding application's funnel, read from whichever node is the replica (demo/onboarding.py's tables).
DEMO_FUNNEL: dict[str, Any] = {
    "name": "onboarding",
    "description": "Onboarding conversion",
    "source": "query",
    "steps": ["signed_up", "email_verified", "profile_completed", "first_project_created"],
    "cluster": "demo",
    "node": "",
    "dbname": "onboarding",
    "dsn_env": "",
    "query": (
        "SELECT step, date_trunc('hour', created_at) AS hour, count(*) FROM onboarding_events"
        " WHERE created_at >= %(since)s GROUP BY 1, 2"
    ),
    "interval_seconds": 60,
    "timeout_seconds": 10.0,
    "enabled": True,
}


def _nodes(spec: str) -> list[dict[str, Any]]:
    nodes = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, address = item.partition("=")
        address, _, data_directory = address.partition("@")
        host, _, port = address.rpartition(":")
        if not (name and host and port.isdigit()):
            raise ValueError(f"HADR_DEMO_NODES: {item!r} is not name=host:port[@data-directory]")
        node: dict[str, Any] = {"name": name, "host": host, "port": int(port)}
        if data_directory:
            # the servers' Unix sockets are in their data directory's parent (adapters.pg.server.LocalInstance):
            # pgBackRest talks to them there
            node["controller"] = {
                "controller": "pg_ctl",
                "data_directory": data_directory,
                "socket_directory": str(Path(data_directory).parent),
            }
        nodes.append(node)
    return nodes


def local_restart(process: str, env: dict[str, str]) -> dict[str, Any]:
    """A command controller restarting one process of the local environment (`localenv.py restart NAME`).

    It runs as the command user, like every catalog command, and is given no variable: the run directory is in its
    arguments, and what the process starts with is in the run directory (`make up` keeps it there for that user).
    HADR_DEMO_PYTHON is an interpreter that user can run (`make up` finds one)."""
    root = Path(settings.BASE_DIR)
    python = env.get("HADR_DEMO_PYTHON") or sys.executable
    return {
        "controller": "command",
        "argv": [python, str(root / "scripts" / "localenv.py"), "--run-dir", env["HADR_RUN_DIR"], "restart", process],
        "cwd": str(root),
        "timeout_seconds": 60,
        "wait_seconds": 60,
    }


# What a restored onboarding database must answer (the demo application writes events every second).
DEMO_VERIFY = [
    {"name": "users", "sql": "SELECT count(*) FROM app_users", "expect": "> 0"},
    {"name": "events", "sql": "SELECT count(*) FROM onboarding_events", "expect": "> 0"},
    {"name": "events fresh", "sql": "SELECT max(created_at) FROM onboarding_events", "expect": "within 1h of backup"},
    {
        "name": "events have users",
        "sql": "SELECT count(*) FROM onboarding_events e LEFT JOIN app_users u ON u.id = e.user_id WHERE u.id IS NULL",
        "expect": "= 0",
    },
]


# The whole cluster, any second of it: pgBackRest in the local storage's directory, WAL archived within 30 s
# (archive_timeout 10 s), a full set nightly; the calendar keeps a daily set 7 days and a weekly one a month.
DEMO_CLUSTER_POLICY: dict[str, Any] = {
    "name": "demo-cluster",
    "cluster": "demo",
    "dbname": "onboarding",
    "engine": "pgbackrest",
    "compress": "lz4",
    "jobs": 2,
    "storage": "local",
    "set_type": "full",
    "wal_rpo_seconds": 30,
    "schedule": "30 1 * * *",
    "retention": "calendar",
    "keep_daily": 7,
    "keep_weekly": 4,
    "keep_monthly": 1,
    "rpo_minutes": 1440,
    "grace_minutes": 60,
}


def demo_catalog(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Built from the variables `make up` writes to .run/env (HADR_DEMO_NODES, HADR_*_URL, HADR_BACKUP_DIR).

    With a demo cluster come its backups: a local directory (HADR_BACKUP_DIR, default .run/backups) and
    a daily policy for the onboarding database (HADR_DEMO_BACKUP_SCHEDULE, default 02:00). The scheduler
    sets the policy's first run on its next tick. And its onboarding funnel, read every minute on the replica.
    When the nodes' data directories are on this machine (HADR_DEMO_NODES name=host:port@dir, as `make up` gives
    them), the cluster also has a pgBackRest policy: WAL archived within 30 s, a full set every night at 01:30,
    its repository in the same directory (`<path>/pgbackrest`). pgBackRest backs up from the data directory,
    so there is none when the nodes are elsewhere (containers).
    """
    env = dict(os.environ if environ is None else environ)
    nodes = _nodes(env.get("HADR_DEMO_NODES", ""))
    physical = bool(nodes) and all("controller" in node for node in nodes)
    drill_schedule = env.get("HADR_DEMO_DRILL_SCHEDULE") or DEFAULT_DRILL_SCHEDULE
    app_url = env.get("HADR_DEMO_APP_URL", "http://127.0.0.1:8001")
    portal_url = env.get("HADR_PORTAL_URL", "http://127.0.0.1:8000")
    app = urlsplit(app_url)

    def check(
        name: str, kind: str, config: dict[str, Any], interval: int = 15, timeout: float = 5.0, failures: int = 2
    ) -> dict[str, Any]:
        return {
            "name": name,
            "kind": kind,
            "enabled": True,
            "interval_seconds": interval,
            "timeout_seconds": timeout,
            "failures_before_down": failures,
            "config": config,
        }

    def service(
        name: str,
        display: str,
        kind: str,
        tier: int,
        owner: str,
        rto: int,
        rpo: int,
        runbook: str,
        checks: list[dict[str, Any]],
        description: str = "",
        restart: dict[str, Any] | None = None,
        restart_drill: str = "",
    ) -> dict[str, Any]:
        return {
            "name": name,
            "display_name": display,
            "kind": kind,
            "description": description,
            "tier": tier,
            "owner_role": owner,
            "rto_minutes": rto,
            "rpo_minutes": rpo,
            "runbook": runbook,
            "restart": restart or {},
            "restart_drill_schedule": restart_drill,
            "checks": checks,
        }

    services = [
        service(
            "onboarding-app",
            "Onboarding application",
            "web",
            1,
            "DevOps",
            30,
            1440,
            "service-failure",
            [
                check("health", "http", {"url": f"{app_url}/health", "keyword": '"status": "ok"'}),
                check("port", "tcp", {"host": app.hostname or "127.0.0.1", "port": app.port or 80}, interval=30),
            ],
            "Records sign-ups and onboarding steps; the product itself",
            # only in the local environment (`make up` sets HADR_RUN_DIR): a Compose worker cannot restart a container
            restart=local_restart("demo-app", env) if env.get("HADR_RUN_DIR") else None,
            # a real restart on the 15th of each month at 05:00: its RTO is measured, not assumed
            restart_drill="0 5 15 * *" if env.get("HADR_RUN_DIR") else "",
        ),
        service(
            "portal-web",
            "Portal web server",
            "web",
            2,
            "DevOps",
            60,
            1440,
            "portal-itself",
            [
                check("login-page", "http", {"url": f"{portal_url}/login/", "keyword": "Sign in"}, interval=30),
            ],
        ),
        service(
            "portal-db",
            "Portal database",
            "database",
            2,
            "DevOps",
            120,
            1440,
            "portal-itself",
            [
                check("postgres", "postgres", {"dsn_env": "HADR_DSN_PORTAL", "expected_replicas": 0}, interval=30),
            ],
            "The portal's own metadata (never on the managed cluster)",
        ),
        service(
            "redis",
            "Redis (task queue)",
            "queue",
            2,
            "DevOps",
            30,
            1440,
            "portal-itself",
            [
                check("ping", "redis", {"url_env": "HADR_REDIS_URL"}),
            ],
        ),
        *[
            service(
                f"worker-{queue}",
                f"Worker · {queue} queue",
                "worker",
                2,
                "DevOps",
                30,
                1440,
                "portal-itself",
                [
                    check("alive", "celery", {"queue": queue}),
                ],
            )
            for queue in ("checks", "ops", "default")
        ],
        service(
            "beat",
            "Scheduler (Celery beat)",
            "job",
            3,
            "DevOps",
            60,
            1440,
            "portal-itself",
            [
                check(
                    "heartbeat",
                    "heartbeat",
                    {"period_seconds": 60, "grace_seconds": 60, "source": "beat"},
                    interval=30,
                    failures=1,
                ),
            ],
            "Pings its heartbeat every minute through the default queue",
        ),
        service(
            "worker-host",
            "Worker host resources",
            "host",
            3,
            "DevOps",
            240,
            1440,
            "portal-itself",
            [
                check("resources", "host", {"disk_paths": ["/"]}, interval=30, timeout=5.0),
            ],
        ),
    ]
    clusters, storage_targets, backup_policies = [], [], []
    if nodes:
        clusters.append(
            {
                "name": "demo",
                "description": "Local demo cluster: the onboarding application's primary and streaming replica",
                "dbname": "onboarding",
                "user": "postgres",
                "password_env": "HADR_DEMO_PASSWORD",
                # monitoring, reading and backups each as a role of their own (`make up` creates them)
                **{f"{role.purpose}_user": role.name for role in LOCAL_ROLES},
                **{f"{role.purpose}_password_env": role.password_variable for role in LOCAL_ROLES},
                "max_failover_lag_bytes": 16 * 1024 * 1024,
                "nodes": nodes,
            }
        )
        backup_dir = env.get("HADR_BACKUP_DIR") or str(Path(settings.BASE_DIR) / ".run" / "backups")
        storage_targets.append({"name": "local", "kind": "local", "config": {"path": backup_dir}})
        backup_policies.append(
            {
                "name": "demo-onboarding",
                "cluster": "demo",
                "dbname": "onboarding",
                "engine": "pg_dump",
                "storage": "local",
                "schedule": env.get("HADR_DEMO_BACKUP_SCHEDULE") or "0 2 * * *",
                "keep_scheduled_days": 7,
                "keep_manual_days": 30,
                "rpo_minutes": 1440,
                "grace_minutes": 60,
                # restore drills prove the backups restore: weekly, into a scratch database, with these checks
                "drill_schedule": drill_schedule,
                "verify": DEMO_VERIFY,
            }
        )
        if physical:
            # its weekly drill is a point-in-time drill (a random second of the last day)
            backup_policies.append(DEMO_CLUSTER_POLICY | {"drill_schedule": drill_schedule})
        for node in nodes:
            tier = 1 if node["name"] == "primary" else 2
            services.append(
                service(
                    f"demo-db-{node['name']}",
                    f"Demo database · {node['name']}",
                    "database",
                    tier,
                    "DBA",
                    240,
                    1440,
                    "database-problem",
                    [check("postgres", "postgres", {"cluster": "demo", "node": node["name"]})]
                    # the RPO of the onboarding data: a missed backup alerts like a failed check
                    + ([check("backup", "backup", {"policy": "demo-onboarding"}, interval=60)] if tier == 1 else [])
                    # and of every committed second: WAL archiving late or failing alerts within one interval
                    + (
                        [check("archive", "archive", {"policy": "demo-cluster"}, interval=15, timeout=10.0, failures=1)]
                        if tier == 1 and physical
                        else []
                    ),
                    f"PostgreSQL {node['host']}:{node['port']}",
                )
            )
    ha_nodes = _nodes(env.get("HADR_DEMO_HA_NODES", ""))
    if ha_nodes:
        clusters.append(demo_ha_cluster(env, ha_nodes))
        services.append(
            service(
                "demo-ha-db",
                "Demo HA database (Patroni)",
                "database",
                1,
                "DBA",
                30,
                1,
                "database-problem",
                [
                    check(f"postgres-{node['name']}", "postgres", {"cluster": "demo-ha", "node": node["name"]})
                    for node in ha_nodes
                ],
                "PostgreSQL 15 under Patroni: fails over by itself within ~10 s",
            )
        )
    channels = [
        {
            "name": "ops-mail",
            "kind": "email",
            "target": env.get("HADR_DEMO_ALERT_EMAIL", "ops@example.com"),
            "target_env": "",
            "enabled": True,
            "min_tier": 4,
        }
    ]
    return {
        "clusters": clusters,
        "storage_targets": storage_targets,
        "backup_policies": backup_policies,
        "services": services,
        "alert_channels": channels,
        "funnels": [DEMO_FUNNEL] if nodes else [],
        **demo_contacts(env.get("HADR_DEMO_ALERT_EMAIL", "ops@example.com")),
    }


def demo_ha_cluster(env: dict[str, str], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The high-availability cluster (`make up`: etcd and two Patroni nodes): Patroni fails it over by itself; the
    portal reads and asks its REST API, probes its writes, and drills a switchover monthly."""
    return {
        "name": "demo-ha",
        "description": "Local high-availability cluster: two PostgreSQL 15 nodes under Patroni, etcd holding the leader key",
        "engine": "patroni",
        "patroni_urls": [url for url in env.get("HADR_DEMO_HA_PATRONI_URLS", "").split(",") if url],
        "patroni_user": env.get("HADR_PATRONI_REST_USER", "patroni"),
        "patroni_password_env": "HADR_PATRONI_REST_PASSWORD",
        "synchronous_mode": True,  # a failover loses no committed write
        "switchover_drill_schedule": "0 5 1 * *",  # the first of every month at 05:00
        "dbname": "postgres",
        "user": "postgres",
        "password_env": "HADR_DEMO_PASSWORD",
        **{f"{role.purpose}_user": role.name for role in LOCAL_ROLES},
        **{f"{role.purpose}_password_env": role.password_variable for role in LOCAL_ROLES},
        "max_failover_lag_bytes": 1024 * 1024,
        "nodes": nodes,
    }


def demo_contacts(email: str) -> dict[str, Any]:
    """The plan's hats as contacts: one person, a hat for each part of the day; escalation by severity."""
    hats = [
        ("Mauricio · DevOps (afternoons)", ["DevOps"], "Mon–Fri 13:00–18:00"),
        ("Mauricio · DBA (evenings)", ["DBA"], "Mon–Fri 18:00–23:00"),
        ("Mauricio · Developer (mornings)", ["Developer"], "Mon–Fri 08:00–12:00"),
        ("Mauricio · Product Manager (weekends)", ["Product Manager"], "Sat–Sun"),
        ("Mauricio · on call (holidays)", ["DevOps", "DBA"], "holidays, hoping nothing catches fire"),
    ]
    devops, dba, developer, _, on_call = (name for name, _, _ in hats)
    return {
        "contacts": [
            {"name": name, "roles": roles, "phone": "+55 11 90000-0000", "email": email, "webhook": "", "hours": hours}
            for name, roles, hours in hats
        ],
        "escalation": [
            {"severity": "sev1", "contacts": [devops, dba, on_call]},
            {"severity": "sev2", "contacts": [devops, dba]},
            {"severity": "sev3", "contacts": [developer, devops]},
        ],
    }
