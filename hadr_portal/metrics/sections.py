"""The Metrics page's sections, rendered once for every reader and kept in Redis for a short while.

Nothing in them is user-specific (times are made relative in the browser), so one rendering per range
serves everyone for HADR_DASHBOARD_CACHE_SECONDS. The key carries the dashboard's version number, which
every state transition, catalog change and funnel collection bumps: a new outage marker or new counts
are never hidden behind the cache.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from hadr_portal.core.dashboard_version import dashboard_version

from . import selectors
from .resources import database_size_series, host_series

logger = logging.getLogger(__name__)


def _context(range_name: str) -> dict[str, Any]:
    days, bucket = selectors.RANGES[range_name]
    now = timezone.now()
    since = now - timedelta(days=days)
    hosts, host_days = host_series(days=days)
    return {
        "funnels": [
            {"summary": summary, "trend": selectors.funnel_trend(summary.funnel, range_name=range_name)}
            for summary in selectors.funnel_summaries()
        ],
        "markers": selectors.timeline_markers(since=since),
        "range_name": range_name,
        "bucket": bucket,
        "hosts": hosts,
        "host_since": now - timedelta(days=host_days),
        "host_days": host_days,
        "sizes": database_size_series(days=days),
        "since": since,
        "now": now,
    }


def _render(range_name: str) -> dict[str, str]:
    context = _context(range_name)
    return {
        "funnels": render_to_string("metrics/_funnels.html", context),
        "resources": render_to_string("metrics/_resources.html", context),
    }


def metrics_sections(range_name: str) -> dict[str, SafeString]:
    """{"funnels": html, "resources": html} for a range, at most HADR_DASHBOARD_CACHE_SECONDS old."""
    if settings.DASHBOARD_CACHE_SECONDS == 0:
        return {name: mark_safe(html) for name, html in _render(range_name).items()}  # noqa: S308
    try:
        key = f"metrics:sections:{range_name}:{dashboard_version()}"
        sections = cache.get(key)
    except Exception:  # Redis down: render without the cache (the dashboard says Redis is down)
        logger.warning("metrics page rendered without the cache", exc_info=True)
        key, sections = "", None
    if sections is None:
        sections = _render(range_name)
        if key:
            try:
                cache.set(key, sections, timeout=settings.DASHBOARD_CACHE_SECONDS)
            except Exception:
                logger.warning("could not cache the metrics page", exc_info=True)
    return {name: mark_safe(html) for name, html in sections.items()}  # noqa: S308 - our own rendered templates
