"""`manage.py failover CLUSTER [--to NODE] --yes [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.databases.failover import failover_request
from hadr_portal.databases.failover_plan import failover_plan
from hadr_portal.databases.models import Cluster

MARKS = {"ok": "ok     ", "warning": "WARNING", "blocker": "BLOCKED"}


class Command(OperationCommand[Cluster]):
    help = (
        "Promote a replica of CLUSTER to primary (an operation on the ops queue): the pre-checks are printed;"
        " the old primary is fenced first when it is still up. Without --yes, only the pre-checks run."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("--to", help="The replica to promote (default: the reachable one least behind)")
        parser.add_argument("--yes", action="store_true", help="Fail over (without it: show the pre-checks only)")
        parser.add_argument(
            "--override-lag",
            metavar="REASON",
            default="",
            help="Fail over although the replica is further behind"
            " than the cluster's limit; the reason is recorded in the audit log",
        )
        parser.add_argument(
            "--isolated",
            metavar="REASON",
            default="",
            help="The old primary cannot be reached or fenced but is"
            " isolated from the applications: how you know (recorded)",
        )

    def subject(self, options: dict[str, Any]) -> Cluster | None:
        """The cluster, its pre-checks printed; None without --yes (after the verdict)."""
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        plan = failover_plan(cluster, to=options["to"])
        for finding in plan.findings:
            self.stdout.write(f"{MARKS[finding.level]} {finding.title} {finding.detail}".rstrip())
        if options["yes"]:
            return cluster
        verdict = plan.refusal(override_reason=options["override_lag"], isolation_reason=options["isolated"])
        self.stdout.write(f"Would be refused: {verdict}" if verdict else "Pre-checks pass. Add --yes to fail over.")
        if plan.blockers:
            raise CommandError("The failover cannot go ahead.")
        return None

    def request(self, subject: Cluster, actor: User | None, options: dict[str, Any]) -> Operation:
        return failover_request(
            cluster=subject,
            actor=actor,
            to=options["to"],
            override_reason=options["override_lag"],
            isolation_reason=options["isolated"],
        )

    def what(self, subject: Cluster, operation: Operation) -> str:
        return f"failover of {subject.name}"
