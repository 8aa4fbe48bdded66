// Graceful shutdown of the real CLI (child process, real signals) in front of the shared primary:
// SIGTERM stops accepting, idle sessions end at once with 57P01, sessions in a transaction may
// finish it and then end with 57P01, stragglers are ended at shutdown.timeout, the process exits
// 0; a second signal during the drain exits at once with 130.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { spawnAmbassador, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { clientConfig, eventually, getTopology, type Topology } from '../support/topology.ts';

type PgError = Error & { code?: string };

let topology: Topology;
const table = `shutdown_rows_${randomBytes(4).toString('hex')}`;
const spawned: SpawnedAmbassador[] = [];
const clients: pg.Client[] = [];

before(async () => {
  topology = await getTopology();
  await onPrimary(`create table ${table} (id serial primary key, note text not null)`);
});

after(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => {})));
  await Promise.all(spawned.map((amb) => amb.stop()));
  if (topology) await onPrimary(`drop table if exists ${table}`).catch(() => {});
});

/** Runs SQL directly on the primary (not through any ambassador) as the table's owner. */
async function onPrimary<Row extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client(clientConfig(topology, topology.primary, topology.users.app));
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Row[];
  } finally {
    await client.end().catch(() => {});
  }
}

async function start(shutdownTimeout: string): Promise<SpawnedAmbassador> {
  const amb = await spawnAmbassador(topology, { shutdown: { timeout: shutdownTimeout } });
  spawned.push(amb);
  return amb;
}

/** A connected client whose 'error' events (e.g. the FATAL 57P01) are recorded, not thrown. */
async function connectClient(port: number): Promise<{ client: pg.Client; errors: PgError[] }> {
  const client = new pg.Client(viaAmbassador(port, { connectionTimeoutMillis: 5000 }));
  clients.push(client);
  const errors: PgError[] = [];
  client.on('error', (error: PgError) => errors.push(error));
  await client.connect();
  return { client, errors };
}

function waitForAdminShutdown(errors: PgError[], what: string, timeoutMs = 10_000): Promise<PgError> {
  return eventually(async () => errors.find((e) => e.code === '57P01'), {
    timeoutMs,
    what: `57P01 on ${what} (errors so far: ${errors.map((e) => `${e.code ?? '-'} ${e.message}`).join('; ') || 'none'})`,
  });
}

async function exitWithin(amb: SpawnedAmbassador, timeoutMs: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`ambassador did not exit within ${timeoutMs} ms; output tail:\n${amb.output().slice(-3000)}`)), timeoutMs);
  });
  try {
    return await Promise.race([amb.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls new connections until one is refused, which also proves the signal was handled (the
 * listener closes first thing). A connection that still gets in (before the signal) is closed.
 */
async function waitUntilRefused(port: number): Promise<Error> {
  return eventually(
    async () => {
      const probe = new pg.Client(viaAmbassador(port, { connectionTimeoutMillis: 2000 }));
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.query('select 1');
      } catch (error) {
        return error as Error;
      } finally {
        await probe.end().catch(() => {});
      }
      return undefined;
    },
    { timeoutMs: 10_000, what: 'new connections to be refused during the drain' },
  );
}

test('idle clients get FATAL 57P01 and the process exits 0 promptly on SIGTERM', { timeout: 60_000 }, async () => {
  const amb = await start('30s');
  const first = await connectClient(amb.port);
  const second = await connectClient(amb.port);
  await first.client.query('select 1');
  await second.client.query('select 1');

  const signalledAt = Date.now();
  amb.process.kill('SIGTERM');
  assert.equal(await exitWithin(amb, 10_000), 0, amb.output().slice(-3000));
  const elapsed = Date.now() - signalledAt;
  assert.ok(elapsed < 5000, `idle sessions must not wait for shutdown.timeout (30s); exit took ${elapsed} ms`);
  await waitForAdminShutdown(first.errors, 'the first idle client');
  await waitForAdminShutdown(second.errors, 'the second idle client');
});

test('a client mid-transaction finishes it and commits, then gets 57P01; new clients are refused', { timeout: 60_000 }, async () => {
  const amb = await start('30s');
  const { client, errors } = await connectClient(amb.port);
  await client.query('begin');
  await client.query(`insert into ${table} (note) values ($1)`, ['b-before-signal']);

  amb.process.kill('SIGTERM');
  const refusal = await waitUntilRefused(amb.port);
  assert.ok(refusal instanceof Error);
  assert.equal(errors.length, 0, `the busy client must not be ended yet: ${errors.map((e) => e.message).join('; ')}`);

  await client.query(`insert into ${table} (note) values ($1)`, ['b-during-drain']);
  await client.query('commit');
  await waitForAdminShutdown(errors, 'the client after its commit');
  assert.equal(await exitWithin(amb, 10_000), 0, amb.output().slice(-3000));

  const rows = await onPrimary<{ note: string }>(`select note from ${table} where note like 'b-%' order by id`);
  assert.deepEqual(rows.map((row) => row.note), ['b-before-signal', 'b-during-drain']);
});

test('a client still in its transaction at shutdown.timeout is ended with 57P01; its row is not committed', { timeout: 60_000 }, async () => {
  const amb = await start('1s');
  const { client, errors } = await connectClient(amb.port);
  await client.query('begin');
  await client.query(`insert into ${table} (note) values ($1)`, ['c-never-committed']);

  const signalledAt = Date.now();
  amb.process.kill('SIGTERM');
  await waitForAdminShutdown(errors, 'the client left in its transaction');
  assert.equal(await exitWithin(amb, 10_000), 0, amb.output().slice(-3000));
  const elapsed = Date.now() - signalledAt;
  assert.ok(elapsed >= 900, `the busy session must get shutdown.timeout (1s) before it is ended; exit took ${elapsed} ms`);

  // Its server connection is gone, so its transaction was rolled back, not left open.
  await eventually(
    async () => {
      const open = await onPrimary(
        `select pid from pg_stat_activity where state like 'idle in transaction%' and query like $1`,
        [`%insert into ${table}%`],
      );
      return open.length === 0 ? true : undefined;
    },
    { timeoutMs: 10_000, what: 'the upstream transaction to end' },
  );
  const rows = await onPrimary(`select note from ${table} where note = 'c-never-committed'`);
  assert.equal(rows.length, 0, 'the uncommitted row must not be visible on the primary');
});

for (const second of ['SIGTERM', 'SIGINT'] as const) {
  test(`a second signal (${second}) during the drain exits at once with 130`, { timeout: 60_000 }, async () => {
    const amb = await start('30s');
    const { client } = await connectClient(amb.port);
    await client.query('begin');
    await client.query('select 1');

    amb.process.kill('SIGTERM');
    await waitUntilRefused(amb.port); // the first signal has been handled: the drain waits on our transaction
    const signalledAt = Date.now();
    amb.process.kill(second);
    assert.equal(await exitWithin(amb, 5000), 130, amb.output().slice(-3000));
    const elapsed = Date.now() - signalledAt;
    assert.ok(elapsed < 3000, `the second signal must not wait for the drain; exit took ${elapsed} ms`);
  });
}
