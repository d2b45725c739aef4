"""What backups does when other apps say something happened (connected in BackupsConfig.ready())."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.dispatch import receiver

from hadr_portal.databases.models import Node
from hadr_portal.databases.signals import node_rebuilt

from .stanza import StanzaProblem, node_archiving_point, pgbackrest_policy


@receiver(node_rebuilt, dispatch_uid="backups.archiving_after_rebuild")
def archiving_after_rebuild(sender: type[Node], node: Node, log: Callable[[str], Any], **_: Any) -> None:
    """A rebuilt replica carries its source's archive_command (the source's --pg1-path): give it its own."""
    policy = pgbackrest_policy(node.cluster_id)
    if policy is None:
        return
    try:
        if node_archiving_point(policy, node) is not None:
            log(f"{node.name}: archive_command points at stanza {policy.cluster.name} with its own data directory")
    except (psycopg.Error, StanzaProblem) as exc:
        log(f"{node.name}: archive_command not reset ({exc}); run `manage.py pitr_setup {policy.name}`")
