"""Celery entry points for core services: take an id, call one service."""

from __future__ import annotations

from celery import shared_task

from . import dispatch, operations


@shared_task(name="hadr_portal.core.tasks.operation_execute")
def operation_execute_task(operation_id: int) -> None:
    operations.operation_execute(operation_id=operation_id)


@shared_task(name="hadr_portal.core.tasks.operations_reap")
def operations_reap_task() -> list[int]:
    return operations.operations_reap()


@shared_task(name="hadr_portal.core.tasks.outbox_drain")
def outbox_drain_task() -> int:
    return dispatch.outbox_drain()


@shared_task(name="hadr_portal.core.tasks.outbox_prune")
def outbox_prune_task() -> int:
    return dispatch.outbox_prune()
