"""The dashboard's version number: what is shared and cached for every reader is keyed by it.

Any app whose data a dashboard section shows bumps it when that data changes (a state transition, a catalog
edit, a failover, a new incident, new funnel counts), so a service going down is never hidden behind the cache.
It lives in core so that the apps below the dashboard can bump it without importing the dashboard.
"""

from __future__ import annotations

import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)
VERSION_KEY = "dashboard:version"


def dashboard_invalidate() -> None:
    """Bump the version: the next reader renders afresh. Redis down is only logged (nothing cached is served
    either)."""
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # no version yet
        cache.set(VERSION_KEY, 1, timeout=None)
    except Exception:
        logger.warning("could not invalidate the dashboard cache", exc_info=True)


def dashboard_version() -> int:
    """The current version; raises when Redis is unreachable (the caller renders without the cache)."""
    return int(cache.get_or_set(VERSION_KEY, 1, timeout=None) or 1)
