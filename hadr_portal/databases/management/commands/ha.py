"""`manage.py ha CLUSTER status | switchover [--to M] [--at TIME] | failover --to M | restart M | reinit M |
pause | resume | config KEY=VALUE… | apply` — a Patroni cluster from the command line, through the same
operations, permissions and audit as the Databases page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.patroni_ops import (
    HaRefused,
    config_request,
    member_action_request,
    patroni_failover_request,
    pause_request,
    scheduled_time,
    switchover_request,
)
from hadr_portal.databases.patroni_state import DOCUMENTED_SETTINGS, ha_state_refresh

ACTIONS = ("status", "switchover", "failover", "restart", "reinit", "pause", "resume", "config", "apply")


class Command(OperationCommand[Cluster]):
    help = (
        "A cluster managed by Patroni: `status` prints what Patroni says; `switchover` (planned, optionally --at a "
        "time in the portal's zone), `failover --to MEMBER` (only without a leader), `restart MEMBER`, `reinit "
        "MEMBER`, `pause` / `resume` (maintenance mode), `config KEY=VALUE…` (" + ", ".join(DOCUMENTED_SETTINGS) + ") "
        "and `apply` (the catalog's synchronous_mode) queue operations, as from the Databases page."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo-ha")
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("values", nargs="*", help="restart/reinit: the member; config: KEY=VALUE pairs")
        parser.add_argument("--to", default="", help="switchover / failover: the member to hand over to")
        parser.add_argument("--at", default="", help='switchover: when, e.g. "2026-12-08 03:00" (portal\'s zone)')

    def subject(self, options: dict[str, Any]) -> Cluster | None:
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        if not cluster.is_patroni:
            raise CommandError(f"{cluster.name} is not managed by Patroni (engine {cluster.engine}).")
        if options["action"] == "status":
            self._status(cluster)
            return None
        return cluster

    def _status(self, cluster: Cluster) -> None:
        state = ha_state_refresh(cluster)
        if state.get("error"):
            raise CommandError(state["error"])
        self.stdout.write(
            f"{cluster.name}: leader {state['leader'] or 'NONE'}, timeline {state.get('timeline')}"
            + (", PAUSED (maintenance mode)" if state.get("paused") else "")
        )
        for m in state["members"]:
            lag = "" if m["role"] == "leader" else f"  lag {m['lag_bytes'] if m['lag_bytes'] is not None else '?'} B"
            restart = "  pending restart" if m["pending_restart"] else ""
            self.stdout.write(f"  {m['name']:12} {m['role']:12} {m['state']:10} tl {m['timeline']}{lag}{restart}")
        self.stdout.write("  " + ", ".join(f"{k}={v}" for k, v in state["config"].items()))

    def request(self, subject: Cluster, actor: User | None, options: dict[str, Any]) -> Operation:
        action, values = options["action"], options["values"]
        if action in ("restart", "reinit"):
            if len(values) != 1:
                raise HaRefused(f"`{action}` takes one member name, e.g. `ha {subject.name} {action} ha2`.")
            kind = "member_restart" if action == "restart" else "member_reinit"
            return member_action_request(kind=kind, cluster=subject, actor=actor, member=values[0])
        if action == "switchover":
            return switchover_request(
                cluster=subject, actor=actor, candidate=options["to"], scheduled_at=scheduled_time(options["at"])
            )
        if action == "failover":
            if not options["to"]:
                raise HaRefused("Name the member to promote: --to MEMBER.")
            return patroni_failover_request(cluster=subject, actor=actor, candidate=options["to"])
        if action in ("pause", "resume"):
            return pause_request(cluster=subject, actor=actor, paused=action == "pause")
        if action == "apply":
            return config_request(
                cluster=subject, actor=actor, changes={"synchronous_mode": str(subject.synchronous_mode)}
            )
        pairs = [value.partition("=") for value in values]
        if not pairs or any(not key or not sep for key, sep, _ in pairs):
            raise HaRefused("`config` takes KEY=VALUE pairs, e.g. `config ttl=10 synchronous_mode=true`.")
        return config_request(cluster=subject, actor=actor, changes={key: value for key, _, value in pairs})

    def what(self, subject: Cluster, operation: Operation) -> str:
        return f"{operation.kind_label.lower()} of {subject.name}"
