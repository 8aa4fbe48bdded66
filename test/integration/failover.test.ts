// Failover through the ambassador (issue 5), on private clusters (every scenario here destroys its
// primary), with the roles discovered by the health loop (every host 'auto'), transaction
// pooling, and a reconnecting write probe INSERTing through the ambassador every ~20 ms:
// (a) synchronous replication to both replicas: kill -9 the primary, `pg_ctl promote` replica1
//     2 s later. Writes succeed again within interval x failureThreshold + 3 s of the promote;
//     every acknowledged write is on the new primary; three clients idle through it all keep
//     their connections and their next write succeeds; the write in flight gets 08006/57P01 on
//     a connection that stays usable. pgbench -S runs through it and how it fared is reported.
// (b) asynchronous replication, same kill/promote: acknowledged writes lost are counted and
//     reported (not asserted to be zero), and the probe recovers within the same bound.
// (c) the primary stopped (fast) and started again, no promotion: writes resume within 2 s of it
//     accepting connections again (measured with direct connections).
// Each scenario prints one JSON line of figures (`{"figures": ...}`).
// The three clusters start together in before() (a few seconds each) and stop in after().

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { initPgbench } from '../../bench/pgbench.ts';
import { CLIENT_PASSWORD, startTestAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import {
  counter,
  createProbeTable,
  figures,
  firstAcceptedAt,
  lostWrites,
  printFigures,
  startPgbench,
  WriteProbe,
  type BackgroundPgbench,
  type ProbeSuccess,
} from '../support/failover.ts';
import { ambassadorClient } from '../support/pooling.ts';
import { describeHosts, hostOf } from '../support/routing.ts';
import { eventually, startCluster, type LocalCluster, type PgServerInfo, type Topology } from '../support/topology.ts';

const DB = 'app';
const TABLE = 'failover_writes';

/** Health settings of every scenario; the acceptance bounds below are computed from them. */
const INTERVAL_MS = 1000;
const FAILURE_THRESHOLD = 2;
const HEALTH = { interval: `${INTERVAL_MS}ms`, timeout: '1s', failureThreshold: FAILURE_THRESHOLD, failoverTimeout: '20s' };
/** Issue 5: writes succeed again within interval x failureThreshold + 3 s of the promote. */
const FAILOVER_BOUND_MS = INTERVAL_MS * FAILURE_THRESHOLD + 3000;
/** Issue 5: after a restart, writes resume within 2 s of the primary accepting connections. */
const RESTART_BOUND_MS = 2000;
/** The promote comes this long after the kill (issue 5). */
const PROMOTE_AFTER_MS = 2000;
/** How long recovery is waited for beyond a bound, only to report the real figure when it is missed. */
const REPORT_GRACE_MS = 10_000;

type ClusterName = 'sync' | 'async' | 'restart';
const clusters = new Map<ClusterName, Promise<LocalCluster>>();
const cleanups: Array<() => Promise<unknown>> = [];

before(() => {
  // Started together, awaited by each scenario; a failed start fails only the scenarios using it.
  const start = (name: ClusterName, synchronousReplicas: boolean): void => {
    const started = startCluster({ replicas: 2, synchronousReplicas });
    started.catch(() => {});
    clusters.set(name, started);
  };
  start('sync', true);
  start('async', false);
  start('restart', false);
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await Promise.all([...clusters.values()].map(async (started) => (await started.catch(() => null))?.stop()));
});

/** Registers `stop` to run in after() (also when the test fails midway) and returns `value`. */
function owned<T>(value: T, stop: (value: T) => Promise<unknown>): T {
  cleanups.push(() => stop(value));
  return value;
}

function appOn(topology: Topology, server: PgServerInfo): pg.ClientConfig {
  return { host: server.host, port: server.port, user: 'app', password: topology.users.app.password, database: DB, connectionTimeoutMillis: 5000 };
}

/** Every server of the cluster as an upstream host with role 'auto', transaction pooling. */
async function failoverAmbassador(topology: Topology): Promise<TestAmbassador> {
  const hosts = [topology.primary, ...topology.replicas].map((server) => ({ host: server.host, port: server.port, role: 'auto' }));
  const amb = owned(
    await startTestAmbassador(topology, {
      upstream: { hosts, user: 'app', database: DB, retry: { max: 3, initialDelay: '50ms', maxDelay: '1s' } },
      pool: { mode: 'transaction', size: 10 },
      routing: { readWriteSplit: false },
      health: HEALTH,
      logging: { level: 'debug' },
    }),
    (a) => a.stop(),
  );
  await eventually(
    async () => (hostOf(amb, topology.primary).role === 'primary' && topology.replicas.every((r) => hostOf(amb, r).role === 'replica') ? true : undefined),
    { timeoutMs: 10_000, what: 'roles discovered' },
  ).catch((error: Error) => {
    throw new Error(`${error.message}: ${describeHosts(amb)}`);
  });
  return amb;
}

async function startWriteProbe(amb: TestAmbassador, name: string): Promise<WriteProbe> {
  const probe = owned(new WriteProbe({ port: amb.port, database: DB, intervalMs: 20, name }, TABLE), (p) => p.stop());
  await probe.start();
  await eventually(async () => (probe.successes.length >= 20 ? true : undefined), { timeoutMs: 10_000, what: `${name}: 20 writes before the fault` });
  return probe;
}

/** Waits for the probe's first success at or after `since`; undefined if none within bound + grace. */
async function successAfter(probe: WriteProbe, since: number, boundMs: number): Promise<ProbeSuccess | undefined> {
  try {
    return await eventually(async () => probe.successes.find((s) => s.at >= since), {
      timeoutMs: Math.max(0, since + boundMs + REPORT_GRACE_MS - Date.now()),
      intervalMs: 10,
      what: 'a write acknowledged after the fault',
    });
  } catch {
    return undefined;
  }
}

interface KillPromote {
  killAt: number;
  promoteAt: number;
  promotedAt: number;
  recovered: ProbeSuccess | undefined;
}

/** kill -9 of the primary (whole process group), promote of replica1 2 s later, wait for a write. */
async function killAndPromote(cluster: LocalCluster, probe: WriteProbe): Promise<KillPromote> {
  const killAt = Date.now();
  cluster.primary.kill('SIGKILL');
  await cluster.primary.exited();
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, killAt + PROMOTE_AFTER_MS - Date.now())));
  const promoteAt = Date.now();
  await cluster.replicas[0]!.promote({ timeoutMs: 30_000 });
  const promotedAt = Date.now();
  const recovered = await successAfter(probe, promoteAt, FAILOVER_BOUND_MS);
  // Keep writing a little after recovery, so the figures cover the steady state after it.
  if (recovered) await new Promise((resolve) => setTimeout(resolve, 500));
  return { killAt, promoteAt, promotedAt, recovered };
}

