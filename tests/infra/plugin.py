"""The real parts the suite runs against, each started the first time a test needs it (once per process):

- the portal's own PostgreSQL, for the first test that uses the database (pytest-django creates
  `test_hadr_portal` in it, running every migration)
- a managed cluster, PostgreSQL 15 primary + streaming replica (slot `replica1`) with the portal's
  least-privilege roles (hadr_monitor, hadr_reader, hadr_backup: `make up` creates the same), for tests
  marked `pg` or using the `infra` fixture
- Redis, for tests marked `redis`: those that start Celery workers, serve the portal live or commit (what they
  queue on commit reaches the broker); every other test gets a cache of its own in memory (tests/conftest.py)
- Chromium is the session's `browser` fixture (tests/conftest.py), started by the first test that drives it

Django reads their addresses from the environment when it is configured, before any test runs: the ports and
passwords are chosen here up front (cheap), the processes start on first use. Everything listens on loopback,
lives in a temporary directory (in memory where there is one) and is stopped at the end of the session. Under
`pytest -n N` (pytest-xdist, as `make test` runs it) every worker process has its own set. Loaded with
`-p tests.infra.plugin` (pyproject.toml) so that its environment exists before pytest-django imports the settings.

A test gets a marker for each part its fixtures need (`pg`, `redis`, `browser`; `slow` for worker processes, a
live server or a transactional database), so that `-m` selects by what a test costs (`make test-fast`: none of
them); a test that needs a part through no fixture says so with the marker, which starts the part.
"""

from __future__ import annotations

import fcntl
import os
import random
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from hadr_portal.adapters.pg.server import LocalInstance
from hadr_portal.demo.cluster import LOCAL_ROLES, ensure_roles, make_replica
from hadr_portal.demo.patroni import Member
from hadr_portal.demo.redis_server import LocalRedis
from tests.infra.patroni import PatroniCluster, PatroniNode
from tests.infra.s3tls import TlsS3


def free_port() -> int:
    """A free port for a server the caller starts at once (the kernel may hand it to anyone later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_dir(prefix: str) -> Path:
    """A new directory (mode 700) for servers' data, in memory where the machine has it: initdb, base backups,
    copies of data directories and migrations are several times faster there than on a disk (the test servers run
    with fsync off: nothing of theirs is kept anyway)."""
    memory = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=memory if os.access(memory, os.W_OK) else None))


PORT_LOCKS = Path(tempfile.gettempdir()) / "hadr-test-ports"
_held_ports: list[IO[str]] = []


def reserve_port() -> int:
    """A port for a server that starts later in the session, maybe minutes later. Taken below the kernel's
    ephemeral range, which `free_port()` and every outgoing connection draw from, and held by a lock file until
    this process exits, so that neither another test process nor a client socket takes it in the meantime."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    PORT_LOCKS.mkdir(exist_ok=True)
    if os.stat(PORT_LOCKS).st_uid == os.geteuid():
        PORT_LOCKS.chmod(0o1777)  # shared by every user's test runs, like /tmp
    for _ in range(200):
        port = random.randrange(max(1024, low - 10000), low)
        handle = open(PORT_LOCKS / f"{port}.lock", "a")  # held open for the session
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                handle.close()
                continue
        _held_ports.append(handle)
        return port
    raise RuntimeError(f"no free port below {low}")


