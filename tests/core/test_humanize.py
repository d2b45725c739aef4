"""Durations as the pages, check messages and postmortems say them."""

from __future__ import annotations

import pytest

from hadr_portal.core.humanize import duration_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0 s"),  # a clock a little ahead
        (0, "0 s"),
        (14.4, "14 s"),
        (89.6, "90 s"),
        (90, "1 min"),
        (12 * 60 + 59, "12 min"),
        (3599, "59 min"),
        (3600, "1.0 h"),
        (3.5 * 3600, "3.5 h"),
        (2 * 86400 - 1, "48.0 h"),
        (2 * 86400, "2.0 days"),
        (30 * 86400, "30.0 days"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-3, "1 min"), (0, "1 min"), (59, "1 min"), (90, "1 min"), (15 * 60, "15 min"), (86400, "24.0 h")],
)
def test_coarse_duration_text_never_says_seconds(seconds: float, text: str) -> None:
    assert duration_text(seconds, coarse=True) == text
