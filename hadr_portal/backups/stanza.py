"""From the catalog to a pgBackRest stanza: a pgBackRest policy's cluster, its nodes' data directories and its
storage targets as repositories (repo1 its storage, repo2 its copy storage), and the archiving that points
PostgreSQL at it.

A stanza is named after its cluster. Its nodes are those with a pg_ctl controller (the data directory is on this
machine); the socket directory is the controller's `socket_directory` (default /var/run/postgresql, Debian's).
A node whose data lives elsewhere cannot be backed up from here: the stanza is refused with that said.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from django.conf import settings
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from hadr_portal.adapters.pg.archive import archiving_configure as node_archiving_configure
from hadr_portal.adapters.pgbackrest import DataNode, PgBackRestError, Repository, Stanza, TransientPgBackRestError
from hadr_portal.adapters.pgbackrest import check as pgbackrest_check
from hadr_portal.adapters.pgbackrest import stanza_create as pgbackrest_stanza_create
from hadr_portal.databases.models import Node, Purpose

from .models import BackupPolicy, StorageTarget

DEFAULT_SOCKET_DIRECTORY = "/var/run/postgresql"


class StanzaProblem(Exception):
    """The catalog does not describe a stanza pgBackRest can use; the message says what to change."""


def repository_for(storage: StorageTarget, index: int) -> Repository:
    config = storage.config if isinstance(storage.config, dict) else {}
    if storage.kind == StorageTarget.Kind.LOCAL:
        path = str(config.get("path") or "")
        if not path:
            raise StanzaProblem(f"Storage target {storage.name} has no path.")
        return Repository(index, "posix", str(Path(path) / "pgbackrest"), description=f"{storage.name} ({path})")
    endpoint_url = str(config.get("endpoint_url") or "")
    host, port, uri_style = f"s3.{config.get('region') or 'us-east-1'}.amazonaws.com", None, "host"
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme != "https":
            raise StanzaProblem(
                f"Storage target {storage.name}: pgBackRest speaks only HTTPS to S3; endpoint_url {endpoint_url} "
                "must start with https://"
            )
        host, port, uri_style = parts.hostname or "", parts.port, "path"
    bucket = str(config.get("bucket") or "")
    if not bucket:
        raise StanzaProblem(f"Storage target {storage.name} has no bucket.")
    prefix = str(config.get("prefix") or "").strip("/")
    key_env, secret_env = str(config.get("access_key_env") or ""), str(config.get("secret_key_env") or "")
    key, secret = os.environ.get(key_env, "") if key_env else "", os.environ.get(secret_env, "") if secret_env else ""
    if (key_env or secret_env) and not (key and secret):
        raise StanzaProblem(f"Storage target {storage.name}: {key_env} or {secret_env} is not set in the environment.")
    return Repository(
        index,
        "s3",
        "/" + "/".join(filter(None, [prefix, "pgbackrest"])),
        bucket=bucket,
        endpoint=host,
        port=port,
        region=str(config.get("region") or "us-east-1"),
        uri_style=uri_style,  # type: ignore[arg-type]
        verify_tls=bool(config.get("verify_tls", True)),
        ca_file=str(config.get("ca_file") or ""),
        key=key,
        secret=secret,
        description=f"{storage.name} (s3://{bucket}/{prefix})",
    )


def stanza_for(policy: BackupPolicy) -> Stanza:
    if not policy.is_physical:
        raise StanzaProblem(f"Policy {policy.name} takes logical backups: it has no pgBackRest stanza.")
    nodes: list[DataNode] = []
    elsewhere: list[str] = []
    for node in policy.cluster.nodes.order_by("name"):
        controller = node.controller or {}
        if controller.get("controller") != "pg_ctl":
            elsewhere.append(node.name)
            continue
        nodes.append(
            DataNode(
                len(nodes) + 1,
                str(controller["data_directory"]),
                node.port,
                str(controller.get("socket_directory") or DEFAULT_SOCKET_DIRECTORY),
                node.name,
            )
        )
    if not nodes:
        raise StanzaProblem(
            f"Cluster {policy.cluster.name} has no node whose data directory is on this machine (a pg_ctl "
            f"controller with data_directory): pgBackRest backs up from the data directory. Not local: "
            f"{', '.join(elsewhere) or 'none'}."
        )
    repos = [repository_for(policy.storage, 1)]
    if policy.copy_storage_id:
        assert policy.copy_storage is not None
        repos.append(repository_for(policy.copy_storage, 2))
    try:
        return Stanza(
            name=policy.cluster.name,
            home=settings.PGBACKREST_DIR / policy.cluster.name,
            nodes=tuple(nodes),
            repos=tuple(repos),
            compress_type=policy.compress or "lz4",
            process_max=policy.jobs,
            archive_push_queue_max=policy.archive_push_queue_max,
            run_as=settings.PGBACKREST_USER,
        )
    except ValueError as exc:
        raise StanzaProblem(f"Policy {policy.name}: {exc}") from None


def pgbackrest_policy(cluster_id: int) -> BackupPolicy | None:
    return (
        BackupPolicy.objects.select_related("cluster", "storage", "copy_storage")
        .filter(cluster_id=cluster_id, engine=BackupPolicy.Engine.PGBACKREST)
        .first()
    )


def node_archiving_point(policy: BackupPolicy, node: Node, *, stanza: Stanza | None = None) -> bool | None:
    """Point `node`'s archive_command at the stanza with its own data directory (`--pg1-path`), and set
    archive_timeout (ALTER SYSTEM + reload as the admin account; a standby takes it too, for when it is promoted).
    Returns whether archive_mode is on, or None for a node that is not in the stanza. A rebuilt replica or a
    replaced primary has its source's settings (another node's path): this puts its own back."""
    stanza = stanza or stanza_for(policy)
    data = next((item for item in stanza.nodes if item.name == node.name), None)
    if data is None:
        return None
    return node_archiving_configure(
        node.address(Purpose.ADMIN).conninfo(),
        archive_command=stanza.archive_command(data),
        archive_timeout=policy.archive_timeout_seconds,
    )


@retry(
    retry=retry_if_exception_type(TransientPgBackRestError),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.5, max=5),
    reraise=True,
)
def _stanza_create(stanza: Stanza) -> None:
    """stanza-create, again while an async archive-push holds the stanza's lock for a moment."""
    pgbackrest_stanza_create(stanza)


