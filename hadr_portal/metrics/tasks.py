"""Celery entry points of the metrics app (the `default` queue): each calls one service."""

from __future__ import annotations

from celery import shared_task

from . import funnels, resources, retention


@shared_task(name="hadr_portal.metrics.tasks.funnels_collect")
def funnels_collect() -> dict[str, str]:
    """Run the funnel queries that are due, on their replicas."""
    return funnels.funnels_collect_due()


@shared_task(name="hadr_portal.metrics.tasks.database_sizes_sample")
def database_sizes_sample() -> int:
    return resources.database_sizes_sample()


@shared_task(name="hadr_portal.metrics.tasks.metrics_prune")
def metrics_prune() -> dict[str, int]:
    return retention.metrics_prune()