function seconds(ms: number | null | undefined): number | null {
  return ms === null || ms === undefined ? null : Math.round(ms) / 1000;
}

interface IdleClient {
  client: pg.Client;
  events: string[];
}

async function idleClients(amb: TestAmbassador, count: number): Promise<IdleClient[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const client = owned(await ambassadorClient(amb.port, DB), (c) => c.end());
      const idle: IdleClient = { client, events: [] };
      client.on('error', (error) => idle.events.push(`error: ${error.message}`));
      client.on('end', () => idle.events.push('end'));
      return idle;
    }),
  );
}

/** pgbench -S through the ambassador in the background (null when this installation has no pgbench). */
function backgroundPgbench(topology: Topology, amb: TestAmbassador, durationS: number): BackgroundPgbench | null {
  const bin = path.join(topology.binaries.bindir, 'pgbench');
  if (!existsSync(bin)) return null;
  const endpoint = { host: '127.0.0.1', port: amb.port, user: 'app', password: CLIENT_PASSWORD, database: DB };
  return owned(startPgbench(bin, endpoint, ['-S', '-M', 'simple', '-c', '4', '-j', '2', '-T', String(durationS)]), (p) => p.stop());
}

async function pgbenchInit(topology: Topology): Promise<void> {
  const bin = path.join(topology.binaries.bindir, 'pgbench');
  if (!existsSync(bin)) return;
  await initPgbench(bin, { host: topology.primary.host, port: topology.primary.port, user: 'app', password: topology.users.app.password, database: DB }, 1);
}

async function subtest(t: TestContext, name: string, fn: () => void | Promise<void>): Promise<void> {
  await t.test(name, fn);
}

