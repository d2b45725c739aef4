"""Can we recover, and how fast? Per service: its objectives against what the records measured.

A service's data lives where its checks point: a `backup` check watches a backup policy, a `postgres`
check probes a node of a cluster. Measured RPO is the last good backup's age (or, with no policy, the
replica's lag); measured RTO is the newest of the last verified restore or drill, the last failover (request to first
write), the last leader change the write probe measured (last write on the old leader to first on the new), the last
successful restart or restart drill (until its checks are green) and the last outage. Green: within the objective; amber: not yet measured, or an
RPO up to twice its objective; red: worse, or no good backup at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from hadr_portal.backups.archiving import ArchiveState
from hadr_portal.backups.models import BackupPolicy, Restore
from hadr_portal.backups.selectors import Freshness, freshness_of, last_drill
from hadr_portal.core.humanize import duration_text
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster, Failover, LeaderChange, Node
from hadr_portal.status.models import Check, Service, State

from .models import RecoveryPriority

RANK = {"green": 0, "none": 0, "amber": 1, "red": 2}


def service_policies(service: Service) -> list[BackupPolicy]:
    """The backup policies its `backup` checks watch."""
    watched = BackupPolicy.objects.filter(checks__service=service, checks__kind=Check.Kind.BACKUP)
    return list(watched.distinct().select_related("cluster"))


def archive_policies(service: Service) -> list[BackupPolicy]:
    """The pgBackRest policies its `archive` checks watch: their WAL archive is its RPO."""
    watched = BackupPolicy.objects.filter(checks__service=service, checks__kind=Check.Kind.ARCHIVE)
    return list(watched.distinct().select_related("cluster"))


def _archive_rpo(service: Service, policies: list[BackupPolicy], now: datetime) -> Measure | None:
    """The oldest unarchived second (pg_stat_archiver, as the archive check last stored it), grown since then;
    None while no check has measured it (the backups' age stands in)."""
    objective = service.rpo_minutes * 60
    states = [ArchiveState.from_data(policy.archive_state) for policy in policies]
    if any(state and state.failing for state in states):
        return Measure(objective, None, "WAL archiving is failing", "red")
    ages = [state.age_at(now) for state in states if state]
    known = [age for age in ages if age is not None]
    if not known:
        return None
    age = max(known)
    return Measure(objective, age, "WAL archive age (point-in-time)", _color(age, objective, amber_until=2))


@dataclass(frozen=True)
class DrillPoint:
    restore: Restore
    rto: float | None
    rpo: float | None
    exact: bool | None


def pitr_drill_trend(*, limit: int = 30) -> list[DrillPoint]:
    """The newest point-in-time and cluster-loss drills, oldest first: when, RTO, achieved RPO, exact or not."""
    drills = (
        Restore.objects.filter(
            kind__in=[Restore.Kind.DRILL, Restore.Kind.LOSS_DRILL],
            policy__engine=BackupPolicy.Engine.PGBACKREST,
            status__in=[Restore.Status.VERIFIED, Restore.Status.FAILED],
        )
        .select_related("policy__cluster")
        .order_by("-created_at")[:limit]
    )
    return [
        DrillPoint(drill, drill.rto_seconds, drill.achieved_rpo_seconds, (drill.marker_check or {}).get("exact"))
        for drill in reversed(list(drills))
    ]


def service_clusters(service: Service) -> list[Cluster]:
    """The clusters its `postgres` checks probe (through their catalog nodes)."""
    probed = Cluster.objects.filter(nodes__checks__service=service, nodes__checks__kind=Check.Kind.POSTGRES)
    return list(probed.distinct())


def service_targets(service: Service) -> set[str]:
    """Operation targets that act on this service: itself, its clusters, its policies' backups and drills."""
    targets = {service.target} | {cluster.target for cluster in service_clusters(service)}
    for policy in service_policies(service):
        targets |= {policy.target, policy.drill_target, f"database:{policy.cluster.name}/{policy.dbname}"}
    return targets


@dataclass(frozen=True)
class Measure:
    objective_seconds: int
    seconds: float | None
    source: str  # what was measured, in words
    color: str  # green, amber, red, or none (nothing to measure)

    @property
    def text(self) -> str:
        return "—" if self.seconds is None else duration_text(self.seconds)

    @property
    def objective_text(self) -> str:
        return duration_text(self.objective_seconds)


@dataclass(frozen=True)
class Readiness:
    """One row of the DR readiness matrix, and the recovery facts an incident page shows."""

    service: Service
    rpo: Measure
    rto: Measure
    freshness: list[Freshness] = field(default_factory=list)
    replicas: list[Node] = field(default_factory=list)
    last_drill: Restore | None = None

    @property
    def color(self) -> str:
        worst = max((self.rpo.color, self.rto.color), key=RANK.__getitem__)
        return "green" if worst == "none" else worst


def readiness_of(service: Service, *, now: datetime | None = None) -> Readiness:
    now = now or timezone.now()
    policies, clusters = service_policies(service), service_clusters(service)
    freshness = [freshness_of(policy, now=now) for policy in policies]
    replicas = [node for node in Node.objects.filter(cluster__in=clusters) if node.last_probe.get("role") == "replica"]
    drills = [drill for drill in (last_drill(policy) for policy in policies) if drill]
    archived = archive_policies(service)
    rpo = _archive_rpo(service, archived, now) if archived else None
    return Readiness(
        service=service,
        rpo=rpo or _rpo(service, freshness, replicas, stateful=bool(policies or clusters)),
        rto=_rto(service, policies, clusters),
        freshness=freshness,
        replicas=replicas,
        last_drill=max(drills, key=lambda drill: drill.finished_at or now) if drills else None,
    )


def readiness_matrix(*, now: datetime | None = None) -> list[Readiness]:
    """Every service, in the recovery priorities' order (services without a priority last, by tier)."""
    services = Service.objects.select_related("priority")
    ordered = sorted(services, key=lambda s: (getattr(_priority(s), "position", 10**6), s.tier, s.name))
    return [readiness_of(service, now=now) for service in ordered]


def _priority(service: Service) -> RecoveryPriority | None:
    try:
        return service.priority
    except Service.priority.RelatedObjectDoesNotExist:
        return None


def _color(seconds: float, objective: int, *, amber_until: float) -> str:
    if seconds <= objective:
        return "green"
    return "amber" if seconds <= objective * amber_until else "red"


def _rpo(service: Service, freshness: list[Freshness], replicas: list[Node], *, stateful: bool) -> Measure:
    objective = service.rpo_minutes * 60
    if not stateful:
        return Measure(objective, None, "holds no data of its own", "none")
    ages = [item.age_seconds for item in freshness]
    if freshness:
        if None in ages:
            return Measure(objective, None, "no good backup yet", "red")
        age = max(age for age in ages if age is not None)
        return Measure(objective, age, "last good backup's age", _color(age, objective, amber_until=2))
    lags = [node.last_probe.get("lag_seconds") for node in replicas]
    known = [float(lag) for lag in lags if lag is not None]
    if not known:
        return Measure(objective, None, "no backup policy and no replica reading", "red")
    return Measure(objective, max(known), "replica lag", _color(max(known), objective, amber_until=2))


def _last_outage(service: Service) -> tuple[datetime, float, str] | None:
    """The service's last recovery as it was lived: from going down to being up again (a restart, a failover
    or a restore in between) — not how long the operation that fixed it ran."""
    recovered = service.transitions.filter(from_state=State.DOWN, to_state=State.UP).order_by("-at").first()
    if recovered is None:
        return None
    went_down = service.transitions.filter(to_state=State.DOWN, at__lte=recovered.at).order_by("-at").first()
    if went_down is None:
        return None
    return recovered.at, (recovered.at - went_down.at).total_seconds(), "last outage, down → up"


def _rto(service: Service, policies: list[BackupPolicy], clusters: list[Cluster]) -> Measure:
    objective = service.rto_minutes * 60
    measured: list[tuple[datetime, float, str]] = []
    restore = (
        Restore.objects.filter(policy__in=policies, status=Restore.Status.VERIFIED)
        .exclude(rto_seconds=None)
        .order_by("-finished_at")
        .first()
    )
    if restore and restore.finished_at and restore.rto_seconds is not None:
        measured.append((restore.finished_at, restore.rto_seconds, f"last {restore.get_kind_display().lower()}"))
    failover = (
        Failover.objects.filter(cluster__in=clusters).exclude(seconds_to_writable=None).order_by("-writable_at").first()
    )
    if failover and failover.writable_at and failover.seconds_to_writable is not None:
        measured.append((failover.writable_at, failover.seconds_to_writable, "last failover"))
    change = (
        LeaderChange.objects.filter(cluster__in=clusters).exclude(rto_seconds=None).order_by("-detected_at").first()
    )
    if change is not None and change.rto_seconds is not None:
        cause = change.get_cause_display().lower()
        measured.append((change.first_write_new_at, change.rto_seconds, f"last {cause} (write probe)"))
    restart = (
        Operation.objects.filter(kind="restart_service", target=service.target, status=Operation.Status.SUCCEEDED)
        .order_by("-finished_at")
        .first()
    )
    if restart is not None and restart.finished_at and (result := restart.result or {}).get("seconds_until_green"):
        seconds = float(result.get("controller_seconds") or 0) + float(result["seconds_until_green"])
        drill = " drill" if restart.parameters.get("drill") else ""
        measured.append((restart.finished_at, seconds, f"last restart{drill}, until green"))
    outage = _last_outage(service)
    if outage is not None:
        measured.append(outage)
    if not measured:
        return Measure(objective, None, "never measured: no recovery yet (run a restore drill)", "amber")
    _, seconds, source = max(measured)
    return Measure(objective, seconds, source, "green" if seconds <= objective else "red")
