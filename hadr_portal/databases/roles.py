"""Which database role each purpose connects with, as the Databases page shows it, with a warning where a purpose
falls back to the admin account or to a superuser."""

from __future__ import annotations

from dataclasses import dataclass

from .models import PURPOSE_GRANTS, Cluster, Node, Purpose


@dataclass(frozen=True)
class PurposeRole:
    """One purpose's role on a cluster, and what the operator should fix about it ("" when nothing)."""

    purpose: Purpose
    user: str
    own: bool  # False: the purpose falls back to the admin account
    warning: str = ""

    @property
    def label(self) -> str:
        return self.purpose.label


def _superusers(nodes: list[Node]) -> dict[str, bool]:
    """What the last monitoring probes learnt: which roles they connected as, and whether each is a superuser."""
    known: dict[str, bool] = {}
    for node in nodes:
        probe = node.last_probe or {}
        if probe.get("user") and probe.get("superuser") is not None:
            known[probe["user"]] = bool(probe["superuser"])
    return known


def cluster_roles(cluster: Cluster, nodes: list[Node]) -> list[PurposeRole]:
    """The admin account, then monitoring, reading and backups: each purpose's role and its warning."""
    superusers = _superusers(nodes)
    rows = [PurposeRole(Purpose.ADMIN, cluster.user, own=True)]
    for purpose in (Purpose.MONITOR, Purpose.READ, Purpose.BACKUP, Purpose.PROBE):
        user, _ = cluster.credentials(purpose)
        own = cluster.own_role(purpose)
        rows.append(PurposeRole(purpose, user, own, _warning(purpose, user, own, superusers.get(user))))
    return rows


_CONSEQUENCE = {
    Purpose.MONITOR: "more power than health checks need",
    Purpose.READ: "funnel and verification queries refuse to run as a superuser",
    Purpose.BACKUP: "more power than backups need",
    Purpose.PROBE: "more power than one probe row a second needs",
}


def _warning(purpose: Purpose, user: str, own: bool, superuser: bool | None) -> str:
    """ "" for a role of its own that is not known to be a superuser; else what is wrong and how to fix it."""
    if own and not superuser:
        return ""
    fix = f"create a role with {PURPOSE_GRANTS[purpose]} and set {purpose.value}_user / {purpose.value}_password_env"
    who = f"{user} is a superuser" if own else f"Falls back to the admin account {user}"
    if not own and superuser:
        who += ", a superuser"
    return f"{who}: {_CONSEQUENCE[purpose]}; {fix}."
