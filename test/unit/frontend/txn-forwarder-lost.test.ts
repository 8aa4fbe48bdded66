// A server lost, or never had, while a request waits for it: the request is answered with an
// ERROR whatever ends it (a client that sent Flush waits for that answer: postgres.js describing
// a new statement), its Sync then gets ReadyForQuery without a server, and what the client
// queued behind it, which never left the ambassador, still runs. A COMMIT that is the first
// request after its transaction's server was lost fails with the loss; one lost while it runs
// fails too, and leaves no transaction block open. Driven in process with
// bench/hot-path.ts's fake client, pool and server; the fake server's preparation (the exchange
// that creates a statement before its first use) is made to fail as a lost connection does.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hotPath, type HotPath } from '../../../bench/hot-path.ts';
import { AmbassadorError } from '../../../src/errors.ts';
import type { LeaseWaiter, ServerPool } from '../../../src/pool/server-pool.ts';
import {
  BIND_COMPLETE,
  decodeErrorFields,
  decodeReadyForQuery,
  encodeCommandComplete,
  encodeDataRow,
  encodeReadyForQuery,
  encodeTextRowDescription,
} from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';
import { NO_TURN } from '../../../src/frontend/user-limits.ts';

const TEXT = 'select $1::int as n';
const SYNC = encodeSync();
const FLUSH = new MessageWriter().finish(FrontendType.Flush);
const EXECUTE = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);
const DESCRIBE_PORTAL = encodeTarget(FrontendType.Describe, 'P', '');

function bind(statement: string, value: string): Buffer {
  const bytes = Buffer.from(value);
  return new MessageWriter().cstring('').cstring(statement).int16(0).int16(1).int32(bytes.length).bytes(bytes).int16(0).finish(FrontendType.Bind);
}

/** Each message as its type letter; an error with its SQLSTATE, ReadyForQuery with its status, CommandComplete with its tag. */
function messages(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const type = String.fromCharCode(bytes[offset]!);
    const end = offset + 1 + bytes.readInt32BE(offset + 1);
    const payload = bytes.subarray(offset + 5, end);
    if (type === 'E') out.push(`E ${decodeErrorFields(payload).get('C')}`);
    else if (type === 'Z') out.push(`Z ${decodeReadyForQuery(payload)}`);
    else if (type === 'C') out.push(`C ${payload.toString('latin1', 0, payload.length - 1)}`);
    else out.push(type);
    offset = end;
  }
  return out;
}

/** What the client got since the last call. */
function received(path: HotPath): string[] {
  const got = messages(Buffer.concat(path.client.received));
  path.client.received.length = 0;
  return got;
}

/** What the server got since the last call. */
function written(path: HotPath): Buffer[] {
  return path.primary.written.splice(0);
}

/** A forwarder whose client prepared `name` (answered without a server): its first use creates it on the server. */
async function prepared(name: string): Promise<HotPath> {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  path.client.emit('data', Buffer.concat([encodeParse(name, TEXT, Buffer.from([0, 0])), SYNC]));
  assert.deepEqual(received(path), ['1', 'Z I'], 'prepared without a server');
  return path;
}

/** The next preparation on the fake server fails as a lost connection does (the connection is closed); the one after works. */
function loseNextPreparation(path: HotPath): void {
  const works = path.primary.exchange;
  path.primary.exchange = () => {
    path.primary.exchange = works;
    return Promise.reject(new AmbassadorError('UPSTREAM_LOST', 'server 127.0.0.1:5432 closed the connection'));
  };
}

const ROW = Buffer.concat([BIND_COMPLETE, encodeTextRowDescription(['n']), encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')]);

test('a request ending in Flush whose server is lost while its statement is created gets the loss; its Sync gets ReadyForQuery without a server', async () => {
  const path = await prepared('s1');
  loseNextPreparation(path);
  path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, FLUSH]));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006'], 'the loss is told, with no ReadyForQuery before the Sync');
  assert.deepEqual(written(path), [], 'nothing of the request reached a server');

  // The rest of the exchange is skipped up to its Sync, as a server skips after an error.
  path.client.emit('data', Buffer.concat([bind('s1', '2'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['Z I']);
  assert.deepEqual(written(path), [], 'answered without a server');

  // And the client goes on: the statement is created on the next server it uses.
  path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, SYNC]));
  await path.settle();
  assert.equal(written(path).length, 1, 'the next request ran on a server');
  path.primary.sink!.onServerData(ROW);
  assert.deepEqual(received(path), ['2', 'T', 'D', 'C SELECT 1', 'Z I']);
});

