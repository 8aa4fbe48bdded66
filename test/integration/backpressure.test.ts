// Backpressure from a slow client: a ~500 MB result read in short bursts must not pile up in
// the ambassador. The forwarder pauses the server socket when the client's write buffer is full,
// so the ambassador's RSS stays bounded while Postgres and the kernel buffers absorb the wait.
// The ambassador runs as a child process (the real CLI) so its RSS can be sampled from /proc.

import assert from 'node:assert/strict';
import pg from 'pg';
import { after, before, test } from 'node:test';
import type net from 'node:net';
import { Framer, typeSet } from '../../src/protocol/framer.ts';
import { encodeQuery } from '../../src/protocol/frontend.ts';
import { spawnAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { loginTrust } from '../support/raw-client.ts';
import { getTopology, type Topology } from '../support/topology.ts';

const MB = 1024 * 1024;
const ROWS = 500;
const SQL = `select repeat('x', ${MB}) from generate_series(1, ${ROWS})`;
/** The ambassador's whole RSS while a slow client reads the result (the bound). */
const RSS_LIMIT = 100 * MB;
/** What the slow transfer may add to the ambassador's RSS. */
const RSS_GROWTH_LIMIT = 50 * MB;

let topology: Topology;
let child: SpawnedAmbassador;

before(async () => {
  topology = await getTopology();
  child = await spawnAmbassador(topology, { clientAuth: { method: 'trust', users: [] }, logging: { level: 'info' } });
});
after(async () => {
  await child?.stop();
});

interface Pace {
  /** Bytes read per burst. */
  burstBytes: number;
  /** Time between bursts. */
  intervalMs: number;
}

interface Transfer {
  dataRows: number;
  commandTag: string;
  errors: string[];
  bytes: number;
  durationMs: number;
}

/**
 * Streams the reply to `sql` through a Framer that inspects only C, E and Z (DataRows are
 * counted, never buffered). With a pace, the socket is paused and resumed for one burst of
 * `burstBytes` every `intervalMs`; without one it is read at full speed.
 */
function streamQuery(socket: net.Socket, leftover: Buffer[], sql: string, pace: Pace | null): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    const framer = new Framer(0x7fffffff, typeSet('CEZ'));
    const transfer: Transfer = { dataRows: 0, commandTag: '', errors: [], bytes: 0, durationMs: 0 };
    const started = Date.now();
    let burst = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error?: Error): void => {
      clearInterval(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      transfer.durationMs = Date.now() - started;
      if (error) reject(error);
      else resolve(transfer);
    };
    let done = false;
    const onMessage = (type: number, payload: Buffer | null): void => {
      if (type === 0x44) transfer.dataRows++;
      else if (type === 0x43) transfer.commandTag = payload!.toString('utf8', 0, payload!.length - 1);
      else if (type === 0x45) transfer.errors.push(payload!.toString('latin1'));
      else if (type === 0x5a) done = true;
    };
    const onData = (chunk: Buffer): void => {
      transfer.bytes += chunk.length;
      try {
        framer.push(chunk, onMessage);
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (done) return finish();
      burst += chunk.length;
      if (pace && burst >= pace.burstBytes) socket.pause();
    };
    const onClose = (): void => finish(new Error(`connection closed after ${transfer.bytes} bytes, ${transfer.dataRows} rows`));
    socket.on('data', onData);
    socket.on('close', onClose);
    for (const chunk of leftover) onData(chunk);
    socket.write(encodeQuery(sql));
    if (pace) {
      timer = setInterval(() => {
        burst = 0;
        socket.resume();
      }, pace.intervalMs);
    } else {
      socket.resume();
    }
  });
}

function assertAllRows(transfer: Transfer): void {
  assert.deepEqual(transfer.errors, [], 'the query failed');
  assert.equal(transfer.dataRows, ROWS, 'DataRow messages received');
  assert.equal(transfer.commandTag, `SELECT ${ROWS}`);
  assert.ok(transfer.bytes > ROWS * MB, `received ${transfer.bytes} bytes`);
}

/**
 * Runs `body` while sampling, every 100 ms, the ambassador's RSS and what the primary's backend
 * for this query waits on. 'ClientWrite' means Postgres could not send because the ambassador
 * stopped reading from it: backpressure reached the server, whatever the machine's speed.
 */
async function sampleWhile<T>(body: () => Promise<T>): Promise<{ value: T; maxRss: number; waits: Set<string> }> {
  let maxRss = child.rss();
  const waits = new Set<string>();
  const observer = new pg.Client({ host: '127.0.0.1', port: topology.primary.port, user: 'app', password: topology.users.app.password, database: 'app' });
  await observer.connect();
  let sampling = Promise.resolve();
  const sampler = setInterval(() => {
    maxRss = Math.max(maxRss, child.rss());
    sampling = sampling
      .then(() => observer.query(`select wait_event from pg_stat_activity where query = $1 and state = 'active'`, [SQL]))
      .then((r) => r.rows.forEach((row: { wait_event: string | null }) => waits.add(row.wait_event ?? 'none')))
      .catch(() => {});
  }, 100);
  try {
    const value = await body();
    return { value, maxRss: Math.max(maxRss, child.rss()), waits };
  } finally {
    clearInterval(sampler);
    await sampling;
    await observer.end();
  }
}

const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;

test('a slow reader of a 500 MB result gets every row and the ambassador does not buffer it', async () => {
  // The slow transfer runs first, so its RSS is not inflated by garbage left by the fast one.
  const client = await loginTrust(child.port, 'app');
  const baseline = child.rss();
  // ~1 MB every 10 ms: about 100 MB/s at most, several times slower than full speed here.
  const slow = await sampleWhile(() => streamQuery(client.socket, client.detach(), SQL, { burstBytes: MB, intervalMs: 10 }));
  client.destroy();
  assertAllRows(slow.value);

  const fastClient = await loginTrust(child.port, 'app');
  const fast = await sampleWhile(() => streamQuery(fastClient.socket, fastClient.detach(), SQL, null));
  fastClient.destroy();
  assertAllRows(fast.value);

  const growth = slow.maxRss - baseline;
  console.log(
    `[backpressure] ${(slow.value.bytes / MB).toFixed(0)} MB result: slow reader ${slow.value.durationMs} ms, full speed ${fast.value.durationMs} ms; ` +
      `ambassador RSS before ${mb(baseline)}, max during slow read ${mb(slow.maxRss)} (growth ${mb(growth)}), ` +
      `max during full-speed read ${mb(fast.maxRss)}; server waits seen during the slow read: ${[...slow.waits].join(', ')}`,
  );
  assert.ok(slow.waits.has('ClientWrite'), `the server never waited on the ambassador (saw: ${[...slow.waits].join(', ')})`);
  // The child runs the production build (plain node, dist/), as users do: its RSS must stay
  // under 100 MB throughout, and what the transfer adds stays far below the result's size.
  assert.ok(slow.maxRss < RSS_LIMIT, `ambassador RSS reached ${mb(slow.maxRss)} while a slow client read 500 MB (limit ${mb(RSS_LIMIT)})`);
  assert.ok(growth < RSS_GROWTH_LIMIT, `ambassador RSS grew by ${mb(growth)} while a slow client read 500 MB (limit ${mb(RSS_GROWTH_LIMIT)})`);
});
