"""The Metrics page under load with a long history: 2 years of daily and 90 days of hourly funnel counts."""

from __future__ import annotations

import random
from datetime import timedelta

FUNNEL = "bench-funnel"
STEPS = ["signed_up", "email_verified", "profile_completed", "first_project_created"]


def metrics_seed() -> dict[str, int]:
    """A push funnel (nothing queries for it) with 730 days x 4 steps and 90 x 24 hours x 4 steps of counts."""
    from django.utils import timezone

    from hadr_portal.metrics.models import Funnel, FunnelDayCount, FunnelHourCount

    metrics_cleanup()
    funnel = Funnel.objects.create(name=FUNNEL, description="Benchmark funnel", source="push", steps=STEPS)
    rng = random.Random(7)

    def walk(entries: int) -> list[int]:
        counts = [entries]
        for share in (0.7, 0.6, 0.45):
            counts.append(int(counts[-1] * share * rng.uniform(0.8, 1.2)))
        return counts

    today = timezone.localdate()
    days = [
        FunnelDayCount(funnel=funnel, day=today - timedelta(days=n), step=step, count=count)
        for n in range(730)
        for step, count in zip(STEPS, walk(rng.randint(800, 1400)), strict=True)
    ]
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    hours = [
        FunnelHourCount(funnel=funnel, hour=hour - timedelta(hours=n), step=step, count=count)
        for n in range(90 * 24)
        for step, count in zip(STEPS, walk(rng.randint(20, 80)), strict=True)
    ]
    FunnelDayCount.objects.bulk_create(days, batch_size=5000)
    FunnelHourCount.objects.bulk_create(hours, batch_size=5000)
    return {"days": len(days), "hours": len(hours)}


def metrics_cleanup() -> None:
    from hadr_portal.metrics.models import Funnel

    Funnel.objects.filter(name=FUNNEL).delete()
