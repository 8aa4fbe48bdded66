// Pooler.acquireFor through a failover, over fake connects and probes on a FakeClock: writes wait
// for a promoted primary and get it within a round; they give up after failoverTimeout with the
// last connect error; split brain and non-reachability errors are refused at once; the old
// primary's pools are drained (waiters chosen again, leased connections closed on release, no
// pool back by a late release); a restarted single host is used again as soon as a probe gets
// through its open breaker; an address change drains; suspect() asks for a round.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmbassadorError } from '../../../src/errors.ts';
import { track, settle } from './pool-fakes.ts';
import { loginError, PRIMARY, REPLICA, REQUEST, runUntilSettled, setupPooler } from './pooler-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const down = new Error('connect ECONNREFUSED');

function poolKeys(stats: ReadonlyArray<{ key: string }>): string[] {
  return stats.map((s) => s.key);
}

test('a write waits out the failover: the old primary is drained, the promoted replica serves within a round', async () => {
  const { pooler, clock, upstream, prober, events } = setupPooler([P, R1], {
    pool: { size: 1, minIdle: 0, idleTimeoutMs: 0, maxLifetimeMs: 0, acquireTimeoutMs: 20_000, retry: { max: 1, initialDelayMs: 50, maxDelayMs: 200 } },
  });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const held = await pooler.acquireFor({ kind: 'write' }, REQUEST);
  assert.equal(pooler.hostIdOf(held), P);
  const queued = track(pooler.acquireFor({ kind: 'write' }, REQUEST)); // waits in P's pool (size 1)

  prober.answers.set(P, down);
  upstream.refuse(P);
  await runUntilSettled(clock, queued, 4_000);
  assert.equal(queued.settled, false, 'the write waits instead of failing');
  assert.deepEqual(events.map((e) => e.type).filter((t) => t.startsWith('host') || t.startsWith('failover')), ['host-down', 'failover-started']);
  assert.deepEqual(poolKeys(pooler.stats()), [], 'the old primary\'s pool was drained and forgotten');

  prober.answers.set(R1, PRIMARY);
  const took = await runUntilSettled(clock, queued, 4_000);
  assert.ok(queued.value, `expected a connection, got ${String(queued.error)}`);
  assert.equal(pooler.hostIdOf(queued.value), R1);
  assert.ok(took <= 1_050, `served ${took} ms after the promotion`);
  const ended = events.find((e) => e.type === 'failover-ended');
  assert.ok(ended && ended.type === 'failover-ended' && ended.newPrimary === R1 && ended.oldPrimary === P);

  pooler.release(held, 'reusable');
  assert.equal(held.isClosed, true, 'a connection leased from a drained pool is closed when released');
  assert.deepEqual(poolKeys(pooler.stats()), [`${R1}/appdb/app`], 'the late release did not bring the old pool back');
  await pooler.close();
});

test('a switchover seen in one round drains the old primary\'s pools and sends writes to the new one', async () => {
  const { pooler, clock, prober, events } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const old = await pooler.acquire(REQUEST);
  pooler.release(old, 'reusable');
  prober.answers.set(P, REPLICA).set(R1, PRIMARY);
  await clock.advanceAsync(1_000);
  assert.deepEqual(events.filter((e) => e.type.startsWith('failover')).map((e) => e.type), ['failover-started', 'failover-ended']);
  assert.equal(old.isClosed, true, 'the idle connection to the demoted host was closed');
  const write = await pooler.acquire(REQUEST);
  assert.equal(pooler.hostIdOf(write), R1);
  assert.deepEqual(poolKeys(pooler.stats()), [`${R1}/appdb/app`]);
  await pooler.close();
});

