// node-pool, the bench's floor of a pooler on Node: clients share the pool's server connections
// request by request, each answer reaches the client that asked, a transaction block keeps its
// server until it ends, and a server left inside one by a client that went is replaced.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { NodePool } from '../../../bench/node-pool.ts';
import { encodeCommandComplete, encodeReadyForQuery } from '../../../src/protocol/backend.ts';
import { encodeQuery } from '../../../src/protocol/frontend.ts';
import { FakeUpstream, type FakeConnection } from '../../support/fake-upstream.ts';
import { RawClient, startupPacket } from '../../support/raw-client.ts';

const PASSWORD = 'upstream-secret';
/** A test whose awaited close or answer never comes fails here instead of hanging. */
const BOUNDED = { timeout: 10_000 };

/**
 * A server that logs the pool in with SCRAM, then answers each Query with CommandComplete naming
 * its SQL and the transaction status the SQL implies (BEGIN opens a block, COMMIT closes it).
 */
async function serve(connection: FakeConnection): Promise<void> {
  if (!(await connection.loginScram(PASSWORD))) return;
  connection.ready();
  let status: 'I' | 'T' = 'I';
  for (let sql = await connection.nextQuery(60_000); sql !== null; sql = await connection.nextQuery(60_000)) {
    if (/^begin/i.test(sql)) status = 'T';
    else if (/^commit/i.test(sql)) status = 'I';
    connection.send(encodeCommandComplete(sql), encodeReadyForQuery(status));
  }
}

async function startPool(t: TestContext, size: number): Promise<{ upstream: FakeUpstream; port: number }> {
  const upstream = await FakeUpstream.start({ scriptFor: () => serve });
  const pool = new NodePool({ host: upstream.host, port: upstream.port, user: 'app', password: PASSWORD, database: 'bench' }, size);
  t.after(async () => {
    pool.close();
    await upstream.close();
  });
  const { port } = await pool.start();
  return { upstream, port };
}

/** A client logged in through the pool (no password asked), idle after ReadyForQuery. */
async function login(t: TestContext, port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  t.after(() => client.destroy());
  client.write(startupPacket([['user', 'app'], ['database', 'bench']]));
  const welcome = await client.readUntil('Z');
  assert.deepEqual([...new Set(welcome.map((m) => m.type))], ['R', 'S', 'K', 'Z']);
  return client;
}

/** Sends `sql` and returns the tag of its CommandComplete and the status of its ReadyForQuery. */
async function query(client: RawClient, sql: string): Promise<string> {
  client.write(encodeQuery(sql));
  const answer = await client.readUntil('Z');
  const tag = answer.find((m) => m.type === 'C')!.payload;
  const status = String.fromCharCode(answer.at(-1)!.payload[0]!);
  return `${tag.toString('utf8', 0, tag.length - 1)} ${status}`;
}

function queriesSeen(upstream: FakeUpstream): string[] {
  return upstream
    .sessions('bench')
    .flatMap((c) => c.received)
    .filter((m) => m.type === 'Q')
    .map((m) => m.payload.toString('utf8', 0, m.payload.length - 1));
}

test('node-pool: clients share one server connection, and each answer reaches the client that asked', BOUNDED, async (t) => {
  const { upstream, port } = await startPool(t, 1);
  const a = await login(t, port);
  const b = await login(t, port);
  const [fromA, fromB] = await Promise.all([query(a, 'select a'), query(b, 'select b')]);
  assert.equal(fromA, 'select a I');
  assert.equal(fromB, 'select b I');
  assert.equal(await query(b, 'select b2'), 'select b2 I');
  assert.equal(upstream.sessions('bench').length, 1, 'one server connection served both clients');
});

test('node-pool: a transaction block keeps its server; another client runs after COMMIT', BOUNDED, async (t) => {
  const { upstream, port } = await startPool(t, 1);
  const a = await login(t, port);
  const b = await login(t, port);
  assert.equal(await query(a, 'begin'), 'begin T');
  const fromB = query(b, 'select b');
  assert.equal(await query(a, 'select a'), 'select a T');
  assert.equal(await query(a, 'commit'), 'commit I');
  assert.equal(await fromB, 'select b I');
  assert.deepEqual(queriesSeen(upstream), ['begin', 'select a', 'commit', 'select b']);
});

test('node-pool: a server left inside a transaction block by a client that went is closed and replaced', BOUNDED, async (t) => {
  const { upstream, port } = await startPool(t, 1);
  const a = await login(t, port);
  assert.equal(await query(a, 'begin'), 'begin T');
  const first = upstream.sessions('bench')[0]!;
  a.destroy();
  await first.closed;
  const b = await login(t, port);
  assert.equal(await query(b, 'select b'), 'select b I');
  const sessions = upstream.sessions('bench');
  assert.equal(sessions.length, 2);
  assert.deepEqual(sessions[1]!.received.filter((m) => m.type === 'Q').map((m) => m.payload.toString('utf8', 0, m.payload.length - 1)), ['select b']);
});

test('node-pool: a client whose message declares a length below 4 is disconnected; the others go on', BOUNDED, async (t) => {
  const { port } = await startPool(t, 1);
  const bad = await login(t, port);
  const good = await login(t, port);
  bad.write(Buffer.from([0x51, 0, 0, 0, 2, 0x51, 0, 0, 0, 2]));
  await assert.rejects(bad.nextMessage(5_000), 'the connection closes with nothing sent');
  assert.equal(bad.closed, true);
  assert.equal(await query(good, 'select good'), 'select good I');
});
