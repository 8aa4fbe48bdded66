// Pooler.reconfigure (config reload) over fake connects and probes on a FakeClock: pools resized
// in place under load, a host added (probed at once, then chosen), a host removed (its pools
// drained, a leased connection working until released, waiters served elsewhere), one host to two
// and back (role probes on and off), the choice policy, the health interval, the failover timeout,
// connect timeout and probe login from the next connect, and what the reload reports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { UpstreamTarget } from '../../../src/backend/connector.ts';
import type { CredentialCache } from '../../../src/credentials/cache.ts';
import { AmbassadorError } from '../../../src/errors.ts';
import { settle, track } from './pool-fakes.ts';
import { PRIMARY, REPLICA, REQUEST, runUntilSettled, setupPooler } from './pooler-fakes.ts';
import { hostEntry, settings } from './pooler-settings-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const R2 = 'db3:5432';
const OTHER = { user: 'other', database: 'appdb', params: new Map<string, string>() };

/** Enough promise turns for a kicked health round (lookups, probes) to finish. */
async function rounds(): Promise<void> {
  for (let i = 0; i < 6; i += 1) await settle();
}

test('pool options: every pool is resized in place; leased connections are kept, the excess retired on release', async () => {
  const { pooler } = setupPooler([P]);
  await pooler.ready(REQUEST);
  const leased = [await pooler.acquire(REQUEST), await pooler.acquire(REQUEST), await pooler.acquire(OTHER), await pooler.acquire(OTHER)];
  const smaller = settings([P]);
  pooler.reconfigure({ ...smaller, pool: { ...smaller.pool, size: 1 } });
  assert.ok(leased.every((connection) => !connection.isClosed), 'nothing leased was touched');
  assert.deepEqual(pooler.stats().map((s) => [s.key, s.size, s.active]), [[`${P}/appdb/app`, 1, 2], [`${P}/appdb/other`, 1, 2]]);
  pooler.release(leased[0]!, 'reusable');
  pooler.release(leased[2]!, 'reusable');
  assert.deepEqual([leased[0]!.isClosed, leased[2]!.isClosed], [true, true], 'released beyond the new size: closed');
  pooler.release(leased[1]!, 'reusable');
  pooler.release(leased[3]!, 'reusable');
  assert.deepEqual([leased[1]!.isClosed, leased[3]!.isClosed], [false, false], 'within it: kept idle');
  await pooler.acquire({ user: 'third', database: 'appdb', params: new Map() });
  assert.equal(pooler.stats().find((s) => s.key.endsWith('/third'))?.size, 1, 'a new pool gets the new options');
  await pooler.close();
});

test('an added host is probed at once and becomes choosable; the reload reports it', async () => {
  const { pooler, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA).set(R2, REPLICA);
  await pooler.ready(REQUEST);
  const changes = pooler.reconfigure(settings([P, R1, R2]));
  assert.deepEqual(changes, { added: [R2], removed: [], changed: [] });
  assert.equal(pooler.hosts.find((h) => h.id === R2)?.role, 'unknown');
  await rounds();
  assert.ok(prober.calls.includes(R2), 'probed without waiting for the interval');
  assert.equal(pooler.hosts.find((h) => h.id === R2)?.role, 'replica');
  const reads = [await pooler.acquireFor({ kind: 'read' }, REQUEST), await pooler.acquireFor({ kind: 'read' }, REQUEST)];
  assert.deepEqual(reads.map((read) => pooler.hostIdOf(read)).sort(), [R1, R2]);
  await pooler.close();
});

