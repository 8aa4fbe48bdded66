// Rotating the upstream password on a real server under continuous load: a new client connection
// every 100 ms plus a long-lived client querying, with server connections retired every few
// hundred milliseconds so new upstream logins keep happening throughout. Each provider is
// rotated in both orders ops use:
// - ALTER ROLE first, the secret source after (logins in between are rejected, wait for the new
//   secret, and succeed);
// - the source first, ALTER ROLE after (the new secret is refused until then: logins fall back
//   to the one it replaced).
// No client connection or query may fail. Then secrets that expire every 3 s: refreshed before
// each expiry, and a failing refresh keeps the last good secret.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { onReloadSignal } from '../../src/main.ts';
import { ambassadorsFor, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { superuserConfig } from '../support/pooling.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

let topology: Topology;
let admin: pg.Client;
const ambassadors = ambassadorsFor(() => topology);
const dir = mkdtempSync(path.join(os.tmpdir(), 'pa-rotation-'));
const roles: string[] = [];

before(async () => {
  topology = await getTopology();
  admin = new pg.Client(superuserConfig(topology));
  admin.on('error', () => {}); // the cluster may stop before this file's after() closes it
  await admin.connect();
});

after(async () => {
  await ambassadors.stopAll();
  for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
  await admin?.end().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

const newPassword = (): string => `pw-${randomBytes(12).toString('hex')}`;

async function createRole(name: string, password: string): Promise<void> {
  roles.push(name);
  await admin.query(`DROP ROLE IF EXISTS ${name}`);
  await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`);
}

const alterPassword = (role: string, password: string) => admin.query(`ALTER ROLE ${role} PASSWORD '${password}'`);

/** Rewrites a file the way a careful writer does: a temp file renamed over it. */
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** Server connections live a few hundred ms, so new upstream logins happen all through a rotation. */
function rotationConfig(role: string, credentials: Record<string, unknown>): Record<string, unknown> {
  return { upstream: { user: role, credentials }, pool: { size: 4, maxLifetime: '300ms' }, logging: { level: 'info' } };
}

interface Load {
  /** Waits until `n` more connections have been started (not finished: a rotation may hold them up). */
  more(n: number): Promise<void>;
  stop(): Promise<{ connections: number; queries: number; failures: string[] }>;
}

/** A new client connection every 100 ms (one query each), and one client querying all along. */
async function startLoad(port: number): Promise<Load> {
  const failures: string[] = [];
  let started = 0;
  let connections = 0;
  let queries = 0;
  let running = true;
  const waiters: Array<{ at: number; resolve: () => void }> = [];
  const tick = (): void => {
    started++;
    for (const waiter of waiters.filter((w) => started >= w.at)) waiter.resolve();
  };
  const steady = new pg.Client(viaAmbassador(port) as pg.ClientConfig);
  await steady.connect();
  const steadyLoop = (async () => {
    while (running) {
      try {
        const { rows } = await steady.query('SELECT current_user AS who');
        assert.ok(rows[0].who);
        queries++;
      } catch (err) {
        failures.push(`steady client: ${(err as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const churns: Array<Promise<void>> = [];
  const ticker = setInterval(() => {
    tick();
    churns.push(
      (async () => {
        const client = new pg.Client(viaAmbassador(port, { connectionTimeoutMillis: 15_000 }) as pg.ClientConfig);
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('SELECT 1');
          queries++;
        } catch (err) {
          failures.push(`new connection: ${(err as Error).message}`);
        } finally {
          await client.end().catch(() => {});
          connections++;
        }
      })(),
    );
  }, 100);
  return {
    more: (n) => new Promise((resolve) => waiters.push({ at: started + n, resolve })),
    async stop() {
      running = false;
      clearInterval(ticker);
      await Promise.all([steadyLoop, ...churns]);
      await steady.end().catch(() => {});
      return { connections, queries, failures };
    },
  };
}

/** Waits for three upstream logins after `before`: the rotation was really exercised by new logins. */
async function loginsSince(amb: TestAmbassador, before: number, what: string): Promise<void> {
  await eventually(async () => (amb.upstreamConnects() - before >= 3 ? true : undefined), { what: `three upstream logins after ${what}` });
}

/**
 * Both orders of a rotation under load; `swapSource` makes the provider's source say `password`.
 * Returns the ambassador so the caller can check how the rotation went.
 */
async function rotateBothWays(
  role: string,
  credentials: Record<string, unknown>,
  swapSource: (password: string, amb: TestAmbassador) => Promise<void> | void,
  first: string,
): Promise<TestAmbassador> {
  const passwords = [first];
  const amb = await ambassadors.start(rotationConfig(role, credentials));
  const load = await startLoad(amb.port);
  try {
    await load.more(5);
    // ALTER ROLE first: logins in between are rejected until the source catches up.
    const second = newPassword();
    passwords.push(second);
    const connectsBefore = amb.upstreamConnects();
    await alterPassword(role, second);
    await load.more(3);
    await swapSource(second, amb);
    await load.more(5);
    await loginsSince(amb, connectsBefore, 'the first rotation');
    // The source first: the new secret is refused until ALTER ROLE, the old one still works.
    const third = newPassword();
    passwords.push(third);
    await swapSource(third, amb);
    await load.more(3);
    const connectsBetween = amb.upstreamConnects();
    await alterPassword(role, third);
    await load.more(5);
    await loginsSince(amb, connectsBetween, 'the second rotation');
  } finally {
    const result = await load.stop();
    if (result.failures.length > 0) {
      const events = amb.logs().filter((line) => typeof line.event === 'string' || /rotat|reload/.test(String(line.msg)));
      console.error(events.map((line) => `${String(line.time)} ${String(line.event ?? '')} ${String(line.msg)} ${String(line.reason ?? line.retry ?? '')}`).join('\n'));
    }
    assert.deepEqual(result.failures, [], 'no client connection or query failed');
    assert.ok(result.connections >= 21 && result.queries > result.connections, `load ran: ${JSON.stringify({ ...result, failures: result.failures.length })}`);
  }
  const logText = amb.logText();
  for (const secret of passwords) assert.ok(!logText.includes(secret), 'no password in the logs');
  return amb;
}

test('file provider: ALTER ROLE and rewriting the file, in either order, under load: nothing fails', async () => {
  const role = 'pa_rot_file';
  const first = newPassword();
  await createRole(role, first);
  const file = path.join(dir, 'file-password');
  writeFileSync(file, `${first}\n`);
  const amb = await rotateBothWays(role, { type: 'file', path: file }, (password) => replaceFile(file, `${password}\n`), first);
  const counts = amb.ambassador.rotationCounters();
  assert.ok(counts.count('refresh:file:ok') >= 3, `first use plus two file changes: ${JSON.stringify(counts.snapshot())}`);
  // Which retry a rejected login took depends on timing (the unit tests pin each path); that
  // rejected logins happened and none went without a retry is what matters here.
  const retried = counts.count('rejected:file:fresh') + counts.count('rejected:file:previous') + counts.count('rejected:file:changed');
  assert.ok(retried >= 1 && counts.count('rejected:file:none') === 0, `rejected logins were retried: ${JSON.stringify(counts.snapshot())}`);
});

test('exec provider: the command prints the new password after ALTER ROLE, or before it: nothing fails', async () => {
  const role = 'pa_rot_exec';
  const first = newPassword();
  await createRole(role, first);
  const file = path.join(dir, 'vault-entry');
  writeFileSync(file, first);
  const amb = await rotateBothWays(role, { type: 'exec', command: ['cat', file], timeout: '2s' }, (password) => replaceFile(file, password), first);
  const counts = amb.ambassador.rotationCounters();
  // The command is not watched: every change was found because the server rejected the old password.
  assert.ok(counts.count('rejected:exec:fresh') + counts.count('rejected:exec:changed') >= 1, JSON.stringify(counts.snapshot()));
});

test('env provider: the variable changed, then SIGHUP (or POST /reload), in either order: nothing fails', async () => {
  const role = 'pa_rot_env';
  const variable = 'PA_ROTATION_TEST_PASSWORD';
  const first = newPassword();
  await createRole(role, first);
  process.env[variable] = first;
  let stopListening: () => void = () => {};
  let swaps = 0;
  try {
    const amb = await rotateBothWays(
      role,
      { type: 'env', variable },
      async (password, current) => {
        process.env[variable] = password;
        if (++swaps === 1) {
          stopListening = onReloadSignal(current.ambassador);
          const reloads = current.logs().filter((line) => line.msg === 'reload finished').length;
          process.kill(process.pid, 'SIGHUP');
          await eventually(async () => (current.logs().filter((line) => line.msg === 'reload finished').length > reloads ? true : undefined), {
            what: 'the SIGHUP reload',
          });
        } else {
          const { port } = current.ambassador.adminAddress;
          const res = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST' });
          assert.equal(res.status, 200);
          assert.deepEqual(((await res.json()) as { credentials: unknown }).credentials, { refreshed: 1, failed: 0 });
        }
      },
      first,
    );
    // Each reload re-read the variable. In the second order (variable first, ALTER ROLE after) the
    // old password still works, so nothing but the reload can have brought the new one in; in the
    // first, a rejected login's poll may find it a moment before the SIGHUP does.
    const reloads = amb.logs().filter((line) => line.event === 'credential-refreshed' && line.reason === 'reload');
    assert.equal(reloads.length, 2, 'one fetch per reload');
    assert.equal(reloads[1]!.changed, true, 'POST /reload brought the new password');
  } finally {
    stopListening();
    delete process.env[variable];
  }
});

test('secrets that expire every 3 s are refreshed before each expiry; a failing refresh keeps the last good one', async () => {
  const role = 'pa_rot_expiring';
  const password = newPassword();
  await createRole(role, password);
  const file = path.join(dir, 'expiring');
  const failFlag = path.join(dir, 'fail-refresh');
  writeFileSync(file, password);
  // Prints {"password": ..., "expiresAt": <now + 3 s, in seconds with milliseconds>}, or fails when the flag file exists.
  const command = `[ -e '${failFlag}' ] && { echo 'token service unavailable' >&2; exit 1; }; ms=$(( $(date +%s%3N) + 3000 )); printf '{"password":"%s","expiresAt":%d.%03d}' "$(cat '${file}')" $(( ms / 1000 )) $(( ms % 1000 ))`;
  // Debug level: a refresh that brings the same password (with a later expiry) is a debug line.
  const amb = await ambassadors.start({ ...rotationConfig(role, { type: 'exec', command, timeout: '2s' }), logging: { level: 'debug' } });
  const client = new pg.Client(viaAmbassador(amb.port) as pg.ClientConfig);
  await client.connect();
  try {
    const refreshes = () => amb.logs().filter((line) => line.event === 'credential-refreshed' || line.event === 'credential-refresh-failed');
    const done = await eventually(async () => (refreshes().length >= 4 ? refreshes() : undefined), { timeoutMs: 20_000, what: 'four fetches' });
    for (let i = 1; i < done.length; i++) {
      const previousExpiry = Date.parse(String(done[i - 1]!.expiresAt));
      const at = Number(done[i]!.time);
      assert.equal(done[i]!.event, 'credential-refreshed');
      assert.equal(done[i]!.reason, 'ahead-of-expiry');
      assert.ok(at < previousExpiry, `refresh ${i} at ${at} came before the previous secret expired at ${previousExpiry}`);
      assert.ok(previousExpiry - at <= 1500, `refresh ${i} ran near 80% of the lifetime (${previousExpiry - at} ms before expiry)`);
    }

    writeFileSync(failFlag, '');
    const failed = await eventually(async () => amb.logs().find((line) => line.event === 'credential-refresh-failed'), { timeoutMs: 10_000, what: 'a failed refresh' });
    assert.match(String(failed.err), /exited with status 1: token service unavailable/);
    const [entry] = amb.ambassador.credentials();
    assert.ok(entry && entry.consecutiveFailures >= 1 && entry.expiresAt, 'the entry still holds its secret');
    assert.ok(entry.expiresAt.getTime() > Number(failed.time), 'the kept secret was still valid when the refresh failed');
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1, 'an established connection keeps working');

    rmSync(failFlag);
    const recovered = await eventually(
      async () => amb.logs().find((line) => line.event === 'credential-refreshed' && Number(line.time) > Number(failed.time)),
      { timeoutMs: 10_000, what: 'a refresh after the failure' },
    );
    assert.ok(recovered.reason === 'retry' || recovered.reason === 'expired', `recovered by ${String(recovered.reason)}`);
    const fresh = new pg.Client(viaAmbassador(amb.port) as pg.ClientConfig);
    await fresh.connect();
    assert.equal((await fresh.query('SELECT current_user AS who')).rows[0].who, role);
    await fresh.end();
    assert.ok(!amb.logText().includes(password), 'no password in the logs');
  } finally {
    rmSync(failFlag, { force: true });
    await client.end().catch(() => {});
  }
});

test('health probes log in with the same credentials: a primary and a replica found with the file password, before any client', async () => {
  const role = 'pa_rot_probe';
  const password = newPassword();
  await createRole(role, password);
  const file = path.join(dir, 'probe-password');
  writeFileSync(file, password);
  const hosts = [topology.primary, topology.replicas[0]!].map((server) => ({ host: server.host, port: server.port, role: 'auto' }));
  const amb = await ambassadors.start({
    upstream: { hosts, user: role, database: 'postgres', credentials: { type: 'file', path: file } },
    health: { interval: '300ms' },
  });
  // Only probes have logged in so far: roles discovered means they used the file's password.
  const found = await eventually(
    async () => {
      const roles = amb.ambassador.hosts().map((host) => `${host.port}:${host.role}:${host.failures}`);
      const want = [`${topology.primary.port}:primary:0`, `${topology.replicas[0]!.port}:replica:0`];
      return roles.length === 2 && want.every((entry) => roles.includes(entry)) ? roles : undefined;
    },
    { what: 'both roles found by probes' },
  );
  assert.equal(found.length, 2);
  const logins = amb.ambassador.credentials().map((entry) => entry.login).sort();
  assert.deepEqual(logins, [`${role}@${topology.primary.host}:${topology.primary.port}`, `${role}@${topology.replicas[0]!.host}:${topology.replicas[0]!.port}`].sort());
  assert.ok(amb.ambassador.credentials().every((entry) => entry.consecutiveFailures === 0));
});