test('what the client queued behind a request whose server was lost while preparing never left the ambassador: it runs', async () => {
  const path = await prepared('s1');
  loseNextPreparation(path);
  const behind = encodeQuery('select 2 as n');
  path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, SYNC, behind]));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006', 'Z I'], 'the request the server was prepared for gets the loss');
  assert.deepEqual(written(path).map((bytes) => bytes.toString('hex')), [behind.toString('hex')], 'the query behind it went to a server');
  path.primary.sink!.onServerData(Buffer.concat([encodeTextRowDescription(['n']), encodeDataRow(['2']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')]));
  assert.deepEqual(received(path), ['T', 'D', 'C SELECT 1', 'Z I']);
});

test('a server lost while preparing inside a transaction block: the request gets the loss, the block is aborted until ROLLBACK', async () => {
  const path = await prepared('s1');
  path.client.emit('data', encodeQuery('begin'));
  assert.equal(written(path).length, 1);
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), encodeReadyForQuery('T')]));
  assert.deepEqual(received(path), ['C BEGIN', 'Z T']);

  loseNextPreparation(path);
  path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, SYNC, encodeQuery('select 2')]));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006', 'Z E', 'E 25P02', 'Z E']);
  path.client.emit('data', encodeQuery('rollback'));
  await path.settle();
  assert.deepEqual(received(path), ['C ROLLBACK', 'Z I']);
  assert.deepEqual(written(path), [], 'the lost transaction was answered without a server');
});

test('a COMMIT that is the first request after its transaction’s server was lost fails with the loss; the transaction is over', async () => {
  const path = await prepared('s1');
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), encodeReadyForQuery('T')]));
  assert.deepEqual(received(path), ['C BEGIN', 'Z T']);
  written(path);
  path.primary.sink!.onServerClose();
  await path.settle();
  assert.deepEqual(received(path), [], 'the client, idle in its transaction, hears of the loss with its next request');

  path.client.emit('data', encodeQuery('commit'));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006', 'Z I'], 'not ROLLBACK, which drivers take for success');
  path.client.emit('data', encodeQuery('select 1'));
  await path.settle();
  assert.equal(written(path).length, 1, 'the next statement runs on a server, outside a transaction block');
});