test('a removed host: its pool is drained, its leased connection works until released, its waiter is served elsewhere', async () => {
  const one = settings([P, R1]);
  const { pooler, prober } = setupPooler([P, R1], { pool: { ...one.pool, size: 1 } });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const held = await pooler.acquireFor({ kind: 'read' }, REQUEST);
  assert.equal(pooler.hostIdOf(held), R1);
  const queued = track(pooler.acquireFor({ kind: 'read' }, REQUEST)); // waits in R1's pool (size 1)
  await settle();
  assert.equal(queued.settled, false);

  const changes = pooler.reconfigure({ ...settings([P]), pool: { ...one.pool, size: 1 } });
  assert.deepEqual(changes, { added: [], removed: [R1], changed: [] });
  assert.deepEqual(pooler.hosts.map((h) => h.id), [P]);
  assert.equal(pooler.health.breaker(R1), undefined);
  await settle();
  assert.ok(queued.value, `the waiter chose again: ${String(queued.error)}`);
  assert.equal(pooler.hostIdOf(queued.value), P);
  assert.equal(held.isClosed, false, 'the leased connection keeps working');
  assert.deepEqual(pooler.servers().map((s) => [s.host, s.state]), [[P, 'active'], [R1, 'active']].sort());
  pooler.release(held, 'reusable');
  assert.equal(held.isClosed, true, 'closed once released');
  assert.deepEqual(pooler.servers().map((s) => s.host), [P]);
  assert.deepEqual(pooler.stats().map((s) => s.key), [`${P}/appdb/app`]);
  await pooler.close();
});