test('no primary for failoverTimeout: NO_PRIMARY naming the wait and the last connect error', async () => {
  const { pooler, clock, upstream, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  prober.answers.set(P, down).set(R1, down);
  upstream.refuse(P);
  upstream.refuse(R1);
  const write = track(pooler.acquireFor({ kind: 'write' }, REQUEST));
  const took = await runUntilSettled(clock, write, 15_000);
  assert.ok(write.error instanceof AmbassadorError, `expected an AmbassadorError, got ${String(write.error)}`);
  assert.equal(write.error.code, 'NO_PRIMARY');
  assert.match(write.error.message, /after waiting 10000 ms for a failover/);
  assert.match(write.error.message, /ECONNREFUSED/);
  assert.ok(took >= 10_000 && took <= 11_100, `gave up after ${took} ms`);
  await pooler.close();
});

test('two answering primaries: writes are refused at once, without a connect', async () => {
  const { pooler, upstream, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, PRIMARY);
  await pooler.ready(REQUEST);
  const write = track(pooler.acquireFor({ kind: 'write' }, REQUEST));
  await settle();
  assert.ok(write.error instanceof AmbassadorError);
  assert.equal(write.error.code, 'NO_PRIMARY');
  assert.match(write.error.message, /two hosts claim to be the primary/);
  assert.equal(upstream.attempts.length, 0);
  await pooler.close();
});

test('a read that only weight-0 replicas could serve is refused at once, not after failoverTimeout', async () => {
  const { pooler, prober } = setupPooler([P, R1], { choice: { loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'never' } });
  pooler.hosts[1]!.weight = 0;
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const read = track(pooler.acquireFor({ kind: 'read' }, REQUEST));
  await settle();
  assert.ok(read.error instanceof AmbassadorError);
  assert.equal(read.error.code, 'NO_REPLICA');
  assert.match(read.error.message, /all-weight-zero/);
  await pooler.close();
});

test('demoted(): the server reports in_hot_standby on, or the snapshot has its host as a replica', async () => {
  const { pooler, clock, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const lease = await pooler.acquire(REQUEST);
  assert.equal(pooler.demoted(lease), false);
  lease.parameters.set('in_hot_standby', 'on');
  assert.equal(pooler.demoted(lease), true);
  lease.parameters.set('in_hot_standby', 'off');
  prober.answers.set(P, REPLICA);
  await clock.advanceAsync(1_000);
  assert.equal(pooler.roleOf(lease), 'replica');
  assert.equal(pooler.demoted(lease), true);
  await pooler.close();
});

test('an authentication failure is the client\'s answer at once: one attempt, no waiting, the breaker stays closed', async () => {
  const { pooler, upstream, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const refusal = loginError('28P01', 'password authentication failed for user "app"');
  upstream.refuse(P, refusal);
  const write = track(pooler.acquireFor({ kind: 'write' }, REQUEST));
  await settle();
  await settle();
  assert.equal(write.error, refusal);
  assert.equal(upstream.attemptsOn(P), 1);
  assert.equal(pooler.health.breaker(P)!.state, 'closed');
  await pooler.close();
});

test('one host, restarted: writes wait, the breaker opens, and a probe getting through brings writes back within a round', async () => {
  const { pooler, clock, upstream, prober, events } = setupPooler([P], {
    health: { intervalMs: 1000, timeoutMs: 250, failureThreshold: 2, failoverTimeoutMs: 30_000, circuitBreaker: { threshold: 3, cooldownMs: 60_000 } },
  });
  prober.answers.set(P, down);
  upstream.refuse(P);
  pooler.startHealth();
  const write = track(pooler.acquire(REQUEST));
  await runUntilSettled(clock, write, 5_000);
  assert.equal(write.settled, false);
  assert.equal(pooler.health.breaker(P)!.state, 'open');
  const attemptsWhileOpen = upstream.attemptsOn(P);
  await runUntilSettled(clock, write, 3_000);
  assert.equal(upstream.attemptsOn(P), attemptsWhileOpen, 'an open breaker makes no connects');
  assert.ok(prober.calls.length > 0, 'the open host is probed');
  assert.deepEqual([pooler.hosts[0]!.up, pooler.hosts[0]!.role], [true, 'primary'], 'one host is never marked down');

  upstream.accept(P);
  prober.answers.set(P, PRIMARY);
  const took = await runUntilSettled(clock, write, 5_000);
  assert.ok(write.value, `expected a connection, got ${String(write.error)}`);
  assert.ok(took <= 1_050, `served ${took} ms after the restart`);
  assert.deepEqual(
    events.map((e) => e.type),
    ['breaker-opened', 'breaker-half-open', 'breaker-closed'],
  );
  await pooler.close();
});

test('an open breaker refuses at once with HOST_UNAVAILABLE and no connect (acquireFor too, with failoverTimeout 0)', async () => {
  const { pooler, clock, upstream } = setupPooler([P], {
    health: { intervalMs: 1000, timeoutMs: 250, failureThreshold: 2, failoverTimeoutMs: 0, circuitBreaker: { threshold: 2, cooldownMs: 60_000 } },
  });
  upstream.refuse(P);
  const first = track(pooler.acquireOn(pooler.hosts[0]!, REQUEST));
  await runUntilSettled(clock, first, 1_000, 10);
  assert.equal(upstream.attemptsOn(P), 2, '1 + retry.max attempts');
  assert.equal(pooler.hosts[0]!.breaker, 'open');
  const second = track(pooler.acquireOn(pooler.hosts[0]!, REQUEST));
  await settle();
  assert.ok(second.error instanceof AmbassadorError);
  assert.equal(second.error.code, 'HOST_UNAVAILABLE');
  assert.match(second.error.message, /db1:5432.*circuit breaker is open.*ECONNREFUSED/);
  const write = track(pooler.acquire(REQUEST));
  await settle();
  assert.ok(write.error instanceof AmbassadorError);
  assert.equal(write.error.code, 'HOST_UNAVAILABLE', 'failoverTimeout 0: the error itself, no waiting');
  assert.equal(upstream.attemptsOn(P), 2);
  await pooler.close();
});

test('a name now resolving elsewhere drains its pools: the idle connection is closed, the next lease connects anew', async () => {
  const answers = [['10.0.0.1'], ['10.0.0.2']];
  const { pooler, clock, upstream, events } = setupPooler(['db.example:5432'], { resolve: async () => (answers.length > 1 ? answers.shift()! : answers[0]!) });
  pooler.startHealth();
  await settle();
  const first = await pooler.acquire(REQUEST);
  pooler.release(first, 'reusable');
  await clock.advanceAsync(1_000);
  assert.ok(events.some((e) => e.type === 'address-changed'));
  assert.equal(first.isClosed, true);
  const second = await pooler.acquire(REQUEST);
  assert.notEqual(second, first);
  assert.equal(upstream.attempts.length, 2);
  await pooler.close();
});

test('suspect() asks for a health round now; hostIdOf names the host; a read avoiding the only replica falls back to the primary', async () => {
  const { pooler, clock, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const read = await pooler.acquireFor({ kind: 'read' }, REQUEST);
  assert.equal(pooler.hostIdOf(read), R1);
  await clock.advanceAsync(300);
  const before = prober.calls.length;
  pooler.suspect(read, 'server closed the connection mid-request');
  await settle();
  assert.equal(prober.calls.length, before + 2, 'one extra round');
  const retry = await pooler.acquireFor({ kind: 'read', avoid: [R1] }, REQUEST);
  assert.equal(pooler.hostIdOf(retry), P);
  await pooler.close();
});

test('demoted() is false for a host configured as a replica (a replica-only sidecar): writes get the server\'s own 25006', async () => {
  const { pooler } = setupPooler([R1], { hosts: [{ host: R1.split(':')[0]!, port: Number(R1.split(':')[1]), role: 'replica' }] });
  await pooler.ready(REQUEST);
  const lease = await pooler.acquire(REQUEST);
  assert.equal(pooler.roleOf(lease), 'primary', 'one host serves everything');
  lease.parameters.set('in_hot_standby', 'on');
  assert.equal(pooler.demoted(lease), false);
  await pooler.close();
});

test('a role change drains the host\'s pools: connections opened under the old role are not reused', async () => {
  const { pooler, clock, prober } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const read = await pooler.acquireFor({ kind: 'read' }, REQUEST);
  assert.equal(pooler.hostIdOf(read), R1);
  pooler.release(read, 'reusable');
  assert.ok(pooler.stats().some((s) => s.key.startsWith(R1)), 'the replica has a pool');
  prober.answers.set(P, down).set(R1, PRIMARY);
  await clock.advanceAsync(1_000);
  assert.equal(read.isClosed, true, 'the idle connection opened while R1 was a replica is closed');
  assert.ok(!pooler.stats().some((s) => s.key.startsWith(R1) && s.idle > 0), 'no idle connection from before the promotion');
  await pooler.close();
});

test('avoid only steers the choice right after a failure: after a health round the only host serves again', async () => {
  const { pooler, clock } = setupPooler([P]);
  await pooler.ready(REQUEST);
  const write = track(pooler.acquireFor({ kind: 'write', avoid: [P] }, REQUEST));
  const took = await runUntilSettled(clock, write, 5_000);
  assert.equal(write.settled, true, 'served within a round, not refused after failoverTimeout');
  assert.equal(write.error, undefined, String(write.error));
  assert.ok(took <= 1_100, `served after ${took} ms (health.interval 1000 ms)`);
  await pooler.close();
});
