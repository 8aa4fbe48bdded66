#!/usr/bin/env bash
# The compose stack's load, all through the ambassador: initializes pgbench's tables, runs
# pgbench's TPC-B-like script (writes, so the primary) and then its select-only script in the
# prepared protocol (reads, so the replica when routing.readWriteSplit is on).
# Where to connect comes from libpq's variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE);
# the size of the run from PGBENCH_SCALE, PGBENCH_CLIENTS, PGBENCH_THREADS and PGBENCH_TIME (s).
# pgbench exits non-zero when a client aborts, and so does this script.
set -euo pipefail

scale=${PGBENCH_SCALE:-10}
clients=${PGBENCH_CLIENTS:-16}
threads=${PGBENCH_THREADS:-2}
seconds=${PGBENCH_TIME:-60}

until pg_isready --quiet; do sleep 1; done
echo "pgbench: initializing scale ${scale} through ${PGHOST:-localhost}:${PGPORT:-5432}"
pgbench --initialize --quiet --scale="$scale"
# The first reads go to the replica: wait (a little) until it has replayed the new tables.
for _ in $(seq 30); do
  psql --no-psqlrc --quiet --tuples-only --command 'SELECT 1 FROM pgbench_branches LIMIT 1' >/dev/null 2>&1 && break
  sleep 1
done
echo "pgbench: TPC-B-like, ${clients} clients, ${seconds} s"
pgbench --client="$clients" --jobs="$threads" --time="$seconds" --progress=10
echo "pgbench: select-only, prepared protocol, ${clients} clients, ${seconds} s"
pgbench --select-only --protocol=prepared --client="$clients" --jobs="$threads" --time="$seconds" --progress=10