test('from one host to two, role probing switches on; back to one, it switches off and the host left is the primary', async () => {
  const { pooler, clock, prober } = setupPooler([P]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  pooler.startHealth();
  await settle();
  assert.equal(prober.calls.length, 0, 'one host: no role probes');
  const write = await pooler.acquire(REQUEST);
  pooler.release(write, 'reusable');

  assert.deepEqual(pooler.reconfigure(settings([P, R1])), { added: [R1], removed: [], changed: [] });
  await rounds();
  assert.deepEqual(prober.calls.sort(), [P, R1], 'both probed at once');
  assert.deepEqual(pooler.hosts.map((h) => h.role), ['primary', 'replica']);
  const read = await pooler.acquireFor({ kind: 'read' }, REQUEST);
  assert.equal(pooler.hostIdOf(read), R1);
  pooler.release(read, 'reusable');
  assert.equal(write.isClosed, false, 'the primary kept its pool');

  assert.deepEqual(pooler.reconfigure(settings([R1])), { added: [], removed: [P], changed: [] });
  assert.equal(write.isClosed, true, 'the removed host\'s idle connection was closed');
  assert.deepEqual(pooler.hosts.map((h) => [h.id, h.role]), [[R1, 'primary']]);
  const probes = prober.calls.length;
  await clock.advanceAsync(3_000);
  assert.equal(prober.calls.length, probes, 'no role probes any more');
  const next = await pooler.acquire(REQUEST);
  assert.equal(pooler.hostIdOf(next), R1);
  await pooler.close();
});

test('a host reconfigured with another role or weight is reported changed and updated in place', async () => {
  const { pooler, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const before = pooler.hosts.find((h) => h.id === R1);
  const changes = pooler.reconfigure({ ...settings([P]), hosts: [hostEntry(P), hostEntry(R1, 'replica', 5)] });
  assert.deepEqual(changes, { added: [], removed: [], changed: [R1] });
  const after = pooler.hosts.find((h) => h.id === R1);
  assert.equal(after, before);
  assert.deepEqual([after?.configuredRole, after?.weight, after?.role], ['replica', 5, 'replica']);
  await pooler.close();
});

test('a host added as primary while the primary is known does not make writes fail as a split brain', async () => {
  const { pooler, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA).set(R2, REPLICA);
  await pooler.ready(REQUEST);
  pooler.reconfigure({ ...settings([P]), hosts: [hostEntry(P), hostEntry(R1), hostEntry(R2, 'primary')] });
  const write = await pooler.acquire(REQUEST);
  assert.equal(pooler.hostIdOf(write), P);
  await pooler.close();
});

test('choice options take effect from the next choice', async () => {
  const { pooler, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  assert.equal(pooler.choose({ kind: 'read' }).host?.id, R1);
  pooler.reconfigure(settings([P, R1], { choice: { loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'always' } }));
  assert.deepEqual([pooler.choose({ kind: 'read' }).host?.id, pooler.choose({ kind: 'read' }).reason], [P, 'always-primary']);
  pooler.reconfigure(settings([P, R1], { choice: { loadBalance: 'round-robin', maxReplicaLag: { ms: 1_000 }, readsFromPrimary: 'never' } }));
  assert.equal(pooler.choose({ kind: 'read' }).host?.id, R1, 'lag 0 ms is within the new bound');
  pooler.hosts.find((h) => h.id === R1)!.lagMs = 5_000;
  assert.equal(pooler.choose({ kind: 'read' }).reason, 'no-replica:all-lagging');
  await pooler.close();
});

test('a shorter health interval takes effect without waiting for the old one', async () => {
  const base = settings([P, R1]);
  const slow = { ...base.health, intervalMs: 30_000 };
  const { pooler, clock, prober } = setupPooler([P, R1], { health: slow });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const probes = prober.calls.length;
  pooler.reconfigure(settings([P, R1]));
  await clock.advanceAsync(1_000);
  assert.equal(prober.calls.length, probes + 2, 'a round one new interval after the last one');
  await pooler.close();
});

test('a new failover timeout applies to the next acquireFor', async () => {
  const { pooler, clock, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  prober.answers.set(P, new Error('connect ECONNREFUSED'));
  await clock.advanceAsync(2_000); // P is down: no primary
  pooler.reconfigure(settings([P, R1], { health: { ...settings([]).health, failoverTimeoutMs: 2_000 } }));
  const write = track(pooler.acquire(REQUEST));
  const took = await runUntilSettled(clock, write, 15_000);
  assert.ok(write.error instanceof AmbassadorError && write.error.code === 'NO_PRIMARY', String(write.error));
  assert.ok(took >= 2_000 && took <= 3_100, `gave up after ${took} ms`);
  await pooler.close();
});

test('connect timeout and probe login are used from the next connect on', async () => {
  const connects: Array<{ id: string; user: string; database: string; timeoutMs: number }> = [];
  const { pooler, upstream } = setupPooler([P], {
    connect: async (target: UpstreamTarget, login, timeoutMs) => {
      connects.push({ id: `${target.host}:${target.port}`, user: login.user, database: login.database, timeoutMs });
      return upstream.connect(target, login, timeoutMs);
    },
  });
  await pooler.ready(REQUEST);
  pooler.release(await pooler.acquire(REQUEST), 'reusable');
  pooler.reconfigure(settings([P], { connectTimeoutMs: 2_500, probeLogin: { user: 'ops', database: 'postgres' } }));
  await pooler.acquire(OTHER);
  await pooler.checkLogin(1_000);
  assert.deepEqual(connects, [
    { id: P, user: 'app', database: 'appdb', timeoutMs: 1000 },
    { id: P, user: 'other', database: 'appdb', timeoutMs: 2500 },
    { id: P, user: 'ops', database: 'postgres', timeoutMs: 1000 },
  ]);
  await pooler.close();
});

/** A credential cache whose every lookup fails saying which cache it is (no socket is ever opened). */
function failingCache(name: string): CredentialCache {
  const fake = {
    loginUser: (user: string) => user,
    get: async () => {
      throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${name} cache asked`);
    },
  };
  return fake as unknown as CredentialCache;
}

test('a new credential cache is used from the next connect on', async () => {
  const { pooler } = setupPooler([P], { connect: undefined, credentials: failingCache('old') });
  await assert.rejects(pooler.checkLogin(1_000), /old cache asked/);
  pooler.reconfigure(settings([P], { credentials: failingCache('new') }));
  await assert.rejects(pooler.checkLogin(1_000), /new cache asked/);
  await pooler.close();
});

test('an empty host list is refused and nothing changes', async () => {
  const { pooler } = setupPooler([P, R1]);
  assert.throws(() => pooler.reconfigure(settings([])), /upstream.hosts is empty/);
  assert.deepEqual(pooler.hosts.map((h) => h.id), [P, R1]);
  await pooler.close();
});
