"""/metrics for Prometheus: a collector reading the portal's database at each scrape.

Gauges only — every figure is a current value read from the database (operation counts move between
statuses, so they are not counters). `exposition_text()` renders them in the text format with the
official client, so the output always passes `promtool check metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hadr_portal.backups.archiving import archive_states
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.backups.selectors import freshness_of
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster, LeaderChange, Node
from hadr_portal.databases.writeprobe import probe_age_seconds
from hadr_portal.status.models import Check, Service, State

from .resources import latest_database_sizes
from .selectors import funnel_summaries

DRILL_KIND = "restore_drill"


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"hadr_{name}", documentation, labels=labels)


class PortalCollector(Collector):
    """Service states, check latency, replication lag, backups and WAL archiving against their RPO, drills,
    operations, host resources, database sizes and funnel conversion — as they are in the database now."""

    def collect(self) -> Iterator[Metric]:
        yield from self._services()
        yield from self._databases()
        yield from self._archiving()
        yield from self._high_availability()
        yield from self._operations()
        yield from self._funnels()

    def _services(self) -> Iterator[Metric]:
        state = _gauge(
            "service_state",
            "1 for the state the service is in (up, degraded, down, unknown).",
            ["service", "tier", "state"],
        )
        for service in Service.objects.order_by("name"):
            for value in State.values:
                state.add_metric([service.name, str(service.tier), value], 1.0 if service.state == value else 0.0)
        yield state
        latency = _gauge("check_latency_seconds", "Latency of the check's last result.", ["service", "check", "kind"])
        cpu = _gauge("host_cpu_ratio", "CPU in use on the host, 0-1, from its last host check.", ["service", "check"])
        memory = _gauge("host_memory_ratio", "Memory in use on the host, 0-1.", ["service", "check"])
        disk = _gauge("host_disk_ratio", "Disk space in use, 0-1, per mount path.", ["service", "check", "path"])
        for check in Check.objects.filter(enabled=True).select_related("service").order_by("service__name", "name"):
            names = [check.service.name, check.name]
            if check.last_latency_ms is not None:
                latency.add_metric([*names, check.kind], check.last_latency_ms / 1000)
            data = check.last_data or {}
            if check.kind in (Check.Kind.HOST, Check.Kind.HOST_PUSH) and "cpu" in data:
                cpu.add_metric(names, float(data["cpu"]) / 100)
                memory.add_metric(names, float(data["memory"]) / 100)
                for path, used in sorted((data.get("disks") or {}).items()):
                    disk.add_metric([*names, path], float(used) / 100)
        yield from (latency, cpu, memory, disk)

    def _databases(self) -> Iterator[Metric]:
        lag = _gauge("replication_lag_bytes", "WAL a replica has received but not replayed yet.", ["cluster", "node"])
        for node in Node.objects.select_related("cluster").order_by("cluster__name", "name"):
            probe = node.last_probe or {}
            # a replica's `lag_bytes` (databases.topology.node_snapshot): received but not replayed
            if probe.get("role") == "replica" and probe.get("lag_bytes") is not None:
                lag.add_metric([node.cluster.name, node.name], float(probe["lag_bytes"]))
        yield lag
        labels = ["policy", "cluster", "database"]
        age = _gauge("backup_last_good_age_seconds", "Age of the last good backup (+Inf: none yet).", labels)
        rpo = _gauge("backup_rpo_objective_seconds", "The backup policy's recovery point objective.", labels)
        now = timezone.now()
        for policy in BackupPolicy.objects.select_related("cluster").order_by("name"):
            names = [policy.name, policy.cluster.name, policy.dbname]
            fresh = freshness_of(policy, now=now)
            age.add_metric(names, float("inf") if fresh.age_seconds is None else fresh.age_seconds)
            rpo.add_metric(names, policy.rpo_minutes * 60.0)
        yield from (age, rpo)
        size = _gauge("database_size_bytes", "Size of a managed database at its last sample.", ["cluster", "database"])
        for cluster, dbname, size_bytes in latest_database_sizes():
            size.add_metric([cluster, dbname], float(size_bytes))
        yield size

    def _archiving(self) -> Iterator[Metric]:
        """From the state the archive checks stored on each pgBackRest policy (no query to the servers here)."""
        age = _gauge(
            "wal_archive_age_seconds",
            "Age of the newest archived WAL, growing since it was measured; 0 when idle (+Inf: not measured).",
            ["cluster"],
        )
        objective = _gauge("wal_archive_objective_seconds", "The policy's WAL RPO objective.", ["cluster"])
        # not "_failed_count": promtool keeps the _count suffix for histograms and summaries
        failed = _gauge("wal_archive_failures", "Failed archive attempts since the statistics reset.", ["cluster"])
        start = _gauge(
            "recovery_window_start", "Oldest point a point-in-time restore reaches (unix seconds).", ["cluster"]
        )
        now = timezone.now()
        for policy, state in archive_states():
            cluster = [policy.cluster.name]
            objective.add_metric(cluster, float(policy.wal_rpo_seconds))
            measured = state.age_at(now) if state else None
            age.add_metric(cluster, float("inf") if measured is None else measured)
            if state is not None:
                failed.add_metric(cluster, float(state.failed_count))
                if state.window_start is not None:
                    start.add_metric(cluster, state.window_start.timestamp())
        yield from (age, objective, failed, start)

    def _high_availability(self) -> Iterator[Metric]:
        """From what the write probe stored on each cluster (its last write, each replica's delay, Patroni's view)
        and the leader changes it measured."""
        probe_age = _gauge(
            "write_probe_age_seconds", "Seconds since the write probe's last committed row.", ["cluster"]
        )
        delay = _gauge(
            "write_probe_replica_delay_seconds", "How far behind a node's newest probe row is.", ["cluster", "node"]
        )
        leader = _gauge(
            "cluster_leader", "1 for the node that takes writes (the probe's last write).", ["cluster", "node"]
        )
        paused = _gauge("patroni_paused", "1 while automatic failover is paused (maintenance mode).", ["cluster"])
        timeline = _gauge("patroni_timeline", "The leader's timeline, as Patroni reports it.", ["cluster"])
        member_lag = _gauge("patroni_member_lag_bytes", "A replica's lag as Patroni reports it.", ["cluster", "member"])
        pending = _gauge("patroni_pending_restart", "1 when a member waits for a restart.", ["cluster", "member"])
        changes = _gauge("leader_changes", "Leader changes the write probe saw, by cause.", ["cluster", "cause"])
        rto = _gauge("leader_change_rto_seconds", "The last leader change's measured RTO.", ["cluster"])
        lost = _gauge("leader_change_rows_lost", "Probe rows the last leader change lost.", ["cluster"])
        now = timezone.now()
        for cluster in Cluster.objects.order_by("name"):
            name = cluster.name
            age = probe_age_seconds(cluster, now)
            probe_age.add_metric([name], float("inf") if age is None else age)
            state = cluster.probe_state or {}
            if state.get("leader") and not state.get("error"):
                leader.add_metric([name, state["leader"]], 1.0)
            for node, row in sorted((state.get("replicas") or {}).items()):
                if row.get("seconds") is not None:
                    delay.add_metric([name, node], float(row["seconds"]))
            ha = cluster.ha_state or {}
            if cluster.is_patroni and ha.get("members"):
                paused.add_metric([name], 1.0 if ha.get("paused") else 0.0)
                if ha.get("timeline") is not None:
                    timeline.add_metric([name], float(ha["timeline"]))
                for member in ha["members"]:
                    if member.get("role") != "leader" and member.get("lag_bytes") is not None:
                        member_lag.add_metric([name, member["name"]], float(member["lag_bytes"]))
                    pending.add_metric([name, member["name"]], 1.0 if member.get("pending_restart") else 0.0)
        for row in LeaderChange.objects.values("cluster__name", "cause").annotate(n=Count("id")).order_by():
            changes.add_metric([row["cluster__name"], row["cause"]], float(row["n"]))
        seen: set[int] = set()
        for change in LeaderChange.objects.select_related("cluster").order_by("cluster_id", "-detected_at"):
            if change.cluster_id in seen:
                continue
            seen.add(change.cluster_id)
            if change.rto_seconds is not None:
                rto.add_metric([change.cluster.name], change.rto_seconds)
            if change.rows_lost is not None:
                lost.add_metric([change.cluster.name], float(change.rows_lost))
        yield from (probe_age, delay, leader, paused, timeline, member_lag, pending, changes, rto, lost)

    def _operations(self) -> Iterator[Metric]:
        counts = _gauge("operations", "Operations on record, by kind and status.", ["kind", "status"])
        for row in Operation.objects.values("kind", "status").annotate(n=Count("id")).order_by("kind", "status"):
            counts.add_metric([row["kind"], row["status"]], float(row["n"]))
        yield counts
        drill = _gauge(
            "restore_drill_last_duration_seconds", "How long the last successful restore drill took.", ["target"]
        )
        seen: set[str] = set()
        drills = Operation.objects.filter(kind=DRILL_KIND, status=Operation.Status.SUCCEEDED).order_by("-finished_at")
        for operation in drills.exclude(started_at=None).exclude(finished_at=None):
            if operation.target not in seen:
                seen.add(operation.target)
                drill.add_metric([operation.target], operation.duration_seconds or 0.0)
        yield drill

    def _funnels(self) -> Iterator[Metric]:
        labels = ["funnel", "step", "window"]
        ratio = _gauge(
            "funnel_conversion_ratio",
            "Share reaching the step from the step before (step=overall: first to last).",
            labels,
        )
        reached = _gauge("funnel_step_reached", "How many reached the step in the window.", labels)
        stale = _gauge(
            "funnel_stale", "1 when the funnel's counts are stale (the query failed or stopped).", ["funnel"]
        )
        for summary in funnel_summaries():
            name = summary.funnel.name
            stale.add_metric([name], 1.0 if summary.stale else 0.0)
            for period in summary.periods:
                window = period.label.replace(" ", "")
                for figure in period.steps:
                    reached.add_metric([name, figure.step, window], float(figure.count))
                    if figure.rate is not None:
                        ratio.add_metric([name, figure.step, window], figure.rate)
                if period.overall is not None:
                    ratio.add_metric([name, "overall", window], period.overall)
        yield from (ratio, reached, stale)


def exposition_text() -> bytes:
    """The whole exposition, rendered by prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return generate_latest(registry)
