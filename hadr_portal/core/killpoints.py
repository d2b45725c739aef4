"""Kill points: places in multi-step operations where a crash test makes the worker die as `kill -9` would.

`kill_point("backup.pgbackrest-started")` does nothing unless the test-only setting names it
(HADR_TEST_KILL_POINTS, read only with HADR_TESTING on): then the process SIGKILLs itself on the spot, with no
clean-up, no `finally`, no last database write, exactly like a worker lost to the OOM killer. The code under test
is the code that runs in production; only this setting differs.
"""

from __future__ import annotations

import logging
import os
import signal

from django.conf import settings

logger = logging.getLogger(__name__)


def kill_point(name: str) -> None:
    if name in settings.KILL_POINTS:
        logger.warning("kill point %s: SIGKILL to process %s", name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
