"""Starts the real parts the suite runs against, before Django is configured.

- the portal's own PostgreSQL (pytest-django creates `test_hadr_portal` in it)
- a managed cluster: PostgreSQL 15 primary + streaming replica (slot `replica1`), with the portal's
  least-privilege roles (hadr_monitor, hadr_reader, hadr_backup: `make up` creates the same)
- Redis

All on free loopback ports under a temporary directory, stopped at the end of the session. Under
`pytest -n N` (pytest-xdist, as `make test` runs it) every worker process has its own set.
Loaded with `-p tests.infra.plugin` (pyproject.toml) so that its environment exists before
pytest-django imports the settings.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hadr_portal.adapters.localpg import LOCAL_ROLES, LocalInstance, ensure_roles, make_replica
from hadr_portal.adapters.localredis import LocalRedis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Infrastructure:
    root: Path
    portal: LocalInstance
    primary: LocalInstance
    replica: LocalInstance
    redis: LocalRedis
    demo_password: str
    role_passwords: dict[str, str] = field(default_factory=dict)  # hadr_monitor, hadr_reader, hadr_backup

    def stop(self) -> None:
        for instance in (self.replica, self.primary, self.portal):
            try:
                instance.stop(mode="immediate")
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {instance.data_dir}: {exc}")
        self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)


INFRA: Infrastructure | None = None


def _start() -> Infrastructure:
    root = Path(tempfile.mkdtemp(prefix="hadr-test-"))
    os.chmod(root, 0o755)
    password = secrets.token_urlsafe(16)
    portal = LocalInstance(root / "pg" / "portal", free_port(), password, fsync=False)
    primary = LocalInstance(root / "pg" / "primary", free_port(), password, fsync=False)
    replica = LocalInstance(root / "pg" / "replica", free_port(), password, fsync=False)
    redis = LocalRedis(root / "redis", free_port())
    (root / "static").mkdir()
    roles = {role.name: secrets.token_urlsafe(16) for role in LOCAL_ROLES}
    infra = Infrastructure(root, portal, primary, replica, redis, password, roles)
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda i: i.initdb(), (portal, primary)))
            started = [pool.submit(portal.start), pool.submit(primary.start), pool.submit(redis.start)]
            for future in started:
                future.result()
        make_replica(primary, replica, slot="replica1")
        replica.start()
        primary.psql("CREATE DATABASE onboarding")
        ensure_roles(primary, roles)  # the replica gets them by replication
    except BaseException:
        infra.stop()
        raise
    return infra


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global INFRA
    if _is_xdist_controller(early_config):
        # `pytest -n N`: each worker process starts its own parts; the controller only hands out tests, but it
        # still configures Django, which needs settings that connect nowhere.
        os.environ.update(
            {
                "HADR_SECRET_KEY": secrets.token_urlsafe(50),
                "HADR_DATABASE_URL": "postgres://controller@127.0.0.1:1/unused",
                "HADR_REDIS_URL": "redis://127.0.0.1:1/0",
                "HADR_DEBUG": "true",
            }
        )
        return
    INFRA = _start()
    os.environ.update(
        {
            "HADR_SECRET_KEY": secrets.token_urlsafe(50),
            "HADR_DATABASE_URL": f"postgres://postgres:{INFRA.demo_password}@127.0.0.1:{INFRA.portal.port}/hadr_portal",
            "HADR_REDIS_URL": INFRA.redis.url,
            "HADR_DEMO_PASSWORD": INFRA.demo_password,
            **{role.password_variable: INFRA.role_passwords[role.name] for role in LOCAL_ROLES},
            "HADR_DEMO_NODES": f"primary=127.0.0.1:{INFRA.primary.port},replica=127.0.0.1:{INFRA.replica.port}",
            "HADR_LOG_FORMAT": "text",
            "HADR_OPERATION_HEARTBEAT_INTERVAL": "1",
            "HADR_OPERATION_HEARTBEAT_TIMEOUT": "4",
            "HADR_OPERATION_REAPER_INTERVAL": "2",
            "HADR_DASHBOARD_REFRESH_SECONDS": "1",
            "HADR_EMAIL_BACKEND": "console",
            "HADR_STATIC_ROOT": str(INFRA.root / "static"),
            "HADR_DEBUG": "true",
            "HADR_ALLOW_PRIVATE_TARGETS": "true",  # every test target is on loopback; SSRF tests override it
            "HADR_2FA_REQUIRED": "false",  # tests that need two-factor required override the setting
            "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
        }
    )


def _is_xdist_controller(config: pytest.Config) -> bool:
    workers = getattr(config.known_args_namespace, "numprocesses", None)
    return bool(workers) and "PYTEST_XDIST_WORKER" not in os.environ


def pytest_unconfigure(config: pytest.Config) -> None:
    if INFRA is not None:
        INFRA.stop()
