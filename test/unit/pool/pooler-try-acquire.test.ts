// Pooler.tryAcquireFor, the hot path's synchronous lease: an idle connection on the host that
// acquireFor would choose, or the choice it made (handed on to acquireFor so that round-robin
// moves once per request), or null while paused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import type { Pooler } from '../../../src/pool/pooler.ts';
import { settle } from './pool-fakes.ts';
import { PRIMARY, REPLICA, REQUEST, setupPooler } from './pooler-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const R2 = 'db3:5432';

const write = { kind: 'write' } as const;

/** A Pooler on one primary whose pool (pool.size 2) has both its connections leased. */
async function bothLeased(): Promise<{ pooler: Pooler; first: BackendConnection; second: BackendConnection }> {
  const { pooler, prober } = setupPooler([P]);
  prober.answers.set(P, PRIMARY);
  await pooler.ready(REQUEST);
  const first = await pooler.acquireFor(write, REQUEST);
  const second = await pooler.acquireFor(write, REQUEST);
  return { pooler, first, second };
}

const isConnection = (value: unknown): value is BackendConnection => value !== null && typeof value === 'object' && !('reason' in value);

test('an idle connection is leased synchronously; none idle gives the choice, which acquireFor then uses', async () => {
  const { pooler, prober } = setupPooler([P, R1, R2]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA).set(R2, REPLICA);
  await pooler.ready(REQUEST);
  const leased: BackendConnection[] = [];
  for (let i = 0; i < 4; i++) {
    const now = pooler.tryAcquireFor({ kind: 'read' }, REQUEST);
    assert.ok(now !== null && !isConnection(now), 'every connection is leased: a choice');
    const connection = await pooler.acquireFor({ kind: 'read' }, REQUEST, now);
    assert.equal(pooler.hostIdOf(connection), now.host?.id, 'acquireFor went where tryAcquireFor chose');
    leased.push(connection);
  }
  assert.deepEqual(leased.map((c) => pooler.hostIdOf(c)).sort(), [R1, R1, R2, R2], 'round-robin moved once per request');
  for (const connection of leased) pooler.release(connection, 'reusable');
  const idle = pooler.tryAcquireFor({ kind: 'read' }, REQUEST);
  assert.ok(isConnection(idle), 'now both replicas hold an idle connection');
  pooler.release(idle, 'reusable');
  void pooler.pause(1000);
  assert.equal(pooler.tryAcquireFor({ kind: 'read' }, REQUEST), null, 'paused: no lease and no choice');
  pooler.resume();
  await pooler.close();
  assert.equal(pooler.tryAcquireFor({ kind: 'read' }, REQUEST), null, 'closed');
});

test('waitFor: a connection freed later reaches the callback after the release that freed it; a wait past acquireTimeout fails as acquireFor would', async () => {
  const { pooler, prober, clock } = setupPooler([P]);
  prober.answers.set(P, PRIMARY);
  await pooler.ready(REQUEST);
  const first = await pooler.acquireFor(write, REQUEST);
  const second = await pooler.acquireFor(write, REQUEST);
  const choice = pooler.tryAcquireFor(write, REQUEST);
  assert.ok(choice !== null && !isConnection(choice), 'both connections are leased (pool.size 2)');
  const outcomes: Array<{ err: unknown; connection: BackendConnection | null }> = [];
  const record = (err: unknown, connection: BackendConnection | null): void => {
    outcomes.push({ err, connection });
  };
  pooler.waitFor(write, REQUEST, choice, { leaseSettled: record });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(outcomes.length, 0, 'nothing free: it waits');
  pooler.release(first, 'reusable');
  assert.equal(outcomes.length, 0, 'not called inside release');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(outcomes, [{ err: null, connection: first }]);

  const busy = pooler.tryAcquireFor(write, REQUEST);
  assert.ok(busy !== null && !isConnection(busy), 'still both leased');
  pooler.waitFor(write, REQUEST, busy, { leaseSettled: record });
  await clock.advanceAsync(5000);
  assert.equal(outcomes.length, 2);
  assert.equal(outcomes[1]!.connection, null);
  assert.equal((outcomes[1]!.err as unknown as { code?: string } | null)?.code, 'POOL_TIMEOUT', 'a healthy host that is only busy: the timeout itself');
  pooler.release(first, 'reusable');
  pooler.release(second, 'reusable');
  await pooler.close();
});

