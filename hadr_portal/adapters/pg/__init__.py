"""The PostgreSQL adapters: stock programs (pg_ctl, pg_dump, pg_restore, pg_basebackup, pg_rewind) and SQL.

- `connection`  addresses, DSNs, which failures are worth retrying
- `server`      a server run by pg_ctl on this machine (`PG_BIN`)
- `node`        a managed node's role: fence, promote, prove writes, rebuild; its controller
- `backup`      backups as byte streams (`streams`: a program's output that ends only on success)
- `restore`     verified bytes from storage and pg_restore; `dbadmin` the databases it restores into,
                `verify` the checks on the result, `scratch` a physical backup as a server of its own
"""
