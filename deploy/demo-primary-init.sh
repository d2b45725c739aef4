#!/bin/sh
# Runs once when the demo primary's data directory is created (docker-compose):
# let the replica stream from it with a password.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
