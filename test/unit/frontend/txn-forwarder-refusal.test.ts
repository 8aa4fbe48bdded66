// What transaction pooling runs again, and what it must not. A replica's read-only refusal
// (25006) runs the refused read on the primary; what the client sends meanwhile waits for that
// re-run. A request behind an exchange left open without Sync belongs to that exchange's implicit
// transaction: behind a write it is neither retried (cached plan) nor run again on another server
// when its own is lost; behind reads on a replica it may be (not behind SET LOCAL, which a
// replica runs too). Driven in process with bench/hot-path.ts's fake client, pool and servers,
// so that each answer can be cut where Postgres flushes (after an ErrorResponse) and each loss
// put between two requests.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hotPath, pgbenchRequest, serverAnswer, type HotPath } from '../../../bench/hot-path.ts';
import {
  BIND_COMPLETE,
  decodeErrorFields,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
  PARSE_COMPLETE,
} from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';

const REFUSAL = encodeErrorResponse({ severity: 'ERROR', code: '25006', message: 'cannot execute INSERT in a read-only transaction' });
const READY = encodeReadyForQuery('I');
const FLUSH = new MessageWriter().finish(FrontendType.Flush);

function rows(column: string, value: string): Buffer {
  return Buffer.concat([encodeTextRowDescription([column]), encodeDataRow([value]), encodeCommandComplete('SELECT 1')]);
}

/** Each message as its type letter, with the SQLSTATE of an error. */
function messages(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const type = String.fromCharCode(bytes[offset]!);
    const end = offset + 1 + bytes.readInt32BE(offset + 1);
    out.push(type === 'E' ? `E ${decodeErrorFields(bytes.subarray(offset + 5, end)).get('C')}` : type);
    offset = end;
  }
  return out;
}

/** A split forwarder (reads to the fake replica) that keeps everything written either way. */
async function splitPath(mode: 'simple' | 'extended'): Promise<HotPath> {
  const path = await hotPath(mode, true);
  for (const side of [path.client, path.primary, path.replica]) side.keep = true;
  return path;
}

const hex = (buffers: Buffer[]): string[] => buffers.map((bytes) => bytes.toString('hex'));

/** pgbench's read for `aid` ending in Flush instead of Sync: its implicit transaction stays open. */
function openRead(aid: number): Buffer {
  const whole = pgbenchRequest('extended', aid);
  return Buffer.concat([whole.subarray(0, whole.length - FLUSH.length), FLUSH]);
}

/** Sends an open read, answered by the replica: the lease stays with the client. Returns both. */
function readLeftOpen(path: HotPath): { read: Buffer; answer: Buffer } {
  const read = openRead(7);
  path.client.emit('data', read);
  const answer = serverAnswer('extended').subarray(0, -READY.length);
  path.replica.sink!.onServerData(answer);
  return { read, answer };
}

test('a refusal being swallowed holds back what the client sends next: the read runs on the primary first, then the next one', async () => {
  const path = await splitPath('simple');
  const refused = encodeQuery('SELECT 1 AS a');
  const next = encodeQuery('SELECT 2 AS b');
  path.client.emit('data', refused);
  assert.deepEqual(hex(path.replica.written), hex([refused]));
  // Postgres flushes after an ErrorResponse: the ReadyForQuery can come in a later read.
  path.replica.sink!.onServerData(Buffer.concat([encodeTextRowDescription(['a']), REFUSAL]));
  path.client.emit('data', next);
  assert.deepEqual(hex(path.replica.written), hex([refused]), 'nothing went behind the refused read on its replica lease');
  assert.deepEqual(path.client.received, [], 'the refusal is not the answer');

  path.replica.sink!.onServerData(READY);
  await path.settle();
  assert.equal(path.replica.sink, null, 'the replica lease was given back');
  assert.deepEqual(hex(path.primary.written.slice(0, 1)), hex([refused]), 'the refused read ran again, on the primary');
  const primaryAnswer = [rows('a', '1'), READY];
  // The next read goes wherever routing puts it once the re-run is sent: answered there.
  if (path.primary.written.length === 2) primaryAnswer.push(rows('b', '2'), READY);
  path.primary.sink!.onServerData(Buffer.concat(primaryAnswer));
  await path.settle();
  if (path.primary.written.length === 1) {
    assert.deepEqual(hex(path.replica.written.slice(1)), hex([next]));
    path.replica.sink!.onServerData(Buffer.concat([rows('b', '2'), READY]));
  } else {
    assert.deepEqual(hex(path.primary.written), hex([refused, next]));
  }
  assert.deepEqual(messages(Buffer.concat(path.client.received)), ['T', 'D', 'C', 'Z', 'T', 'D', 'C', 'Z']);
  assert.equal(Buffer.concat(path.client.received).toString('hex'), Buffer.concat([rows('a', '1'), READY, rows('b', '2'), READY]).toString('hex'));
});