test('a Bind of a name that a DEALLOCATE ALL answered with the loss forgot, read behind it, is answered once that answer is given', async () => {
  const path = await prepared('s1');
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), encodeReadyForQuery('T')]));
  assert.deepEqual(received(path), ['C BEGIN', 'Z T']);
  path.primary.sink!.onServerClose();
  await path.settle();
  written(path);
  // The drop never reaches a server: nothing answers it but the ambassador, in pump().
  path.client.emit('data', Buffer.concat([encodeQuery('deallocate all'), bind('s1', '1'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006', 'Z E', 'E 25P02', 'Z E'], 'the Bind, held behind the drop, is read and answered');
  path.client.emit('data', encodeQuery('rollback'));
  await path.settle();
  assert.deepEqual(received(path), ['C ROLLBACK', 'Z I']);
  path.client.emit('data', Buffer.concat([bind('s1', '2'), EXECUTE, SYNC]));
  await path.settle();
  const bound = Buffer.concat(written(path));
  assert.ok(bound.includes(Buffer.from('\0pa_')) && !bound.includes(Buffer.from('\0s1\0')), 'the name is still the client’s: bound as its shared statement');
});

test('requests waiting for a server that cannot be had each get the error, also those ending in Flush; their Sync gets ReadyForQuery', async () => {
  const path = await prepared('s1');
  // The fake pool hands its server over at once; made to make the client wait, then fail.
  const pool = (path.client.forwarder as unknown as { options: { pool: ServerPool } }).options.pool;
  const waiters: LeaseWaiter[] = [];
  pool.tryAcquireFor = () => null;
  pool.waitFor = (_route, _request, _choice, waiter) => void waiters.push(waiter);
  const describe = Buffer.concat([encodeParse('', TEXT, Buffer.from([0, 0])), encodeTarget(FrontendType.Describe, 'S', ''), FLUSH]);
  path.client.emit('data', Buffer.concat([encodeQuery('select 1'), FLUSH, describe]));
  assert.equal(waiters.length, 1);
  waiters[0]!.leaseSettled(new AmbassadorError('NO_PRIMARY', 'no primary'), null);
  assert.deepEqual(received(path), ['E 08001', 'Z I', 'E 08001'], 'the lone Flush is owed nothing; the Describe gets the error');
  path.client.emit('data', Buffer.concat([bind('', '1'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['Z I'], 'the rest of that exchange skipped up to its Sync');
  assert.equal(waiters.length, 1, 'without asking for a server');
});

/** A forwarder inside a transaction block (BEGIN answered), that has sent `sql` and not heard back. */
async function sentInTransaction(sql: string): Promise<HotPath> {
  const path = await prepared('s1');
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), encodeReadyForQuery('T')]));
  assert.deepEqual(received(path), ['C BEGIN', 'Z T']);
  path.client.emit('data', encodeQuery(sql));
  assert.equal(written(path).length, 2, `${sql} went to the server`);
  return path;
}

test('a server lost while its COMMIT or ROLLBACK runs: the loss (a COMMIT may or may not have committed), and no transaction block is left open', async () => {
  for (const sql of ['commit', 'end', 'rollback', 'abort']) {
    const path = await sentInTransaction(sql);
    path.primary.sink!.onServerClose();
    await path.settle();
    assert.deepEqual(received(path), ['E 08006', 'Z I'], sql);
    path.client.emit('data', encodeQuery('select 1'));
    await path.settle();
    assert.equal(written(path).length, 1, `after ${sql}: the next statement runs on a server, outside a block`);
  }
});

test('a server lost while a statement of the block, or COMMIT AND CHAIN, runs: the block is left aborted until ROLLBACK', async () => {
  for (const sql of ['insert into t values (1)', 'commit and chain', 'savepoint a']) {
    const path = await sentInTransaction(sql);
    path.primary.sink!.onServerClose();
    await path.settle();
    assert.deepEqual(received(path), ['E 08006', 'Z E'], sql);
    path.client.emit('data', encodeQuery('select 1'));
    await path.settle();
    assert.deepEqual(received(path), ['E 25P02', 'Z E'], sql);
    assert.deepEqual(written(path), [], sql);
  }
});

test('a server lost while the ambassador asks it whether advisory locks are left: the pinned client is disconnected, as for any loss of its state', async () => {
  const path = await prepared('s1');
  // As the session does: the forwarder is stopped when it ends the session.
  const forwarder = path.client.forwarder!;
  const ended: string[] = [];
  (forwarder as unknown as { options: { onEnd: (reason: string) => void } }).options.onEnd = (reason) => {
    ended.push(reason);
    forwarder.stop();
  };
  const answer = (value: string): Buffer => Buffer.concat([encodeTextRowDescription(['v']), encodeDataRow([value]), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')]);
  path.client.emit('data', encodeQuery('select pg_advisory_lock(7)'));
  path.primary.sink!.onServerData(answer(''));
  path.client.emit('data', encodeQuery('select pg_advisory_unlock(7)'));
  assert.equal(written(path).length, 2, 'both on the pinned lease');
  // Its last lock released by count: the ambassador asks the server before unpinning.
  loseNextPreparation(path);
  path.primary.sink!.onServerData(answer('t'));
  path.client.emit('data', encodeQuery('select 1'));
  await path.settle();
  const told = Buffer.concat(path.client.received);
  assert.deepEqual(received(path), ['T', 'D', 'C SELECT 1', 'Z I', 'T', 'D', 'C SELECT 1', 'Z I', 'E 08006']);
  let last = 0;
  for (let offset = 0; offset < told.length; offset += 1 + told.readInt32BE(offset + 1)) last = offset;
  assert.equal(decodeErrorFields(told.subarray(last + 5)).get('S'), 'FATAL', 'the session ends');
  assert.deepEqual(ended, ['server closed the connection of a pinned session']);
  assert.deepEqual(written(path), [], 'the query sent meanwhile went nowhere');
});

test('a client gone while its statement is created: its server goes back when that exchange has ended, once, not before', async () => {
  for (const outcome of ['answered', 'lost'] as const) {
    const path = await prepared('s1');
    const forwarder = path.client.forwarder!;
    const released: string[] = [];
    (forwarder as unknown as { options: { pool: { release: (server: unknown, how: string) => void } } }).options.pool.release = (_server, how) => released.push(how);
    let settle: ((answer: { error: Buffer | null }) => void) | undefined;
    let fail: ((err: Error) => void) | undefined;
    const works = path.primary.exchange;
    path.primary.exchange = () => {
      path.primary.exchange = works;
      return new Promise((resolve, reject) => ((settle = resolve), (fail = reject)));
    };
    path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, SYNC]));
    await path.settle();
    assert.ok(settle !== undefined, 'the statement is being created');
    forwarder.stop();
    // Back in the pool now, the server could go to another client with this exchange's answers to come.
    assert.deepEqual(released, [], `${outcome}: not while the exchange runs`);
    if (outcome === 'answered') settle({ error: null });
    else fail!(new AmbassadorError('UPSTREAM_LOST', 'server 127.0.0.1:5432 closed the connection'));
    await path.settle();
    assert.deepEqual(released, [outcome === 'answered' ? 'reusable' : 'broken'], outcome);
    assert.deepEqual(written(path), [], `${outcome}: the request of a client that left is not sent`);
    forwarder.stop();
    assert.equal(released.length, 1, `${outcome}: given back once`);
  }
});

