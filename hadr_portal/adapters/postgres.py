"""Addressing a managed PostgreSQL node (probes: adapters.probes; role changes: adapters.pgnode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

# Errors worth retrying: the server is starting, restarting or briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,)


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)

    def conninfo(self, **extra: Any) -> str:
        params = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user, **extra}
        if self.password:
            params["password"] = self.password
        return make_conninfo(**params)

    def public(self) -> str:
        """The conninfo without the password, as it may be logged or passed on a command line."""
        return make_conninfo(host=self.host, port=self.port, dbname=self.dbname, user=self.user)
