"""What the databases app tells the others (which may not be imported from here): a node was rebuilt from another
one, so whatever it copied of that node's own settings (the WAL archiving's data directory) must be its own again;
a cluster was left without a primary; its leader moved (automatically or not), and what happened after."""

from __future__ import annotations

from django.dispatch import Signal

node_rebuilt = Signal()  # sender: Node; kwargs: node (the rebuilt Node), log (a callable for the operation's log)
cluster_without_primary = Signal()  # sender: Cluster; kwargs: cluster, detail (why), operation (the one that left it)
leader_changed = Signal()  # sender: Cluster; kwargs: change (a new LeaderChange: automatic, or asked for)
leader_change_event = Signal()  # sender: Cluster; kwargs: change, what (a sentence), at (when it happened)
