#!/usr/bin/env bash
# The primary's first-start script. The official postgres image runs /docker-entrypoint-initdb.d/*.sh
# once, right after initdb, against a server that listens on its Unix socket only; psql reaches it
# with the image's POSTGRES_USER and POSTGRES_DB. This script:
#   - creates the application role (APP_USER, default app) and makes it the owner of POSTGRES_DB,
#     so it can create tables in the public schema (pgbench -i does);
#   - creates the replication role (REPLICATION_USER, default replicator) and a physical slot for
#     the replica (REPLICATION_SLOT, default replica1), so the primary keeps the WAL it still needs;
#   - lets the replication role connect for streaming replication from any address, with SCRAM.
# The image restarts the server after the init scripts, so the pg_hba.conf line takes effect then.
# The same script runs in the test suite against a primary made with the test topology's binaries.
# The image executes it when it is executable and sources it otherwise (a checkout that lost the
# mode): the body runs in a subshell either way, so its shell options stay its own.

init_replication() (
set -euo pipefail

: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}" "${PGDATA:?}"
: "${APP_PASSWORD:?set APP_PASSWORD}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
app_user=${APP_USER:-app}
replication_user=${REPLICATION_USER:-replicator}
slot=${REPLICATION_SLOT:-replica1}

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set app_user="$app_user" --set app_password="$APP_PASSWORD" \
  --set replication_user="$replication_user" --set replication_password="$REPLICATION_PASSWORD" \
  --set slot="$slot" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
ALTER DATABASE :"DBNAME" OWNER TO :"app_user";
CREATE ROLE :"replication_user" LOGIN REPLICATION PASSWORD :'replication_password';
SELECT pg_create_physical_replication_slot(:'slot');
SQL

echo "host replication ${replication_user} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
)

init_replication