class Part:
    """One thing the suite runs against, started once on first use (thread-safe: a live server's thread may ask
    too); its failure to start is kept and raised again for every later test instead of starting it again."""

    def __init__(self, start: Callable[[], None]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self.started = False
        self._error: BaseException | None = None

    def ensure(self) -> None:
        with self._lock:
            if self._error is not None:
                raise RuntimeError(f"could not start: {self._error}") from self._error
            if not self.started:
                try:
                    self._start()
                except BaseException as exc:
                    self._error = exc
                    raise
                self.started = True


@dataclass
class Infrastructure:
    """The servers of this test process, on the ports chosen at start-up; `start_*` starts one if needed."""

    root: Path
    portal: LocalInstance
    primary: LocalInstance
    replica: LocalInstance
    redis: LocalRedis
    demo_password: str
    role_passwords: dict[str, str] = field(default_factory=dict)  # hadr_monitor, hadr_reader, hadr_backup

    def __post_init__(self) -> None:
        self._portal = Part(self._portal_start)
        self._cluster = Part(self._cluster_start)
        self._redis = Part(self.redis.start)
        self.s3_tls = TlsS3(self.root / "s3tls", reserve_port())
        self._s3_tls = Part(self.s3_tls.start)
        home = self.root / "patroni"
        self.patroni = PatroniCluster(
            home,
            f"hadr-test-{os.getpid()}",
            reserve_port(),
            reserve_port(),
            [PatroniNode(Member(name, reserve_port(), reserve_port(), home / name)) for name in ("node1", "node2")],
        )
        self._patroni = Part(self.patroni.start)

    @classmethod
    def plan(cls) -> Infrastructure:
        root = scratch_dir("hadr-test-")
        os.chmod(root, 0o755)  # the postgres user works in it
        (root / "static").mkdir()
        password = secrets.token_urlsafe(16)
        return cls(
            root,
            LocalInstance(root / "pg" / "portal", reserve_port(), password, fsync=False),
            LocalInstance(root / "pg" / "primary", reserve_port(), password, fsync=False),
            LocalInstance(root / "pg" / "replica", reserve_port(), password, fsync=False),
            LocalRedis(root / "redis", reserve_port()),
            password,
            {role.name: secrets.token_urlsafe(16) for role in LOCAL_ROLES},
        )

    def environment(self) -> dict[str, str]:
        """What the settings read: where the servers will be."""
        return {
            "HADR_DATABASE_URL": f"postgres://postgres:{self.demo_password}@127.0.0.1:{self.portal.port}/hadr_portal",
            "HADR_REDIS_URL": self.redis.url,
            "HADR_DEMO_PASSWORD": self.demo_password,
            **{role.password_variable: self.role_passwords[role.name] for role in LOCAL_ROLES},
            "HADR_DEMO_NODES": f"primary=127.0.0.1:{self.primary.port},replica=127.0.0.1:{self.replica.port}",
            "HADR_STATIC_ROOT": str(self.root / "static"),
            "HADR_PGBACKREST_DIR": str(self.root / "pgbackrest"),
            "HADR_TESTING": "true",
        }

    def start_portal(self) -> None:
        self._portal.ensure()

    def start_cluster(self) -> None:
        self._cluster.ensure()

    def start_redis(self) -> None:
        self._redis.ensure()

    def start_s3_tls(self) -> None:
        self._s3_tls.ensure()

    def start_patroni(self) -> None:
        self._patroni.ensure()

    def _portal_start(self) -> None:
        self.portal.initdb()
        self.portal.start()

    def _cluster_start(self) -> None:
        self.primary.initdb()
        self.primary.start()
        with ThreadPoolExecutor(2) as pool:  # the clone and the demo database do not wait for each other
            clone = pool.submit(make_replica, self.primary, self.replica, slot="replica1")
            self.primary.psql("CREATE DATABASE onboarding")
            ensure_roles(self.primary.conninfo(), self.role_passwords)  # the replica gets them by replication
            clone.result()
        self.replica.start()

    def stop(self) -> None:
        for instance in (self.replica, self.primary, self.portal):
            try:
                if instance.exists():  # never started: nothing to stop
                    instance.stop(mode="immediate")
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {instance.data_dir}: {exc}")
        self.redis.stop()
        self.s3_tls.stop()
        self.patroni.stop()
        shutil.rmtree(self.root, ignore_errors=True)


INFRA: Infrastructure | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global INFRA
    if _is_xdist_controller(early_config):
        # `pytest -n N`: each worker process has its own parts; the controller only hands out tests, but it
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
    INFRA = Infrastructure.plan()
    os.environ.update(
        {
            "HADR_SECRET_KEY": secrets.token_urlsafe(50),
            **INFRA.environment(),
            "HADR_LOG_FORMAT": "text",
            "HADR_OPERATION_HEARTBEAT_INTERVAL": "1",
            "HADR_OPERATION_HEARTBEAT_TIMEOUT": "4",
            "HADR_OPERATION_REAPER_INTERVAL": "2",
            "HADR_DASHBOARD_REFRESH_SECONDS": "1",
            "HADR_EMAIL_BACKEND": "console",
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


def _infra() -> Infrastructure:
    assert INFRA is not None, "the servers are planned when pytest starts (tests.infra.plugin)"
    return INFRA


@pytest.fixture(scope="session")
def portal_server() -> Infrastructure:
    """The portal's own PostgreSQL, running (tests/conftest.py makes the test database wait for it)."""
    _infra().start_portal()
    return _infra()


@pytest.fixture(scope="session")
def infra() -> Infrastructure:
    """The managed cluster, running: `infra.primary`, `infra.replica` (streaming, slot `replica1`)."""
    _infra().start_cluster()
    return _infra()


@pytest.fixture(scope="session")
def s3_tls() -> TlsS3:
    """moto's S3 over HTTPS (self-signed, 127.0.0.1), running: pgBackRest's second repository."""
    _infra().start_s3_tls()
    return _infra().s3_tls


@pytest.fixture
def patroni_cluster() -> PatroniCluster:
    """A real Patroni cluster (etcd + two PostgreSQL nodes), running: `rest_urls`, `nodes`, `leader()`. Each test
    gets it settled — one leader every member agrees on, the replica streaming — whatever the test before did to
    it (a switchover, a killed node restarted), its replica streaming."""
    _infra().start_patroni()
    cluster = _infra().patroni
    cluster.wait(cluster.ready, "settled cluster with a streaming replica", 90)
    return cluster


@pytest.fixture(scope="session")
def redis_server() -> LocalRedis:
    """Redis, running: the broker of the Celery workers and the cache they share with the tests."""
    _infra().start_redis()
    return _infra().redis


# What each marker means, by the fixtures that need that part (a test's `fixturenames` holds every fixture it
# depends on, so `demo_cluster` counts as `infra`, `start_worker` as `redis_server`). A transactional test
# commits, so what it queues on commit (an operation, an alert) reaches the broker: it needs Redis too.
MARKER_FIXTURES = {
    "pg": frozenset({"infra", "patroni_cluster"}),
    "redis": frozenset({"redis_server", "live_server", "transactional_db"}),
    "browser": frozenset({"browser"}),
    "slow": frozenset({"start_worker", "live_server", "page", "transactional_db", "patroni_cluster"}),
}
MARKER_PARTS = {"pg": "infra", "redis": "redis_server"}


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    """Before `-m` deselects by marker: mark each test with what its fixtures need (a transactional database, by
    marker: not a fixture name, counts too). After pytest-django has put the database tests first: the tests of
    each `xdist_group` first of all, together. pytest-xdist's own grouping (`--dist loadgroup`) renames node ids,
    which pytest 9 computes, so it groups nothing; `make test` hands tests out with `--dist worksteal`, which gives
    each worker one run of the list to work from its start (others steal from its end), and so the first worker runs
    each group, and the module fixture the group shares (one `make up`, one big table) is made once."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        database = item.get_closest_marker("django_db")
        if database and database.kwargs.get("transaction"):
            fixtures.add("transactional_db")
        for marker, needs in MARKER_FIXTURES.items():
            if needs & fixtures and not item.get_closest_marker(marker):
                item.add_marker(marker)
    yield
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = item.get_closest_marker("xdist_group")
        if group is not None:
            name = str(group.args[0] if group.args else group.kwargs.get("name", "default"))
            groups.setdefault(name, []).append(item)
    grouped = [item for members in groups.values() for item in members]
    first = {id(item) for item in grouped}
    items[:] = grouped + [item for item in items if id(item) not in first]


@pytest.fixture(autouse=True)
def _parts_for_markers(request: pytest.FixtureRequest) -> None:
    """A test marked `pg` or `redis` gets that part even when none of its fixtures asks for it."""
    for marker, fixture in MARKER_PARTS.items():
        if request.node.get_closest_marker(marker):
            request.getfixturevalue(fixture)