test('a refused read behind a read left open without Sync on the replica runs again on the primary', async () => {
  const path = await splitPath('extended');
  const { read: open, answer: openAnswer } = readLeftOpen(path);
  const tail = pgbenchRequest('extended', 8);
  path.client.emit('data', tail);
  assert.deepEqual(hex(path.replica.written), hex([open, tail]), 'the rest of the exchange followed on its lease');
  path.replica.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeTextRowDescription(['abalance']), REFUSAL, READY]));
  await path.settle();
  // What ran on the replica only read: the refused request alone runs on the primary.
  assert.deepEqual(hex(path.primary.written), hex([tail]));
  path.primary.sink!.onServerData(serverAnswer('extended'));
  assert.equal(Buffer.concat(path.client.received).toString('hex'), Buffer.concat([openAnswer, serverAnswer('extended')]).toString('hex'));
});

test('a refused write behind SET LOCAL left open on the replica is answered with its error, not run on the primary without it', async () => {
  const path = await splitPath('extended');
  const { read, answer: readAnswer } = readLeftOpen(path);
  // A replica runs SET LOCAL: the INSERT after it depends on it (search_path, a tenant setting).
  const setLocal = openStatement('SET LOCAL search_path = tenant1');
  path.client.emit('data', setLocal.request);
  path.replica.sink!.onServerData(setLocal.answer('SET'));
  const insert = openStatement('INSERT INTO items (note) VALUES (1)');
  const closing = Buffer.concat([insert.request.subarray(0, -FLUSH.length), encodeSync()]);
  path.client.emit('data', closing);
  assert.deepEqual(hex(path.replica.written), hex([read, setLocal.request, closing]), 'the open exchange went on on its lease');
  const refusal = Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, REFUSAL, READY]);
  path.replica.sink!.onServerData(refusal);
  await path.settle();
  assert.deepEqual(path.primary.written, [], 'the INSERT did not run on the primary without its SET LOCAL');
  assert.equal(Buffer.concat(path.client.received).toString('hex'), Buffer.concat([readAnswer, setLocal.answer('SET'), refusal]).toString('hex'));
});

/** Parse, Bind, Execute and Flush of an INSERT, and what the server answers before the Sync. */
function openWrite(): { request: Buffer; answer: Buffer } {
  const { request, answer } = openStatement('INSERT INTO items (note) VALUES (1)');
  return { request, answer: answer('INSERT 0 1') };
}

/** Parse, Bind, Execute and Flush of `sql`, and what the server answers before the Sync (with its tag). */
function openStatement(sql: string): { request: Buffer; answer: (tag: string) => Buffer } {
  const bind = new MessageWriter().cstring('').cstring('').int16(0).int16(0).int16(0).finish(FrontendType.Bind);
  const execute = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);
  return {
    request: Buffer.concat([encodeParse('', sql, Buffer.from([0, 0])), bind, execute, FLUSH]),
    answer: (tag) => Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeCommandComplete(tag)]),
  };
}

