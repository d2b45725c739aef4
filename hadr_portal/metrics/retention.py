"""How long metrics are kept: hourly funnel counts `HADR_FUNNEL_HOURLY_DAYS`, database sizes as long as check
rollups (`HADR_CHECK_ROLLUPS_DAYS`), the newest `HADR_ERROR_LOG_KEEP` logged errors. Daily counts stay."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import DatabaseSize, FunnelHourCount, LoggedError

ERRORS_CAP = f"""
DELETE FROM {LoggedError._meta.db_table}
WHERE id < (SELECT id FROM {LoggedError._meta.db_table} ORDER BY id DESC OFFSET %s LIMIT 1)
"""


def metrics_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention; the number of rows deleted per kind."""
    now = now or timezone.now()
    hours, _ = FunnelHourCount.objects.filter(hour__lt=now - timedelta(days=settings.FUNNEL_HOURLY_DAYS)).delete()
    sizes, _ = DatabaseSize.objects.filter(at__lt=now - timedelta(days=settings.CHECK_ROLLUPS_DAYS)).delete()
    with connection.cursor() as cursor:
        cursor.execute(ERRORS_CAP, [settings.ERROR_LOG_KEEP - 1])
        errors = cursor.rowcount
    return {"funnel_hours": hours, "database_sizes": sizes, "logged_errors": errors}