test('waitFor: connections freed in one task reach their waiters in turn, in the check phase after the releases; one a waiter releases at once goes on to the next', async () => {
  const { pooler, first, second } = await bothLeased();
  const told: string[] = [];
  const waiter = (name: string, releaseAtOnce = false) => ({
    leaseSettled(err: unknown, connection: BackendConnection | null): void {
      told.push(`${name}:${connection === first ? 'first' : connection === second ? 'second' : String(err)}`);
      if (releaseAtOnce && connection !== null) pooler.release(connection, 'reusable');
    },
  });
  for (const [name, releaseAtOnce] of [['a', true], ['b', false], ['c', false]] as const) {
    const choice = pooler.tryAcquireFor(write, REQUEST);
    assert.ok(choice !== null && !isConnection(choice), `${name}: both connections are leased (pool.size 2)`);
    pooler.waitFor(write, REQUEST, choice, waiter(name, releaseAtOnce));
  }
  await new Promise((resolve) => setImmediate(resolve));
  pooler.release(first, 'reusable');
  pooler.release(second, 'reusable');
  assert.deepEqual(told, [], 'no waiter is told inside a release');
  // Nor in the microtasks behind it: the rest of the loop iteration's reads go first.
  for (let i = 0; i < 3; i++) await Promise.resolve();
  assert.deepEqual(told, [], 'no waiter is told before the check phase');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(told, ['a:first', 'b:second', 'c:first'], 'in the order they waited; a gave its connection back, and c got it');
  pooler.release(first, 'reusable');
  pooler.release(second, 'reusable');
  await pooler.close();
});

test('waitFor: a waiter that throws when told keeps no other waiter from being told', async () => {
  const { pooler, first, second } = await bothLeased();
  const told: string[] = [];
  for (const name of ['a', 'b']) {
    const choice = pooler.tryAcquireFor(write, REQUEST);
    assert.ok(choice !== null && !isConnection(choice), `${name}: both connections are leased (pool.size 2)`);
    pooler.waitFor(write, REQUEST, choice, {
      leaseSettled(_err: unknown, connection: BackendConnection | null): void {
        told.push(`${name}:${connection === first ? 'first' : 'second'}`);
        if (name === 'a') throw new Error('waiter a failed');
      },
    });
  }
  // The throw surfaces as an uncaught exception (in a setImmediate callback), caught here instead of by the runner.
  const thrown: unknown[] = [];
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', (err) => thrown.push(err));
  try {
    pooler.release(first, 'reusable');
    pooler.release(second, 'reusable');
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.removeAllListeners('uncaughtException');
    for (const listener of listeners) process.on('uncaughtException', listener);
  }
  assert.deepEqual(told, ['a:first', 'b:second'], 'b was told after a threw');
  assert.deepEqual(
    thrown.map((err) => (err as Error).message),
    ['waiter a failed'],
  );
  pooler.release(first, 'reusable');
  pooler.release(second, 'reusable');
  await pooler.close();
});

test('after a host\'s pool is drained, the next idle connection of its new pool is leased synchronously again', async () => {
  const answers = [['10.0.0.1'], ['10.0.0.2']];
  const { pooler, clock } = setupPooler(['db.example:5432'], { resolve: async () => (answers.length > 1 ? answers.shift()! : answers[0]!) });
  pooler.startHealth();
  await settle();
  const first = await pooler.acquire(REQUEST);
  pooler.release(first, 'reusable');
  const again = pooler.tryAcquireFor(write, REQUEST);
  assert.equal(again, first, 'the idle connection, leased at once (the client now knows this pool)');
  pooler.release(first, 'reusable');
  await clock.advanceAsync(1_000); // the name resolves elsewhere: the host's pool is drained
  assert.equal(first.isClosed, true);
  const second = await pooler.acquire(REQUEST);
  pooler.release(second, 'reusable');
  const now = pooler.tryAcquireFor(write, REQUEST);
  assert.equal(now, second, 'leased from the new pool, not refused by the drained one the client used before');
  pooler.release(second, 'reusable');
  await pooler.close();
});

test('a connection released while a cancel for it is on its way goes to no one until that cancel has landed', async () => {
  const { pooler, first, second } = await bothLeased();
  let landed!: () => void;
  first.cancelling = new Promise<void>((resolve) => (landed = resolve));
  const summary = (): [number, number] => {
    const [pool] = pooler.poolSummaries();
    return [pool!.cancelling, pool!.beingCanceled];
  };
  assert.deepEqual(summary(), [1, 0], 'a cancel on its way to a leased connection (sv_active_cancel)');
  pooler.release(first, 'reusable');
  await settle();
  assert.deepEqual(summary(), [1, 1], 'released, and held back for the cancel (sv_being_canceled)');
  const now = pooler.tryAcquireFor(write, REQUEST);
  assert.ok(now !== null && !isConnection(now), 'still out of the pool: a choice, no idle connection');
  const waiting = pooler.acquireFor(write, REQUEST, now);
  let got: BackendConnection | null = null;
  void waiting.then((connection) => (got = connection));
  await settle();
  assert.equal(got, null, 'the waiter does not get it yet');
  first.cancelling = null;
  landed();
  await settle();
  assert.equal(got, first, 'once the cancel has landed, the waiter gets it');
  assert.deepEqual(summary(), [0, 0]);
  pooler.release(first, 'reusable');
  pooler.release(second, 'reusable');
  await pooler.close();
});
