"""The live RPO of a pgBackRest policy's WAL archiving: how old the newest archived WAL is, whether archiving fails
and why, which seconds a point-in-time restore can reach, and whether pgBackRest dropped WAL.

`archive_state_refresh(policy=…)` asks the cluster's primary (pg_stat_archiver, as the monitoring role),
`pgbackrest info` and pgBackRest's archive-push logs, and stores what it found on the policy (`archive_state`,
`archive_state_at`): the Databases page, the dashboard and /metrics read that, never the servers. The `archive`
health check refreshes it every interval. It never raises: what could not be read is said in `problem`.

- age: now − when the newest segment was archived, but 0 ("idle") when the segment being written holds nothing
  but its page header and the snapshot of running transactions the background writer logs after a switch, and the
  segment before it is archived: an idle server loses nothing, so it breaks no objective.
- window: from the oldest backup set's stop (its consistency point) to the newest archived WAL (now when idle).
- dropped WAL: past archive-push-queue-max pgBackRest tells PostgreSQL a segment is archived without storing it (to
  save the primary's disk). pg_stat_archiver cannot tell; pgBackRest's log says so. No point from the last WAL
  archived before the drop until a full backup started after it can be restored: that gap is kept in the state,
  so it outlives the log lines that revealed it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.pg.archive import ArchiverStatus, archiver_status
from hadr_portal.adapters.pgbackrest import PgBackRestError, StanzaInfo, wal_order
from hadr_portal.adapters.pgbackrest import info as pgbackrest_info
from hadr_portal.adapters.pgbackrest.archive_log import ArchiveLog, archive_log_read
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.core.humanize import duration_text
from hadr_portal.databases.models import Node, Purpose
from hadr_portal.databases.topology import cluster_primary

from .models import BackupPolicy
from .stanza import StanzaProblem, stanza_for

# The first page's long header (40 bytes) and one snapshot of running transactions (56 bytes, 4 more per running
# transaction id): what an idle primary writes after a switch. Any commit after a checkpoint (a full page image)
# writes far more.
SWITCH_RESIDUE_BYTES = 128
ERROR_CHARS = 400
GAPS_KEPT = 10
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")


@dataclass(frozen=True)
class Gap:
    """Seconds no restore can reach: WAL dropped at `dropped_at`, the last WAL archived before it at `start`;
    mended at `end` (the stop of the first full set started after the drop), or None: not yet."""

    start: datetime
    dropped_at: datetime
    end: datetime | None
    first_wal: str = ""
    last_wal: str = ""


@dataclass(frozen=True)
class ArchiveState:
    """What archiving said at `checked_at` (the JSON in `BackupPolicy.archive_state`; times are aware)."""

    checked_at: datetime
    objective_seconds: int
    stanza: str = ""
    primary: str = ""
    last_archived_wal: str = ""
    last_archived_time: datetime | None = None
    failed_count: int = 0
    last_failed_wal: str = ""
    last_failed_time: datetime | None = None
    failing: bool = False
    error: str = ""  # pgBackRest's own error for the failing push (pg_stat_archiver has no text)
    error_time: datetime | None = None
    age_seconds: float | None = None  # None: not measured (see problem)
    idle: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    wal_dropped: bool = False  # an unmended gap: PITR is broken from `pitr_broken_from` until a full backup
    pitr_broken_from: datetime | None = None
    gaps: tuple[Gap, ...] = ()
    log_problem: str = ""
    problem: str = ""  # what could not be read: the age or the window is not known

    @property
    def objective_met(self) -> bool:
        return not self.failing and self.age_seconds is not None and self.age_seconds <= self.objective_seconds

    @property
    def mended_gaps(self) -> tuple[Gap, ...]:
        return tuple(gap for gap in self.gaps if gap.end is not None)

    def age_at(self, moment: datetime) -> float | None:
        """The age now, from the stored one: it grows from `checked_at` on (an upper bound when idle then)."""
        if self.age_seconds is None:
            return None
        return self.age_seconds + max(0.0, (moment - self.checked_at).total_seconds())

    def as_data(self) -> dict[str, Any]:
        data = {key: _json(value) for key, value in asdict(self).items() if key != "gaps"}
        data["gaps"] = [{key: _json(value) for key, value in asdict(gap).items()} for gap in self.gaps]
        return data | {"objective_met": self.objective_met}

    @classmethod
    def from_data(cls, data: Any) -> ArchiveState | None:
        """The stored state, or None when there is none (never refreshed) or it cannot be read."""
        if not isinstance(data, dict) or _time(data.get("checked_at")) is None:
            return None
        values: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            if name in data and name != "gaps":
                values[name] = _time(data[name]) if "datetime" in kind else data[name]
        gaps = []
        for raw in data.get("gaps") or []:
            start, dropped = _time(raw.get("start")), _time(raw.get("dropped_at"))
            if start and dropped:
                gaps.append(
                    Gap(start, dropped, _time(raw.get("end")), raw.get("first_wal", ""), raw.get("last_wal", ""))
                )
        try:
            return cls(**values, gaps=tuple(gaps))
        except TypeError:
            return None


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def archive_state_of(policy: BackupPolicy) -> ArchiveState | None:
    return ArchiveState.from_data(policy.archive_state)


# --- the state --------------------------------------------------------------------------------------------


def archive_state_compute(
    *,
    now: datetime,
    objective_seconds: int,
    status: ArchiverStatus | None,
    info: StanzaInfo | None,
    log: ArchiveLog,
    previous: ArchiveState | None = None,
    stanza: str = "",
    primary: str = "",
    problems: tuple[str, ...] = (),
) -> ArchiveState:
    """The state from what was read (None: could not be read; `problems` says why). Pure: tests feed it."""
    state = ArchiveState(now, objective_seconds, stanza, primary, log_problem=log.problem, problem="; ".join(problems))
    if status is not None:
        state = _from_archiver(state, status, info, log)
    elif previous is not None:  # the primary is away: what it said last, no age
        state = replace(
            state, last_archived_wal=previous.last_archived_wal, last_archived_time=previous.last_archived_time
        )
    sets = info.backups if info is not None else ()
    gaps = _gaps(log, sets, previous)
    oldest = min(sets, key=lambda item: item.stopped_at) if sets else None
    start = oldest.stopped_at if oldest else None
    end = (status.now if state.idle and status else None) or state.last_archived_time
    open_gaps = [gap for gap in gaps if gap.end is None]
    if open_gaps and end is not None:
        end = min(end, open_gaps[0].start)
    if start is not None and end is not None:
        end = max(start, end)
    kept = tuple(gap for gap in gaps if gap.end is None or start is None or gap.end > start)[-GAPS_KEPT:]
    return replace(
        state,
        window_start=start,
        window_end=end if start is not None else None,
        gaps=kept,
        wal_dropped=bool(open_gaps),
        pitr_broken_from=open_gaps[0].start if open_gaps else None,
    )


def _from_archiver(
    state: ArchiveState, status: ArchiverStatus, info: StanzaInfo | None, log: ArchiveLog
) -> ArchiveState:
    archived = status.last_archived_wal[:24]
    if not _SEGMENT.match(archived):  # a timeline history file, or nothing since the statistics were reset
        archived = info.newest_wal() if info is not None else ""
    idle = (
        not status.failing
        and bool(status.closed_wal)
        and status.current_wal_bytes <= SWITCH_RESIDUE_BYTES
        and bool(archived)
        and wal_order(archived) >= wal_order(status.closed_wal)
    )
    age = None
    if idle:
        age = 0.0
    elif status.last_archived_time is not None:
        age = max(0.0, (status.now - status.last_archived_time).total_seconds())
    error, error_time = "", None
    if status.failing:
        since = status.last_archived_time - timedelta(seconds=2) if status.last_archived_time else None
        recent = [entry for entry in log.failures if since is None or entry.at >= since]
        if recent:
            error, error_time = recent[-1].summary()[:ERROR_CHARS], recent[-1].at
    return replace(
        state,
        last_archived_wal=status.last_archived_wal,
        last_archived_time=status.last_archived_time,
        failed_count=status.failed_count,
        last_failed_wal=status.last_failed_wal,
        last_failed_time=status.last_failed_time,
        failing=status.failing,
        error=error,
        error_time=error_time,
        age_seconds=age,
        idle=idle,
    )


def _gaps(log: ArchiveLog, sets: tuple[Any, ...], previous: ArchiveState | None) -> list[Gap]:
    """Every drop, the ones the stored state remembers included, grouped by the full set that mends them (the first
    started after the drop: a restore from it needs no WAL from before). Oldest first."""
    fulls = sorted((item for item in sets if item.type == "full"), key=lambda item: item.started_at)
    before_drop = [previous.last_archived_time] if previous and previous.last_archived_time else []
    found = list(previous.gaps) if previous else []
    for at, wal in log.drops:
        earlier = [moment for moment in [*log.pushed, *before_drop] if moment < at]
        found.append(Gap(max(earlier, default=at), at, None, wal, wal))
    groups: dict[str, Gap] = {}
    for gap in found:
        mender = next((item for item in fulls if item.started_at > gap.dropped_at), None)
        key = mender.label if mender else ""
        end = mender.stopped_at if mender else None
        same = groups.get(key)
        if same is None:
            groups[key] = replace(gap, end=end)
            continue
        names = [name for name in (same.first_wal, same.last_wal, gap.first_wal, gap.last_wal) if name]
        groups[key] = Gap(
            min(same.start, gap.start),
            max(same.dropped_at, gap.dropped_at),
            end,
            min(names, key=wal_order, default=""),
            max(names, key=wal_order, default=""),
        )
    return sorted(groups.values(), key=lambda gap: gap.start)


def archive_state_refresh(*, policy: BackupPolicy, timeout: float = 10.0) -> ArchiveState:
    """Read archiving now (primary, `pgbackrest info`, the logs), store it on the policy and return it."""
    now = timezone.now()
    previous = archive_state_of(policy)
    try:
        stanza = stanza_for(policy)
    except StanzaProblem as exc:
        state = archive_state_compute(
            now=now,
            objective_seconds=policy.wal_rpo_seconds,
            status=None,
            info=None,
            log=ArchiveLog(),
            previous=previous,
            problems=(str(exc),),
        )
        return _store(policy, state, previous)
    problems: list[str] = []
    primary, status = _primary_status(policy, timeout, problems)
    info: StanzaInfo | None = None
    try:
        info = pgbackrest_info(stanza, timeout=timeout)
    except (PgBackRestError, ValueError) as exc:  # ValueError: its JSON did not parse
        problems.append(f"pgbackrest info: {exc}")
    if info is not None:
        if not info.exists:
            problems.append(f"stanza {stanza.name} does not exist: run `manage.py pitr_setup {policy.name}`")
        problems += [f"repo{repo.repo}: {repo.message}" for repo in info.repos if repo.code not in (0, 2)]
    state = archive_state_compute(
        now=now,
        objective_seconds=policy.wal_rpo_seconds,
        status=status,
        info=info,
        log=archive_log_read(stanza.home / "log"),
        previous=previous,
        stanza=stanza.name,
        primary=primary.name if primary else "",
        problems=tuple(problems),
    )
    return _store(policy, state, previous)


def _primary_status(
    policy: BackupPolicy, timeout: float, problems: list[str]
) -> tuple[Node | None, ArchiverStatus | None]:
    """The primary and its archiver: the node the cluster says is primary first, then the others (a catalog just
    imported has no probe yet; after a failover the old primary may answer from recovery)."""
    expected = cluster_primary(policy.cluster)
    nodes = sorted(policy.cluster.nodes.all(), key=lambda node: (node != expected, node.name))
    said = []
    for node in nodes:
        try:
            status = archiver_status(node.address(Purpose.MONITOR).conninfo(), timeout=timeout)
        except psycopg.Error as exc:
            said.append(f"{node.name}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}")
            continue
        if not status.in_recovery:
            return node, status
        said.append(f"{node.name}: in recovery")
    problems.append(f"no node of cluster {policy.cluster.name} answers as primary ({'; '.join(said) or 'no nodes'})")
    return None, None


def _store(policy: BackupPolicy, state: ArchiveState, previous: ArchiveState | None) -> ArchiveState:
    data = state.as_data()
    BackupPolicy.objects.filter(pk=policy.pk).update(archive_state=data, archive_state_at=state.checked_at)
    policy.archive_state, policy.archive_state_at = data, state.checked_at
    if previous is None or archive_verdict(previous)[0] != archive_verdict(state)[0]:
        transaction.on_commit(dashboard_invalidate)  # the dashboard's archiving tiles change colour now
    return state


# --- in words ----------------------------------------------------------------------------------------------


def moment_text(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%d %b %H:%M:%S") if moment else "?"


def archive_verdict(state: ArchiveState) -> tuple[str, str]:
    """(up | degraded | down, why) — down when archiving fails, its age passes the objective or it cannot be
    measured; degraded when point-in-time recovery is broken or has nothing to start from."""
    objective = duration_text(state.objective_seconds)
    if state.failing:
        error = state.error or "pgBackRest's log says nothing more: see the PostgreSQL server log"
        attempts = f"{state.failed_count} failed attempt{'' if state.failed_count == 1 else 's'}"
        return "down", f"archiving fails: {state.last_failed_wal or 'a WAL segment'} not archived ({attempts}), {error}"
    if state.problem:
        return "down", state.problem
    if state.age_seconds is None:
        return "down", "no WAL archived since the server's statistics were reset: the archive's age is not known"
    if not state.objective_met:
        return "down", f"newest WAL archived {duration_text(state.age_seconds)} ago, objective {objective}"
    age = "idle, nothing to archive" if state.idle else f"archived {duration_text(state.age_seconds)} ago"
    broken = next((gap for gap in state.gaps if gap.end is None), None)
    if broken is not None:
        dropped = broken.first_wal + (f"…{broken.last_wal}" if broken.last_wal != broken.first_wal else "")
        return "degraded", (
            f"PITR broken from {moment_text(broken.start)} until the next full backup: pgBackRest dropped WAL "
            f"{dropped} at {moment_text(broken.dropped_at)} (archive-push-queue-max exceeded); {age}"
        )
    if state.window_start is None:
        return "degraded", f"{age}, but no pgBackRest backup yet: no point in time can be restored"
    window = f"window from {moment_text(state.window_start)} to {moment_text(state.window_end)}"
    holes = "".join(
        f"; PITR impossible between {moment_text(gap.start)} and {moment_text(gap.end)}" for gap in state.mended_gaps
    )
    return "up", f"{age}, {window}{holes}"


def archive_states() -> list[tuple[BackupPolicy, ArchiveState | None]]:
    """Every pgBackRest policy with its stored state, by cluster (the dashboard and /metrics)."""
    policies = BackupPolicy.objects.filter(engine=BackupPolicy.Engine.PGBACKREST).select_related("cluster")
    return [(policy, archive_state_of(policy)) for policy in policies.order_by("cluster__name")]


def archiving_broken_reason(policy: BackupPolicy) -> str | None:
    """Why WAL is not reaching the repository now, from the state the archive check stored (None: it is)."""
    state = ArchiveState.from_data(policy.archive_state)
    if state is None:
        return None
    if state.failing:
        return state.error or f"archive-push of {state.last_failed_wal or 'a WAL segment'} fails"
    if state.wal_dropped:
        return "WAL was dropped (archive-push-queue-max exceeded)"
    return None