test('a lost primary with a write left open without Sync: the read behind it is answered with the loss, not run again elsewhere', async () => {
  const path = await splitPath('extended');
  const { request: write, answer: writeAnswer } = openWrite();
  path.client.emit('data', write);
  path.primary.sink!.onServerData(writeAnswer);
  // A read, sent on the primary's lease: it closes the write's implicit transaction.
  const read = pgbenchRequest('extended', 8);
  path.client.emit('data', read);
  assert.deepEqual(hex(path.primary.written), hex([write, read]));
  path.primary.sink!.onServerClose();
  await path.settle();
  // Run again on a replica, the read would answer with a ReadyForQuery: the lost insert as committed.
  assert.deepEqual(path.replica.written, [], 'the read did not run again elsewhere');
  const received = Buffer.concat(path.client.received);
  assert.equal(received.subarray(0, writeAnswer.length).toString('hex'), writeAnswer.toString('hex'));
  assert.deepEqual(messages(received.subarray(writeAnswer.length)), ['E 08006', 'Z']);
});

test('a cached-plan error behind a write left open without Sync reaches the client: the read is not retried alone', async () => {
  // Prepared: a Bind of a statement prepared earlier is what a retry re-prepares and runs again.
  const path = await hotPath('prepared', false);
  for (const side of [path.client, path.primary]) side.keep = true;
  const { request: write, answer: writeAnswer } = openWrite();
  path.client.emit('data', write);
  path.primary.sink!.onServerData(writeAnswer);
  path.client.emit('data', pgbenchRequest('prepared', 8));
  // The error aborts the implicit transaction, the insert with it: the client must hear of it.
  const failed = Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: 'cached plan must not change result type' }), READY]);
  path.primary.sink!.onServerData(failed);
  await path.settle();
  assert.equal(path.primary.written.length, 2, 'nothing was sent again');
  assert.deepEqual(hex(path.primary.written.slice(0, 1)), hex([write]));
  assert.equal(Buffer.concat(path.client.received).toString('hex'), Buffer.concat([writeAnswer, failed]).toString('hex'));
});

test('a lost replica with an open exchange behind the watched read: both are answered with the loss, nothing runs again', async () => {
  const path = await splitPath('extended');
  const watched = pgbenchRequest('extended', 7);
  const open = openRead(8);
  path.client.emit('data', Buffer.concat([watched, open]));
  assert.equal(Buffer.concat(path.replica.written).toString('hex'), Buffer.concat([watched, open]).toString('hex'));
  path.replica.sink!.onServerClose();
  await path.settle();
  assert.deepEqual(path.primary.written, [], 'the watched read was not run again without the exchange behind it');
  assert.deepEqual(messages(Buffer.concat(path.client.received)), ['E 08006', 'Z', 'E 08006']);
});

test('a watched read answered in pieces: its acknowledgements are held back over several reads, then reach the client once, in order', async () => {
  const path = await splitPath('extended');
  path.client.emit('data', pgbenchRequest('extended', 9));
  const answer = serverAnswer('extended');
  assert.deepEqual(messages(answer).slice(0, 3), ['1', '2', 'T'], 'ParseComplete, BindComplete, RowDescription first');
  // Each acknowledgement in a read of its own: none is a result, so none reaches the client yet.
  let at = 0;
  for (let i = 0; i < 3; i++) {
    const end = at + 1 + answer.readInt32BE(at + 1);
    path.replica.sink!.onServerData(answer.subarray(at, end));
    at = end;
    assert.deepEqual(path.client.received, [], `after acknowledgement ${i + 1}`);
  }
  // The first row shows the read was not refused: everything held goes out ahead of it.
  path.replica.sink!.onServerData(answer.subarray(at));
  await path.settle();
  assert.equal(Buffer.concat(path.client.received).toString('hex'), answer.toString('hex'));
  assert.deepEqual(path.primary.written, [], 'nothing ran again');
});
