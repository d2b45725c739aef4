#!/bin/sh
# Runs once when the demo primary's data directory is created (docker-compose):
# let the replica stream from it with a password, and create the portal's roles.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
# The portal's least-privilege roles (the same as `make up` creates: hadr_portal/demo/cluster.py LOCAL_ROLES).
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
  -v monitor_pw="$HADR_DEMO_MONITOR_PASSWORD" -v read_pw="$HADR_DEMO_READ_PASSWORD" \
  -v backup_pw="$HADR_DEMO_BACKUP_PASSWORD" -v probe_pw="$HADR_DEMO_PROBE_PASSWORD" <<'SQL'
CREATE ROLE hadr_monitor LOGIN PASSWORD :'monitor_pw' IN ROLE pg_monitor;
CREATE ROLE hadr_reader LOGIN PASSWORD :'read_pw' IN ROLE pg_read_all_data;
CREATE ROLE hadr_backup LOGIN PASSWORD :'backup_pw' IN ROLE pg_read_all_data;
-- the write probe: `manage.py write_probe_setup` creates its table and grants it INSERT, SELECT, DELETE there
CREATE ROLE hadr_probe LOGIN PASSWORD :'probe_pw';
SQL
# Restore points (and the WAL switch that archives them at once). A function's privileges are per database:
# $POSTGRES_DB (the demo's, which the portal connects to), and template1 for databases created later.
for db in postgres template1 "$POSTGRES_DB"; do
  psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$db" <<'SQL'
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO hadr_backup;
SQL
done
