// A Parse of a statement the server connection already holds is not sent: the forwarder answers
// its ParseComplete itself, at the Parse's place among the server's answers. When that request
// is pipelined behind another, the place is right after the other's ReadyForQuery: before the
// server's BindComplete, and also when the Bind fails (Postgres answered the Parse before the
// Bind's error). Driven in process with bench/hot-path.ts's fake client and servers, each answer
// cut where the test says.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hotPath, type HotPath } from '../../../bench/hot-path.ts';
import {
  BIND_COMPLETE,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
  PARSE_COMPLETE,
} from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';

const TEXT = 'select $1::int as n';
const NO_TYPES = Buffer.from([0, 0]);
const READY = encodeReadyForQuery('I');

function bind(statement: string, value: string): Buffer {
  const bytes = Buffer.from(value);
  return new MessageWriter().cstring('').cstring(statement).int16(0).int16(1).int32(bytes.length).bytes(bytes).int16(0).finish(FrontendType.Bind);
}

/** Parse `name` (always the same text), Bind it with `value`, Describe, Execute, Sync. */
function run(name: string, value: string): Buffer {
  const execute = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);
  return Buffer.concat([encodeParse(name, TEXT, NO_TYPES), bind(name, value), encodeTarget(FrontendType.Describe, 'P', ''), execute, encodeSync()]);
}

function rows(column: string, value: string): Buffer {
  return Buffer.concat([encodeTextRowDescription([column]), encodeDataRow([value]), encodeCommandComplete('SELECT 1')]);
}

/** Each message the client got, as its type letter. */
function types(path: HotPath): string {
  const bytes = Buffer.concat(path.client.received);
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += 1 + bytes.readInt32BE(offset + 1)) out.push(String.fromCharCode(bytes[offset]!));
  return out.join(' ');
}

/** A forwarder whose server already holds TEXT (the client prepared it as s1, and ran it). */
async function holding(): Promise<HotPath> {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  path.client.emit('data', run('s1', '1'));
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, rows('n', '1'), READY]));
  await path.settle();
  assert.equal(types(path), '1 2 T D C Z');
  path.client.received.length = 0;
  path.primary.written.length = 0;
  return path;
}

type Cut = 'one read' | 'a read per answer';

/** The server answers both requests: in one read, or each in a read of its own. */
function answer(path: HotPath, cut: Cut, first: Buffer, second: Buffer): void {
  if (cut === 'one read') return path.primary.sink!.onServerData(Buffer.concat([first, second]));
  path.primary.sink!.onServerData(first);
  path.primary.sink!.onServerData(second);
}

for (const cut of ['one read', 'a read per answer'] as const) {
  test(`behind a simple Query, the ParseComplete comes after the Query's answer and before the BindComplete (${cut})`, async () => {
    const path = await holding();
    path.client.emit('data', Buffer.concat([encodeQuery('select 2 as two'), run('s2', '2')]));
    const written = Buffer.concat(path.primary.written);
    assert.equal(written.includes(Buffer.from(TEXT)), false, 'the held statement was not parsed again');
    const first = Buffer.concat([rows('two', '2'), READY]);
    const second = Buffer.concat([BIND_COMPLETE, rows('n', '2'), READY]);
    answer(path, cut, first, second);
    await path.settle();
    assert.equal(types(path), 'T D C Z 1 2 T D C Z');
  });

  test(`behind a simple Query, a failing Bind still gets the ParseComplete first (${cut})`, async () => {
    const path = await holding();
    path.client.emit('data', Buffer.concat([encodeQuery('select 3 as three'), run('s3', 'x')]));
    const first = Buffer.concat([rows('three', '3'), READY]);
    const error = encodeErrorResponse({ severity: 'ERROR', code: '22P02', message: 'invalid input syntax for type integer: "x"' });
    const second = Buffer.concat([error, READY]);
    answer(path, cut, first, second);
    await path.settle();
    assert.equal(types(path), 'T D C Z 1 E Z');
  });
}

test('behind a simple Query, a Parse of a held statement and a Sync alone get ParseComplete and ReadyForQuery', async () => {
  const path = await holding();
  path.client.emit('data', Buffer.concat([encodeQuery('select 4 as four'), encodeParse('s4', TEXT, NO_TYPES), encodeSync()]));
  // With the lease held for the Query, the Parse and Sync are not answered locally: the Sync goes on behind it.
  assert.equal(Buffer.concat(path.primary.written).toString('hex'), Buffer.concat([encodeQuery('select 4 as four'), encodeSync()]).toString('hex'));
  path.primary.sink!.onServerData(Buffer.concat([rows('four', '4'), READY]));
  path.primary.sink!.onServerData(READY);
  await path.settle();
  assert.equal(types(path), 'T D C Z 1 Z');
});
