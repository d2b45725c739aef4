"""What the databases app tells the others (which may not be imported from here): a node was rebuilt from another
one, so whatever it copied of that node's own settings (the WAL archiving's data directory) must be its own again."""

from __future__ import annotations

from django.dispatch import Signal

node_rebuilt = Signal()  # sender: Node; kwargs: node (the rebuilt Node), log (a callable for the operation's log)
cluster_without_primary = Signal()  # sender: Cluster; kwargs: cluster, detail (why), operation (the one that left it)
