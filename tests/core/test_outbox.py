"""The transactional outbox (core.dispatch) against the real Redis, hung with SIGSTOP: a click answers within
3 s, the operation is saved and says why it waits, and it runs once — when Redis is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from django.urls import reverse

from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.dispatch import outbox_drain
from hadr_portal.core.models import Operation, OutboxMessage
from hadr_portal.core.permissions import Role
from hadr_portal.databases.services import connectivity_check_request
from hadr_portal.demo.redis_server import LocalRedis

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hung_redis(redis_server: LocalRedis) -> Iterator[LocalRedis]:
    """The session's Redis, stopped (not killed): connections open, nothing answers. Resumed afterwards."""
    pid = redis_server.pid()
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield redis_server
    finally:
        os.kill(pid, signal.SIGCONT)


def resume(redis: LocalRedis) -> None:
    pid = redis.pid()
    assert pid
    os.kill(pid, signal.SIGCONT)


def test_an_operation_requested_while_redis_hangs_waits_in_the_outbox_then_runs_once(
    demo_cluster, hung_redis: LocalRedis, start_worker
) -> None:
    started = time.monotonic()
    operation = connectivity_check_request(cluster=demo_cluster, actor=None)
    assert time.monotonic() - started < 3  # the broker's timeout, never the 60 s of a hung socket
    operation.refresh_from_db()
    assert operation.status == "queued"
    waiting = operation.waiting_for_queue
    assert waiting is not None and waiting.attempts == 1 and waiting.last_error
    assert outbox_drain() == 0  # still hung: nothing sent, nothing lost

    resume(hung_redis)
    start_worker("ops,default")  # a starting worker drains the outbox itself
    deadline = time.monotonic() + 60
    while Operation.objects.get(pk=operation.pk).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    operation.refresh_from_db()
    assert operation.status == "succeeded", operation.error
    assert OutboxMessage.objects.get(pk=waiting.pk).sent_at is not None
    started_lines = operation.log_lines.filter(message__startswith="Connectivity check started").count()
    assert operation.log_lines.filter(message="Operation succeeded.").count() == 1 and started_lines <= 1


def test_a_click_while_redis_hangs_answers_within_three_seconds_and_says_so(
    demo_cluster, client_as, tmp_path, hung_redis: LocalRedis
) -> None:
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    policy = BackupPolicy.objects.create(
        name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage
    )
    dba = client_as(Role.DBA)
    started = time.monotonic()
    response = dba.post(reverse("backups:backup-now", kwargs={"name": policy.name}), follow=True)
    assert time.monotonic() - started < 3
    page = response.content.decode()
    assert response.status_code == 200
    assert "the task queue (Redis) is unreachable" in page and "it will start when the queue is back" in page
    operation = Operation.objects.get(kind="backup")
    assert operation.status == "queued" and operation.waiting_for_queue is not None
