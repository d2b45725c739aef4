#!/bin/sh
# Patroni's bootstrap.post_bootstrap (patroni.yml): runs once, on the member that initialised the cluster, with a
# superuser connection string as its argument. Creates the portal's least-privilege roles, as `make up` does
# (hadr_portal/demo/cluster.py LOCAL_ROLES) and deploy/demo-primary-init.sh does for the demo cluster.
set -e
psql -v ON_ERROR_STOP=1 -d "$1" \
  -v monitor_pw="$HADR_DEMO_MONITOR_PASSWORD" -v read_pw="$HADR_DEMO_READ_PASSWORD" \
  -v backup_pw="$HADR_DEMO_BACKUP_PASSWORD" -v probe_pw="$HADR_DEMO_PROBE_PASSWORD" <<'SQL'
CREATE ROLE hadr_monitor LOGIN PASSWORD :'monitor_pw' IN ROLE pg_monitor;
CREATE ROLE hadr_reader LOGIN PASSWORD :'read_pw' IN ROLE pg_read_all_data;
CREATE ROLE hadr_backup LOGIN PASSWORD :'backup_pw' IN ROLE pg_read_all_data;
-- the write probe: `manage.py write_probe_setup` creates its table and grants it INSERT, SELECT, DELETE there
CREATE ROLE hadr_probe LOGIN PASSWORD :'probe_pw';
-- Restore points (and the WAL switch that archives them at once). A function's privileges are per database:
-- postgres, and template1 for databases created later.
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO hadr_backup;
\connect template1
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO hadr_backup;
SQL
