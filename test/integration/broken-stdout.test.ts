// The real CLI with its stdout reader gone (a log collector died, the parent that spawned it
// exited): logging stops silently, clients are still served, and SIGTERM, SIGINT and
// POST /quitquitquit still shut it down with exit code 0. It used to hang for ever at exit when
// the shutdown's own lines were the first to meet the closed pipe: the exit-time log flush
// retried the failing write every 100 ms.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { spawnAmbassador, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

let topology: Topology;
/** Stopped (SIGKILL if still running) after the tests, so a hung one never outlives a failure. */
const spawned: SpawnedAmbassador[] = [];

before(async () => {
  topology = await getTopology();
});
after(async () => {
  await Promise.all(spawned.map((amb) => amb.stop()));
});

/** At info, a query on an open session logs nothing: the shutdown's lines can be the first to meet the closed pipe. */
async function start(): Promise<SpawnedAmbassador> {
  const amb = await spawnAmbassador(topology, { logging: { level: 'info' } });
  spawned.push(amb);
  return amb;
}

async function connectClient(port: number): Promise<pg.Client> {
  const client = new pg.Client(viaAmbassador(port, { connectionTimeoutMillis: 5000 }) as pg.ClientConfig);
  client.on('error', () => {}); // the shutdown (or the SIGKILL after a failure) ends the session
  await client.connect();
  return client;
}

async function queryOnce(port: number): Promise<void> {
  const client = await connectClient(port);
  assert.deepEqual((await client.query('select 1 as one')).rows, [{ one: 1 }]);
  await client.end();
}

/** The reader goes away: the parent closes its end of the child's stdout pipe. */
function closeStdoutReader(amb: SpawnedAmbassador): void {
  amb.process.stdout!.destroy();
}

function adminPortOf(amb: SpawnedAmbassador): number {
  const match = /"admin":"[^"]*:(\d+)"/.exec(amb.output());
  if (!match) throw new Error(`no admin address in the output: ${amb.output().slice(-2000)}`);
  return Number(match[1]);
}

async function exitCodeWithin(amb: SpawnedAmbassador, timeoutMs: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`ambassador (pid ${amb.pid}) did not exit within ${timeoutMs} ms; stderr and output before the reader left:\n${amb.output().slice(-2000)}`)), timeoutMs);
  });
  try {
    return await Promise.race([amb.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const triggers: Array<[string, (amb: SpawnedAmbassador) => Promise<void>]> = [
  ['SIGTERM', async (amb) => void amb.process.kill('SIGTERM')],
  ['SIGINT', async (amb) => void amb.process.kill('SIGINT')],
  [
    'POST /quitquitquit',
    async (amb) => {
      const res = await fetch(`http://127.0.0.1:${adminPortOf(amb)}/quitquitquit`, { method: 'POST' });
      assert.equal(res.status, 200, await res.text());
    },
  ],
];

for (const [name, trigger] of triggers) {
  test(`${name} with stdout's reader gone and nothing logged since: exits 0`, { timeout: 60_000 }, async () => {
    const amb = await start();
    await queryOnce(amb.port);
    await eventually(async () => (amb.output().includes('"msg":"client disconnected"') ? true : undefined), { what: 'the session\'s last log line' });
    closeStdoutReader(amb);
    await trigger(amb);
    assert.equal(await exitCodeWithin(amb, 15_000), 0);
  });
}

test('SIGTERM with stdout\'s reader gone: a session opened before is served, then the process exits 0', { timeout: 60_000 }, async () => {
  const amb = await start();
  const client = await connectClient(amb.port);
  closeStdoutReader(amb);
  assert.deepEqual((await client.query('select 1 as one')).rows, [{ one: 1 }]);
  amb.process.kill('SIGTERM');
  assert.equal(await exitCodeWithin(amb, 15_000), 0);
});

test('SIGTERM with stdout\'s reader gone: new clients are served, then the process exits 0', { timeout: 60_000 }, async () => {
  const amb = await start();
  closeStdoutReader(amb);
  // Each login logs at info, so the first one meets the closed pipe.
  for (let i = 0; i < 3; i++) await queryOnce(amb.port);
  amb.process.kill('SIGTERM');
  assert.equal(await exitCodeWithin(amb, 15_000), 0);
});