test('the names a request parses are not made when its server is lost while preparing for it: parsed again, they are not refused', async () => {
  const path = await prepared('s1');
  loseNextPreparation(path);
  path.client.emit('data', Buffer.concat([encodeParse('s2', 'select 2', Buffer.from([0, 0])), bind('s1', '1'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['E 08006', 'Z I']);
  // pg parses its named query again after an error.
  path.client.emit('data', Buffer.concat([encodeParse('s2', 'select 2', Buffer.from([0, 0])), SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['1', 'Z I'], 'prepared again, answered without a server: not 42P05');
});

test('a request ending in Flush refused before any server (rate limit): the rest of its exchange is skipped up to its Sync, never sent', async () => {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  const options = (path.client.forwarder as unknown as { options: { userSlot: { user: string; limited: boolean; turn: () => number; release: () => void } } }).options;
  options.userSlot = { user: 'app', limited: true, turn: () => NO_TURN, release: () => {} };
  path.client.emit('data', Buffer.concat([encodeParse('', TEXT, Buffer.from([0, 0])), encodeTarget(FrontendType.Describe, 'S', ''), FLUSH]));
  await path.settle();
  assert.deepEqual(received(path).map((m) => m.slice(0, 1)), ['E'], 'refused, with no ReadyForQuery before the Sync');
  options.userSlot = { user: 'app', limited: false, turn: () => 0, release: () => {} };
  path.client.emit('data', Buffer.concat([bind('', '1'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['Z I']);
  assert.deepEqual(written(path), [], 'its Bind, of a statement no server has, went nowhere');
});

test('a request ending in Flush whose statement a server refuses to create gets that error; the rest of its exchange is skipped up to its Sync', async () => {
  const path = await prepared('s1');
  const works = path.primary.exchange;
  const refusal = new MessageWriter().byte(0x53).cstring('ERROR').byte(0x43).cstring('42P01').byte(0x4d).cstring('relation "t" does not exist').byte(0).finish(0x45);
  path.primary.exchange = () => {
    path.primary.exchange = works;
    return Promise.resolve({ error: refusal.subarray(5) });
  };
  path.client.emit('data', Buffer.concat([bind('s1', '1'), DESCRIBE_PORTAL, EXECUTE, FLUSH]));
  await path.settle();
  assert.deepEqual(received(path), ['E 42P01'], 'no ReadyForQuery before the Sync');
  path.client.emit('data', Buffer.concat([bind('s1', '2'), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(received(path), ['Z I']);
  assert.deepEqual(written(path), [], 'skipped: nothing of it reached the server');
});
