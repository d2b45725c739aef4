"""Work queued by task name: every name is a task the workers know, and a queue that cannot be reached keeps the
operation queued in the outbox (saying why), never lost, never failed for the broker's sake."""

from __future__ import annotations

import ast
from pathlib import Path

from celery import Celery

from hadr_portal.celery import app
from hadr_portal.core import registry
from hadr_portal.core.dispatch import outbox_drain
from hadr_portal.core.models import EXECUTE_TASK, Operation, OutboxMessage
from hadr_portal.core.operations import operation_request, operation_unqueued

PACKAGE = Path(__file__).resolve().parent.parent.parent / "hadr_portal"
SENDERS = {"task_send", "task_send_on_commit"}


def _names_sent() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if called in SENDERS:
                names.add(node.args[0].value)
    return names


def test_every_task_sent_or_scheduled_by_name_is_one_the_workers_run():
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    sent = _names_sent()
    scheduled = {entry.task for entry in registry.periodic_tasks}
    assert {"hadr_portal.status.tasks.alert_deliver"} <= sent
    assert EXECUTE_TASK in app.tasks  # what every operation's outbox message names
    assert (sent | scheduled) - set(app.tasks) == set()


def test_an_operation_whose_queue_cannot_be_reached_waits_in_the_outbox_and_says_so(
    db, django_capture_on_commit_callbacks
):
    unreachable = Celery("unreachable", broker="redis://127.0.0.1:1/0", set_as_current=False)
    unreachable.conf.update(broker_connection_timeout=1, broker_transport_options={"socket_connect_timeout": 1})
    unreachable.set_current()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            queued = operation_request(kind="connectivity_check", target="cluster:nowhere", actor=None)
        assert outbox_drain() == 0  # still unreachable: kept
    finally:
        app.set_current()
    operation = Operation.objects.get(pk=queued.pk)
    assert operation.status == Operation.Status.QUEUED
    message = OutboxMessage.objects.get(task=EXECUTE_TASK, args=[operation.pk])
    assert message.sent_at is None and message.attempts == 2 and "Error" in message.last_error
    assert "the task queue (Redis) is unreachable" in operation_unqueued(operation)
