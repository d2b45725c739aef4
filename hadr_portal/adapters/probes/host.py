"""The host probe: CPU, memory and disk use, measured here or pushed by another host, judged by thresholds."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypedDict, Unpack

import psutil

from .base import DEGRADED, DOWN, UP, ProbeResult, level_of, run_bounded, worst_of

# probe_host has no timeout of its own, but a hung network mount blocks disk_usage() forever.
_HOST_GRACE_SECONDS = 5.0

# Disks one host report may carry, and how a disk is named: its mount point (POSIX, or a Windows drive).
MAX_DISKS = 32
MOUNT_POINT_MAX_LENGTH = 255
MOUNT_POINT = re.compile(rf"(?:/[^\x00-\x1f\x7f]{{0,{MOUNT_POINT_MAX_LENGTH - 1}}}|[A-Za-z]:\\?)")


class HostThresholds(TypedDict, total=False):
    """The percentages `evaluate_host` judges a host by; one left out keeps its default."""

    cpu_warning: float
    cpu_critical: float
    memory_warning: float
    memory_critical: float
    disk_warning: float
    disk_critical: float


def probe_host(
    *, disk_paths: Sequence[str] = ("/",), sample_seconds: float = 0.5, **limits: Unpack[HostThresholds]
) -> ProbeResult:
    """CPU (sampled over `sample_seconds`), memory and disk use of the machine we run on, judged by
    `evaluate_host` with its thresholds (`cpu_warning`, `disk_critical`, ...)."""

    def work() -> ProbeResult:
        values = {
            "cpu": psutil.cpu_percent(interval=max(sample_seconds, 0.1)),
            "memory": psutil.virtual_memory().percent,
            "disks": {path: psutil.disk_usage(path).percent for path in disk_paths},
        }
        result = evaluate_host(values, **limits)
        extra = {"load": [round(x, 2) for x in psutil.getloadavg()], "hostname": socket.gethostname()}
        return replace(result, data={**result.data, **extra})

    return run_bounded(sample_seconds + _HOST_GRACE_SECONDS, work)


def evaluate_host(
    values: Mapping[str, Any],
    *,
    cpu_warning: float = 85,
    cpu_critical: float = 95,
    memory_warning: float = 85,
    memory_critical: float = 95,
    disk_warning: float = 85,
    disk_critical: float = 95,
    max_disks: int = MAX_DISKS,
) -> ProbeResult:
    """Apply host thresholds to `{"cpu": 12.5, "memory": 40, "disks": {"/": 71.2}}`, measured here
    or pushed by another host. Raises ValueError naming the field when a value is not 0–100, when there
    are more than `max_disks` disks (each one is a series on /metrics), or when a disk is not named by
    its mount point (an absolute path, or a drive like C:\\, of printable characters, at most 255)."""
    if not isinstance(values, Mapping):
        raise ValueError('host values must be an object like {"cpu": 12.5, "memory": 40}')
    disks = values.get("disks", {})
    if not isinstance(disks, Mapping):
        raise ValueError("disks must be an object mapping mount paths to percentages")
    if len(disks) > max_disks:
        raise ValueError(f"disks: {len(disks)} given, at most {max_disks} are accepted (HADR_PUSH_MAX_DISKS)")
    for path in disks:
        if not isinstance(path, str) or not MOUNT_POINT.fullmatch(path):
            shown = repr(path) if len(repr(path)) <= 60 else repr(path)[:57] + "..."
            raise ValueError(
                f"disks: {shown} is not a mount point; give absolute paths like /var/lib/postgresql "
                f"(at most {MOUNT_POINT_MAX_LENGTH} printable characters)"
            )
    metrics = [
        ("cpu", "cpu", values.get("cpu"), cpu_warning, cpu_critical),
        ("memory", "memory", values.get("memory"), memory_warning, memory_critical),
        *((f"disks[{path!r}]", f"disk {path}", used, disk_warning, disk_critical) for path, used in disks.items()),
    ]
    checks = []
    for name, label, value, warning, critical in metrics:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise ValueError(f"{name} must be a number from 0 to 100, got {value!r}")
        level = level_of(value, warning, critical)
        limit = {UP: "", DEGRADED: f" (warning {warning:g} %)", DOWN: f" (critical {critical:g} %)"}[level]
        checks.append((level, f"{label} {value:.0f} %{limit}"))
    data = {
        "cpu": float(values["cpu"]),
        "memory": float(values["memory"]),
        "disks": {str(path): float(used) for path, used in disks.items()},
    }
    return worst_of(checks, None, data)
