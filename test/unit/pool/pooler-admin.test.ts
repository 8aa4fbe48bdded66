// What the admin endpoints read from the Pooler, over fake connects and probes on a FakeClock:
// servers() (SHOW SERVERS), poolSummaries() (SHOW POOLS, metrics), lastLogin after successful
// and failed logins, and checkLogin (/readyz): one shared attempt, its errors, its time limit.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import type { UpstreamTarget } from '../../../src/backend/connector.ts';
import { settle, track } from './pool-fakes.ts';
import { loginError, PRIMARY, REPLICA, REQUEST, setupPooler, type Upstream } from './pooler-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const down = new Error('connect ECONNREFUSED');

/** A connect seam over `upstream` whose connections have a backend pid and a local address. */
function identified(upstream: () => Upstream) {
  let pid = 100;
  return async (target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number): Promise<BackendConnection> => {
    const connection = await upstream().connect(target, login, timeoutMs);
    pid += 1;
    Object.assign(connection, { processId: pid, tlsSocket: pid % 2 === 0 ? {} : null });
    Object.assign(connection.socket, { localAddress: '10.9.0.1', localPort: 40_000 + pid });
    return connection;
  };
}

test('servers() lists every server connection with its host, role, login, state, times, pid, local address and TLS', async () => {
  const { pooler, clock, prober, upstream } = setupPooler([P, R1], { connect: identified(() => upstream) });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  clock.advance(1_000);
  const write = await pooler.acquire(REQUEST);
  clock.advance(1_000);
  const read = await pooler.acquireFor({ kind: 'read' }, { ...REQUEST, user: 'reader' });
  clock.advance(500);
  pooler.release(read, 'reusable');
  assert.deepEqual(pooler.servers(), [
    { host: P, role: 'primary', database: 'appdb', user: 'app', state: 'active', connectedAt: 1_000, lastUsedAt: 1_000, processId: 101, localAddress: '10.9.0.1', localPort: 40_101, tls: false },
    { host: R1, role: 'replica', database: 'appdb', user: 'reader', state: 'idle', connectedAt: 2_000, lastUsedAt: 2_500, processId: 102, localAddress: '10.9.0.1', localPort: 40_102, tls: true },
  ]);
  pooler.release(write, 'reusable');
  await pooler.close();
});

test('poolSummaries() has one row per pool with its counts and longest wait; a drained pool with a lease is marked draining', async () => {
  const { pooler, clock, prober } = setupPooler([P, R1], {
    pool: { size: 1, minIdle: 0, idleTimeoutMs: 0, maxLifetimeMs: 0, acquireTimeoutMs: 60_000, retry: { max: 1, initialDelayMs: 50, maxDelayMs: 200 } },
  });
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const held = await pooler.acquire(REQUEST);
  const waiting = track(pooler.acquire(REQUEST));
  await settle();
  clock.advance(300);
  pooler.release(await pooler.acquireFor({ kind: 'read' }, REQUEST), 'reusable');
  assert.deepEqual(pooler.poolSummaries(), [
    { host: P, role: 'primary', database: 'appdb', user: 'app', size: 1, idle: 0, active: 1, connecting: 0, waiting: 1, maxWaitMs: 300, cancelling: 0, beingCanceled: 0, draining: false },
    { host: R1, role: 'replica', database: 'appdb', user: 'app', size: 1, idle: 1, active: 0, connecting: 0, waiting: 0, maxWaitMs: 0, cancelling: 0, beingCanceled: 0, draining: false },
  ]);

  prober.answers.set(P, down).set(R1, PRIMARY); // the primary is lost, R1 promoted: P's pool is drained
  await clock.advanceAsync(1_000);
  await clock.advanceAsync(1_000);
  await settle();
  assert.ok(waiting.value, String(waiting.error));
  const rows = pooler.poolSummaries().map((row) => [row.host, row.active, row.draining]);
  assert.deepEqual(rows, [[R1, 1, false], [P, 1, true]], 'the drained pool still holds the lease');
  pooler.release(held, 'reusable');
  assert.deepEqual(pooler.poolSummaries().map((row) => row.host), [R1]);
  await pooler.close();
});

