"""Shared fixtures: accounts with roles, the demo cluster in the catalog, real Celery workers."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hadr_portal.adapters.commands import DEFAULT_COMMAND_USER, CommandFailed, run_program
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster
from hadr_portal.demo.cluster import LOCAL_ROLES
from tests.infra import plugin

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("HADR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, portal_server: plugin.Infrastructure
) -> None:
    """pytest-django's hook before it creates the test database: the portal's PostgreSQL starts here, for the
    first test that uses the database, and not at all for a session that never does."""


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> None:
    """Accounts are made by the hundred here: a deliberately slow hash (PBKDF2, ~0.2 s) would cost a minute of
    the suite and prove nothing about the portal. Production keeps Django's default hashers."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(username: str = "alice", *roles: Role, superuser: bool = False) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_superuser=superuser, is_staff=superuser)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role.value)[0])
    return user


@pytest.fixture
def client_as(db: None) -> Callable[..., Client]:
    """`client_as(Role.DBA)` → a logged-in test client for a new account holding those roles."""
    counter = iter(range(1000))

    def build(*roles: Role, superuser: bool = False) -> Client:
        user = make_user(f"user{next(counter)}", *roles, superuser=superuser)
        client = Client()
        client.force_login(user)
        client.user = user  # type: ignore[attr-defined]
        return client

    return build


@pytest.fixture
def demo_cluster(db: None, infra: plugin.Infrastructure) -> Cluster:
    from hadr_portal.databases.services import cluster_upsert

    return cluster_upsert(
        name="demo",
        nodes={"primary": ("127.0.0.1", infra.primary.port), "replica": ("127.0.0.1", infra.replica.port)},
        description="test cluster",
        dbname="onboarding",
        user="postgres",
        password_env="HADR_DEMO_PASSWORD",
        # each purpose as its own role, as `make up` sets the demo up (tests/infra/plugin.py creates them)
        **{f"{role.purpose}_user": role.name for role in LOCAL_ROLES},
        **{f"{role.purpose}_password_env": role.password_variable for role in LOCAL_ROLES},
    )


class WorkerProcess:
    """A real `celery worker` subprocess against the test database and Redis."""

    def __init__(self, queues: str, name: str, extra_env: dict[str, str] | None = None) -> None:
        from django.db import connection

        env = {**os.environ, **(extra_env or {})}
        db_name = connection.settings_dict["NAME"]
        env["HADR_DATABASE_URL"] = env["HADR_DATABASE_URL"].rsplit("/", 1)[0] + f"/{db_name}"
        self.log_path = Path(plugin.INFRA.root if plugin.INFRA else "/tmp") / f"worker-{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hadr_portal",
                "worker",
                "-Q",
                queues,
                "-c",
                "2",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.name = name
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        from hadr_portal.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            replies = app.control.ping(timeout=0.5) or []
            if any(name.startswith(f"{self.name}@") for reply in replies for name in reply):
                return
        raise RuntimeError(f"worker {self.name} not ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def start_worker(transactional_db: None, redis_server: object) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery workers for the test; all are stopped afterwards."""
    workers: list[WorkerProcess] = []

    def start(queues: str = "checks,ops,default", name: str = "w", env: dict[str, str] | None = None) -> WorkerProcess:
        """`env`: more variables for the worker, e.g. HADR_TEST_KILL_POINTS (core.killpoints)."""
        worker = WorkerProcess(queues, f"{name}{len(workers)}-{os.getpid()}", env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(autouse=True)
def _fresh_cache(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from an empty cache. A test marked `redis` uses the real one, which it shares with
    workers and outlives the test; a `db` test never commits, so its catalog changes never invalidate the
    dashboard's tiles there: it starts from a new dashboard version. Any other test gets a cache of its own in
    memory, so that it needs no Redis."""
    from django.core.cache import cache
    from django.test import override_settings

    from hadr_portal.core.dashboard_version import dashboard_invalidate

    if request.node.get_closest_marker("redis"):
        request.getfixturevalue("redis_server")
        dashboard_invalidate()
        yield
        return
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
    ):
        cache.clear()
        yield


# Programs the catalog names run as the command user when the worker is root (as the tests are, on CI): what a test
# gives them must be readable by that user — pytest's tmp_path is not (it is under a directory only root enters).
COMMAND_USER = os.environ.get("HADR_COMMAND_USER") or DEFAULT_COMMAND_USER


@functools.cache
def command_python() -> str:
    """A Python the command user can run, for test programs that need only the standard library: this one, unless
    it lives where other users cannot reach (a pyenv Python under /root), then the system's python3."""
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate and _runs_as_command_user(candidate):
            return str(candidate)
    raise RuntimeError(f"the command user {COMMAND_USER} can run no Python here (is it created? `make install-dev`)")


def _runs_as_command_user(python: str) -> bool:
    try:
        return run_program([python, "-c", ""], user=COMMAND_USER, check=False).returncode == 0
    except CommandFailed:  # no such account, or it cannot start the program at all
        return False


@pytest.fixture
def exec_dir() -> Iterator[Path]:
    """A scratch directory the command user may read and write (a program run as that user writes its files here)."""
    path = Path(tempfile.mkdtemp(prefix="hadr-exec-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for(
    predicate: Callable[[], object], *, timeout: float = 30, interval: float = 0.2, message: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout} s")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item (the browser fixture screenshots failures)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- Chromium (Playwright) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make install-dev`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login/?next=/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
