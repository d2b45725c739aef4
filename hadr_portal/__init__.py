"""HADR Portal: a small team's dashboard for high availability and disaster recovery."""

from __future__ import annotations

# Celery's Django layout: the app is created (and becomes Celery's current app) whenever Django starts, in the
# web process too, so a task sent by name from a request reaches Redis rather than Celery's default broker.
from .celery import app as celery_app

__all__ = ["celery_app"]