test('lastLogin: a success sets okAt, a failure sets the error and keeps okAt, a later success clears the error', async () => {
  const { pooler, clock, upstream } = setupPooler([P]);
  assert.deepEqual(pooler.lastLogin, { okAt: null, error: null, errorAt: null });
  clock.advance(1_000);
  await pooler.acquireOn(pooler.hosts[0]!, REQUEST);
  assert.deepEqual(pooler.lastLogin, { okAt: 1_000, error: null, errorAt: null });
  clock.advance(1_000);
  upstream.refuse(P, loginError('28P01', 'password authentication failed for user "other"'));
  await assert.rejects(pooler.acquireOn(pooler.hosts[0]!, { ...REQUEST, user: 'other' }));
  assert.deepEqual(pooler.lastLogin, { okAt: 1_000, error: 'upstream authentication to db:5432 failed: password authentication failed for user "other"', errorAt: 2_000 });
  upstream.accept(P);
  clock.advance(1_000);
  await pooler.checkLogin(500);
  assert.deepEqual(pooler.lastLogin, { okAt: 3_000, error: null, errorAt: null }, 'checkLogin is a login too');
  await pooler.close();
});

test('checkLogin: concurrent callers share one login to the primary, whose connection is closed', async () => {
  const { pooler, prober, upstream } = setupPooler([P, R1]);
  prober.answers.set(P, PRIMARY).set(R1, REPLICA);
  await pooler.ready(REQUEST);
  const checks = [pooler.checkLogin(1_000), pooler.checkLogin(1_000)];
  await Promise.all(checks);
  assert.equal(upstream.attempts.length, 1);
  assert.equal(upstream.attempts[0]!.id, P);
  assert.equal(upstream.opened[0]!.isClosed, true);
  await pooler.checkLogin(1_000);
  assert.equal(upstream.attempts.length, 2, 'a later call logs in again');
  await pooler.close();
});

test('checkLogin rejects with the login error\'s message, and updates lastLogin', async () => {
  const { pooler, upstream } = setupPooler([P]);
  upstream.refuse(P, loginError('28P01', 'password authentication failed for user "app"'));
  const shared = [track(pooler.checkLogin(1_000)), track(pooler.checkLogin(1_000))];
  await settle();
  for (const check of shared) {
    assert.ok(check.error instanceof Error);
    assert.equal(check.error.message, 'upstream authentication to db:5432 failed: password authentication failed for user "app"');
  }
  assert.equal(upstream.attempts.length, 1);
  assert.match(pooler.lastLogin.error ?? '', /password authentication failed/);
  await pooler.close();
});

test('checkLogin with no primary known, or no login known yet, rejects saying so', async () => {
  const noPrimary = setupPooler([P, R1]);
  noPrimary.prober.answers.set(P, REPLICA).set(R1, REPLICA);
  await noPrimary.pooler.ready(REQUEST);
  await assert.rejects(noPrimary.pooler.checkLogin(1_000), /^Error: no primary known$/);
  assert.equal(noPrimary.upstream.attempts.length, 0);
  await noPrimary.pooler.close();

  const noLogin = setupPooler([P], { probeLogin: {} });
  await assert.rejects(noLogin.pooler.checkLogin(1_000), /no login is known yet.*set upstream\.user and upstream\.database/);
  await noLogin.pooler.ready(REQUEST); // a client's login is borrowed, as the probes do
  await noLogin.pooler.checkLogin(1_000);
  await noLogin.pooler.close();
});

test('checkLogin gives up after its time limit; a login finishing later is closed', async () => {
  let land: (connection: BackendConnection) => void = () => {};
  const { pooler, clock, upstream } = setupPooler([P], {
    connect: (target, login, timeoutMs) =>
      new Promise((resolve) => {
        land = resolve;
        void upstream.connect(target, login, timeoutMs);
      }),
  });
  const check = track(pooler.checkLogin(500));
  await clock.advanceAsync(500);
  assert.ok(check.error instanceof Error);
  assert.match(check.error.message, /login to db1:5432 did not finish within 500 ms/);
  assert.equal(pooler.lastLogin.errorAt, 500);
  land(upstream.opened[0]!);
  await settle();
  assert.equal(upstream.opened[0]!.isClosed, true);
  await pooler.close();
});
