#!/usr/bin/env bash
# The replica's entrypoint (in place of the official image's, which would initdb a new cluster).
# On first start, with an empty data directory, it clones the primary with pg_basebackup: WAL
# streamed during the copy, through the slot the primary's init script made, and --write-recovery-conf
# leaving standby.signal and primary_conninfo behind. Every start then runs the server as a hot
# standby, with the arguments given to this script (compose's `command`).
# Runs as the postgres OS user. The same script runs in the test suite against a primary made
# with the test topology's binaries.
set -euo pipefail

: "${PGDATA:?}" "${PRIMARY_HOST:?set PRIMARY_HOST}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
primary_port=${PRIMARY_PORT:-5432}
replication_user=${REPLICATION_USER:-replicator}
slot=${REPLICATION_SLOT:-replica1}

# Written once the clone is whole: a first start killed during pg_basebackup leaves none, and the
# next start clones again instead of running on a partial copy.
cloned="$PGDATA/.replica-cloned"
if [ ! -f "$cloned" ]; then
  if [ -e "$PGDATA/PG_VERSION" ] || [ -e "$PGDATA/base" ]; then
    echo "replica: removing an unfinished clone in ${PGDATA}"
    find "$PGDATA" -mindepth 1 -delete
  fi
  echo "replica: waiting for the primary at ${PRIMARY_HOST}:${primary_port}"
  until pg_isready --quiet --host="$PRIMARY_HOST" --port="$primary_port"; do sleep 1; done
  echo "replica: cloning the primary into ${PGDATA}"
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup --no-password \
    --host="$PRIMARY_HOST" --port="$primary_port" --username="$replication_user" \
    --pgdata="$PGDATA" --wal-method=stream --slot="$slot" --write-recovery-conf --checkpoint=fast
  chmod 0700 "$PGDATA"
  touch "$cloned"
fi

exec postgres -D "$PGDATA" -c hot_standby=on "$@"