describe('failover (issue 5)', () => {
  test('(a) synchronous replication: kill -9 primary, promote replica1 2 s later', async (t) => {
    const cluster = await clusters.get('sync')!;
    const topology = cluster.describe();
    await createProbeTable(appOn(topology, topology.primary), TABLE);
    await pgbenchInit(topology);
    const amb = await failoverAmbassador(topology);
    const idle = await idleClients(amb, 3);
    const probe = await startWriteProbe(amb, 'sync-writes');
    const pgbench = backgroundPgbench(topology, amb, 10);
    await pgbench?.running;

    const run = await killAndPromote(cluster, probe);
    await probe.stop();
    const bench = pgbench ? await pgbench.done : null;
    const newPrimary = appOn(topology, topology.replicas[0]!);
    const lost = await lostWrites(probe, newPrimary);
    const f = figures(probe, run.promoteAt, run.killAt);
    const idleWrites = await Promise.all(
      idle.map((c, index) => c.client.query(`INSERT INTO ${TABLE} (id) VALUES (${1_000_000 + index})`).then(
        (r) => `ok (${r.rowCount} row)`,
        (error: Error & { code?: string }) => `failed: ${error.code ?? ''} ${error.message}`,
      )),
    );
    printFigures('sync-failover', {
      ...failoverFigures(f, probe, lost),
      promoteTookS: seconds(run.promotedAt - run.promoteAt),
      idleClients: idleWrites,
      pgbench: bench === null ? 'no pgbench binary' : {
        clients: bench.summary.clients,
        transactions: bench.summary.transactions,
        abortedClients: bench.abortLines.length,
        exitCode: bench.exitCode,
        tpsEachSecond: bench.progressTps,
        firstErrors: bench.summary.errors.slice(0, 3),
      },
    });

    await subtest(t, `writes succeed again within ${FAILOVER_BOUND_MS} ms of the promote`, () => {
      assert.ok(run.recovered, `no write acknowledged within ${(FAILOVER_BOUND_MS + REPORT_GRACE_MS) / 1000} s of the promote; errors: ${JSON.stringify(probe.errors.slice(-5))}; hosts: ${describeHosts(amb)}`);
      const took = run.recovered.at - run.promoteAt;
      assert.ok(took <= FAILOVER_BOUND_MS, `first write acknowledged ${took} ms after the promote (bound ${FAILOVER_BOUND_MS} ms)`);
    });
    await subtest(t, 'every acknowledged write is on the new primary (synchronous replication)', () => {
      assert.ok(probe.successes.length > 20);
      assert.deepEqual(lost, [], `${lost.length} acknowledged writes missing on replica1`);
    });
    await subtest(t, 'idle clients keep their connections and their next write succeeds', () => {
      assert.deepEqual(idle.map((c) => c.events), [[], [], []], 'idle clients saw events on their connections');
      assert.deepEqual(idleWrites, ['ok (1 row)', 'ok (1 row)', 'ok (1 row)']);
    });
    await subtest(t, 'the write in flight gets 08006/57P01 and its connection stays usable', () => {
      const unexpected = probe.errors.filter((e) => e.sqlstate !== '08006' && e.sqlstate !== '57P01');
      assert.deepEqual(unexpected, [], 'errors other than 08006/57P01 on the write probe');
      assert.equal(probe.reconnects, 0, 'the write probe had to reconnect');
    });
    await subtest(t, 'health counters record the failover', () => {
      assert.ok(counter(amb.ambassador, 'host-down') >= 1, 'host-down');
      assert.ok(counter(amb.ambassador, 'role-changed') >= 1, 'role-changed');
      assert.ok(counter(amb.ambassador, 'failover-started') >= 1, 'failover-started');
      assert.ok(counter(amb.ambassador, 'failover-ended') >= 1, 'failover-ended');
    });
  });

  test('(b) asynchronous replication: kill -9 primary, promote replica1; writes lost are counted', async (t) => {
    const cluster = await clusters.get('async')!;
    const topology = cluster.describe();
    await createProbeTable(appOn(topology, topology.primary), TABLE);
    const amb = await failoverAmbassador(topology);
    const probe = await startWriteProbe(amb, 'async-writes');

    const run = await killAndPromote(cluster, probe);
    await probe.stop();
    const lost = await lostWrites(probe, appOn(topology, topology.replicas[0]!));
    const f = figures(probe, run.promoteAt, run.killAt);
    printFigures('async-failover', {
      ...failoverFigures(f, probe, lost),
      lostIds: lost.slice(0, 20),
    });

    await subtest(t, `the probe recovers within ${FAILOVER_BOUND_MS} ms of the promote`, () => {
      assert.ok(run.recovered, `no write acknowledged after the promote; errors: ${JSON.stringify(probe.errors.slice(-5))}; hosts: ${describeHosts(amb)}`);
      assert.ok(run.recovered.at - run.promoteAt <= FAILOVER_BOUND_MS, `first write ${run.recovered.at - run.promoteAt} ms after the promote`);
    });
    await subtest(t, 'acknowledged writes lost are counted (ids above the last one replicated)', () => {
      assert.ok(Number.isInteger(lost.length) && lost.length <= probe.successes.length);
      // Writes after the promote went to replica1 itself: none of those can be missing there.
      const lostAfterPromote = lost.filter((id) => (probe.successes.find((s) => s.id === id)?.sentAt ?? 0) >= run.promotedAt);
      assert.deepEqual(lostAfterPromote, [], 'writes sent after the promote are missing on the new primary');
    });
  });

  test('(c) the primary restarted (no promotion): writes resume within 2 s of it accepting connections', async (t) => {
    const cluster = await clusters.get('restart')!;
    const topology = cluster.describe();
    await createProbeTable(appOn(topology, topology.primary), TABLE);
    const amb = await failoverAmbassador(topology);
    const probe = await startWriteProbe(amb, 'restart-writes');

    const stopAt = Date.now();
    await cluster.primary.stop({ mode: 'fast' });
    const stoppedAt = Date.now();
    // Restart once the ambassador has noticed (the harder case: it must see the host come back).
    const downBound = INTERVAL_MS * (FAILURE_THRESHOLD + 1) + 1000 + 2000;
    const markedDown = await eventually(async () => (hostOf(amb, topology.primary).up ? undefined : Date.now()), {
      timeoutMs: downBound,
      intervalMs: 20,
      what: `the stopped primary marked down: ${describeHosts(amb)}`,
    }).catch((error: Error) => error);
    const accepting = firstAcceptedAt(appOn(topology, topology.primary), { timeoutMs: 60_000, intervalMs: 20 });
    await cluster.primary.start({ timeoutMs: 60_000 });
    const acceptedAt = await accepting;
    const resumed = await successAfter(probe, stoppedAt, acceptedAt + RESTART_BOUND_MS - stoppedAt);
    await probe.stop();
    const f = figures(probe, acceptedAt, stopAt);
    printFigures('primary-restart', {
      errors: f.errors,
      sqlstates: f.sqlstates,
      reconnects: f.reconnects,
      downForS: seconds(acceptedAt - stopAt),
      markedDownAfterS: typeof markedDown === 'number' ? seconds(markedDown - stopAt) : String(markedDown.message),
      secondsFromAcceptingToFirstWrite: resumed ? seconds(resumed.at - acceptedAt) : null,
      boundS: RESTART_BOUND_MS / 1000,
      worstStallS: f.worstStallS,
      acknowledged: probe.successes.length,
    });

    await subtest(t, 'the stopped primary is marked down', () => {
      assert.equal(typeof markedDown, 'number', markedDown instanceof Error ? markedDown.message : '');
    });
    await subtest(t, `writes resume within ${RESTART_BOUND_MS} ms of the primary accepting connections`, () => {
      assert.ok(resumed, `no write acknowledged after the restart; errors: ${JSON.stringify(probe.errors.slice(-5))}; hosts: ${describeHosts(amb)}`);
      assert.ok(resumed.at - acceptedAt <= RESTART_BOUND_MS, `first write ${resumed.at - acceptedAt} ms after the primary accepted connections`);
    });
  });
});

/** The figures both failover scenarios print: the probe's errors, recovery, stall and lost writes. */
function failoverFigures(f: ReturnType<typeof figures>, probe: { successes: readonly unknown[] }, lost: readonly unknown[]): Record<string, unknown> {
  return {
    errors: f.errors,
    sqlstates: f.sqlstates,
    reconnects: f.reconnects,
    secondsToRecovery: f.secondsToRecovery,
    boundS: FAILOVER_BOUND_MS / 1000,
    worstStallS: f.worstStallS,
    acknowledged: probe.successes.length,
    writesLost: lost.length,
  };
}
