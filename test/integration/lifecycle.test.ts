// Sidecar lifecycle through the admin endpoint (issue 7): /readyz is 503 while the upstream
// password is wrong and 200 once the password file is fixed; /startupz, /livez and /config
// (secrets redacted); POST /quitquitquit drains the real CLI and exits 0; on SIGTERM with
// shutdown.acceptGrace, new clients are still accepted (while /readyz says 503) before the drain.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { spawnAmbassador, startTestAmbassador, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { ambassadorNode } from '../support/runtime-node.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

type PgError = Error & { code?: string };

let topology: Topology;
const spawned: SpawnedAmbassador[] = [];
const clients: pg.Client[] = [];

before(async () => {
  topology = await getTopology();
});
after(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => {})));
  await Promise.all(spawned.map((amb) => amb.stop()));
});

function adminPortOf(amb: SpawnedAmbassador): number {
  const match = /"admin":"[^"]*:(\d+)"/.exec(amb.output());
  if (!match) throw new Error(`no admin address in the output: ${amb.output().slice(-2000)}`);
  return Number(match[1]);
}

/** The fields of the line a child ambassador logs once it listens. */
function startLine(amb: SpawnedAmbassador): Record<string, unknown> {
  const line = amb.output().split('\n').find((text) => text.includes('"msg":"pg-ambassador listening"'));
  if (!line) throw new Error(`no start line in the output: ${amb.output().slice(-2000)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

async function connectClient(port: number): Promise<{ client: pg.Client; errors: PgError[] }> {
  const client = new pg.Client(viaAmbassador(port, { connectionTimeoutMillis: 5000 }) as pg.ClientConfig);
  clients.push(client);
  const errors: PgError[] = [];
  client.on('error', (error: PgError) => errors.push(error));
  await client.connect();
  return { client, errors };
}

describe('readiness', () => {
  test('/readyz is 503 while the upstream password is wrong and 200 once it is fixed', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-ready-'));
    const file = path.join(dir, 'password');
    writeFileSync(file, 'not-the-password\n');
    const amb = await startTestAmbassador(topology, {
      upstream: { user: 'app', database: 'app', credentials: { type: 'file', path: file } },
      health: { interval: '500ms' },
    });
    try {
      const url = `http://127.0.0.1:${amb.ambassador.adminAddress.port}`;
      assert.equal((await fetch(`${url}/livez`)).status, 200);
      assert.equal((await fetch(`${url}/startupz`)).status, 200);
      const wrong = await fetch(`${url}/readyz`);
      const body = await wrong.text();
      assert.equal(wrong.status, 503, body);
      assert.match(body, /upstream login failed/);
      assert.ok(!body.includes('not-the-password'));

      writeFileSync(file, `${topology.users.app.password}\n`);
      await eventually(async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined), { timeoutMs: 10_000, what: '/readyz 200' });

      const config = await (await fetch(`${url}/config`)).text();
      assert.match(config, /"upstream"/);
      assert.ok(!config.includes(topology.users.app.password), 'no upstream password in /config');
      assert.ok(!amb.logText().includes(topology.users.app.password), 'no upstream password in the logs');
    } finally {
      await amb.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shutdown through the admin endpoint and SIGTERM', () => {
  test('POST /quitquitquit (then SIGTERM) drains, a transaction finishes, and the process exits 0', { timeout: 60_000 }, async () => {
    const amb = await spawnAmbassador(topology, { shutdown: { timeout: '30s' } });
    spawned.push(amb);
    // The start line says what runs: the release, and the Node it runs on (in CI the image's).
    const started = startLine(amb);
    assert.equal(started.version, (JSON.parse(readFileSync(path.join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string }).version);
    assert.equal(started.node, execFileSync(ambassadorNode(), ['--version'], { encoding: 'utf8' }).trim());
    const { client, errors } = await connectClient(amb.port);
    await client.query('BEGIN');
    await client.query('SELECT 1');
    const res = await fetch(`http://127.0.0.1:${adminPortOf(amb)}/quitquitquit`, { method: 'POST' });
    assert.equal(res.status, 200);
    // Kubernetes follows a preStop /quitquitquit with SIGTERM: the drain goes on (no exit 130).
    amb.process.kill('SIGTERM');
    // The drain has begun: new clients are refused, the one in a transaction may finish it.
    await eventually(
      async () => {
        const probe = new pg.Client(viaAmbassador(amb.port, { connectionTimeoutMillis: 2000 }) as pg.ClientConfig);
        probe.on('error', () => {});
        try {
          await probe.connect();
          return undefined;
        } catch (error) {
          return error as PgError;
        } finally {
          await probe.end().catch(() => {});
        }
      },
      { what: 'new clients refused during the drain' },
    );
    assert.equal((await client.query('SELECT 2 AS two')).rows[0].two, 2);
    await client.query('COMMIT');
    assert.equal(await amb.exited, 0, amb.output().slice(-3000));
    await eventually(async () => errors.find((e) => e.code === '57P01'), { what: 'the client ended with 57P01' });
  });

  test('SIGTERM with shutdown.acceptGrace still accepts new clients (while /readyz is 503), then exits 0', { timeout: 60_000 }, async () => {
    // /readyz logs in to check: the sidecar is told which login to use.
    const amb = await spawnAmbassador(topology, { upstream: { user: 'app', database: 'app' }, shutdown: { timeout: '20s', acceptGrace: '4s' } });
    spawned.push(amb);
    const admin = `http://127.0.0.1:${adminPortOf(amb)}`;
    await eventually(async () => ((await fetch(`${admin}/readyz`)).status === 200 ? true : undefined), { what: '/readyz 200 before the signal' });
    amb.process.kill('SIGTERM');
    await eventually(async () => ((await fetch(`${admin}/readyz`)).status === 503 ? true : undefined), { what: '/readyz 503 after SIGTERM' });
    // Within the grace a new client still gets in and is served.
    const { client } = await connectClient(amb.port);
    assert.equal((await client.query('SELECT 3 AS three')).rows[0].three, 3);
    assert.equal(await amb.exited, 0, amb.output().slice(-3000));
    assert.match(amb.output(), /still accepting clients for shutdown.acceptGrace/);
  });
});