def stanza_setup(policy: BackupPolicy, *, check: bool = True, log: Callable[[str], object] = print) -> Stanza:
    """Write the stanza's files, point every node's archive_command at it (ALTER SYSTEM + reload, through the
    admin connection the portal manages the nodes with), create the stanza in every repository and run
    pgBackRest's check (a WAL switch must reach them all). Safe to run again at any time."""
    say = log
    stanza = stanza_for(policy)
    stanza.write()
    try:  # before archive_command points at it: archive-push would find no stanza
        _stanza_create(stanza)
    except PgBackRestError as exc:
        raise StanzaProblem(str(exc)) from None
    restart_needed = []
    for node in policy.cluster.nodes.order_by("name"):
        try:
            mode_on = node_archiving_point(policy, node, stanza=stanza)
        except psycopg.OperationalError as exc:
            say(f"  {node.name}: not reachable, archive_command not set ({str(exc).strip().splitlines()[0]})")
            continue
        if mode_on is None:
            continue
        if not mode_on:
            restart_needed.append(node.name)
        say(
            f"  {node.name}: archive_command → pgbackrest archive-push, archive_timeout {policy.archive_timeout_seconds} s"
        )
    if restart_needed:
        raise StanzaProblem(
            f"archive_mode is off on {', '.join(restart_needed)}: set archive_mode = on and restart "
            "(it cannot change while the server runs); then run this again."
        )
    try:
        if check:
            pgbackrest_check(stanza, archive_timeout=max(60, policy.archive_timeout_seconds * 3))
    except PgBackRestError as exc:
        raise StanzaProblem(str(exc)) from None
    say(f"  stanza {stanza.name}: created and checked ({', '.join(repo.label for repo in stanza.repos)})")
    return stanza
