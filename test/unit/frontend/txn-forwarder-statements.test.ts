// What SQL and protocol messages do to the statements a client holds under transaction pooling,
// as Postgres would have them: DEALLOCATE ALL drops the server's statements where it runs, not
// before the request's own Parse. Driven in process with
// bench/hot-path.ts's fake client and servers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hotPath, type HotPath } from '../../../bench/hot-path.ts';
import {
  BIND_COMPLETE,
  decodeErrorFields,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  PARSE_COMPLETE,
} from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';

const TEXT = 'select $1::int as n';
const NO_TYPES = Buffer.from([0, 0]);
const EXECUTE = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);

function bind(statement: string, values: readonly string[]): Buffer {
  const writer = new MessageWriter().cstring('').cstring(statement).int16(0).int16(values.length);
  for (const value of values) writer.int32(Buffer.byteLength(value)).bytes(Buffer.from(value));
  return writer.int16(0).finish(FrontendType.Bind);
}

/** Each message the client got since the last call, as its type letter (an error with its SQLSTATE). */
function received(path: HotPath): string {
  const bytes = Buffer.concat(path.client.received.splice(0));
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const type = String.fromCharCode(bytes[offset]!);
    const end = offset + 1 + bytes.readInt32BE(offset + 1);
    out.push(type === 'E' ? `E(${decodeErrorFields(bytes.subarray(offset + 5, end)).get('C')})` : type === 'Z' ? `Z(${String.fromCharCode(bytes[end - 1]!)})` : type);
    offset = end;
  }
  return out.join(' ');
}

/** What the primary was sent since the last call. */
function sent(path: HotPath): Buffer {
  return Buffer.concat(path.primary.written.splice(0));
}

async function keeping(): Promise<HotPath> {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  return path;
}

const ready = (status: 'I' | 'T' | 'E'): Buffer => encodeReadyForQuery(status);
const error = (code: string): Buffer => encodeErrorResponse({ severity: 'ERROR', code, message: code });

test('DEALLOCATE ALL behind a Parse in one request: the statement it dropped is parsed again on the server next time', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeParse('', 'deallocate all', NO_TYPES), bind('', []), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'the server did not hold it: parsed there');
  assert.equal(path.primary.statements.size, 0, 'nothing held once DEALLOCATE ALL has run, the Parse before it neither');
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), PARSE_COMPLETE, BIND_COMPLETE, encodeCommandComplete('DEALLOCATE ALL'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '1 2 D C 1 2 C Z(I)');
  path.client.emit('data', Buffer.concat([encodeParse('s2', TEXT, NO_TYPES), bind('s2', ['2']), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'parsed again, not answered by the ambassador');
  assert.equal(path.primary.statements.size, 1);
});

test('DISCARD PLANS keeps the server’s statements; DISCARD ALL among other statements (refused by Postgres) too', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeSync()]));
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), ready('I')]));
  for (const [sql, answer] of [
    ['discard plans', encodeCommandComplete('DISCARD PLANS')],
    ['select 1; discard all', error('25001')],
  ] as const) {
    path.client.emit('data', encodeQuery(sql));
    path.primary.sink!.onServerData(Buffer.concat([answer, ready('I')]));
    assert.equal(path.primary.statements.size, 1, sql);
  }
});
