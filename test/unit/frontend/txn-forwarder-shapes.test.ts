// A statement made again on a server after DDL has the table's new shape: a Bind that relies on
// the description the client was shown (no Describe of its portal in the request: postgres.js)
// fails with 0A000 as from Postgres, where it would have returned rows of another shape
// (result-shapes.ts). Driven in process with bench/hot-path.ts's fake client and server; the
// fake server's preparations (exchange) answer the Describes with the shapes a test gives.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hotPath, type HotPath } from '../../../bench/hot-path.ts';
import {
  BIND_COMPLETE,
  decodeResultShape,
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeReadyForQuery,
  encodeTextRowDescription,
  type ResultShape,
  PARSE_COMPLETE,
} from '../../../src/protocol/backend.ts';
import type { ExchangeAnswers } from '../../../src/backend/connection.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';
import { REFUSED_PARSE } from '../../../src/frontend/statements.ts';
import { bind, received, sent } from '../../support/hot-path-wire.ts';

const TEXT = 'select * from t where a = $1';
const NO_TYPES = Buffer.from([0, 0]);
const EXECUTE = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);
const SYNC = encodeSync();
const FLUSH = new MessageWriter().finish(FrontendType.Flush);
const PARAMETERS = new MessageWriter().int16(1).int32(23).finish(0x74);
const DESCRIBE_PORTAL = encodeTarget(FrontendType.Describe, 'P', '');
const describeStatement = (name: string): Buffer => encodeTarget(FrontendType.Describe, 'S', name);
const ready = (status: 'I' | 'T' | 'E'): Buffer => encodeReadyForQuery(status);
/** What every server answers REFUSED_PARSE with. */
const SYNTAX_ERROR = encodeErrorResponse({ severity: 'ERROR', code: '42601', message: 'syntax error at or near "pa_refused"' });

const shapeOf = (columns: string[]): ResultShape => decodeResultShape(encodeTextRowDescription(columns).subarray(5))!;

/** The letters of a preparation's messages. */
const letters = (messages: Buffer[]): string => messages.map((m) => String.fromCharCode(m[0]!)).join('');

interface Shaped {
  path: HotPath;
  /** The server name of s1 (TEXT). */
  name: string;
  /** The preparations the server got, as message letters; each answers its Describes with `shapes`. */
  preparations: string[];
  shapes: ResultShape[];
}

/** A client that prepared s1 (TEXT) and was shown one column, `a`, by its Describe. */
async function shownOneColumn(): Promise<Shaped> {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  const shaped: Shaped = { path, name: '', preparations: [], shapes: [] };
  (path.primary as unknown as { exchange: (messages: Buffer[], until: unknown, timeoutMs: number, answers?: ExchangeAnswers) => Promise<{ error: Buffer | null }> }).exchange = (messages, _until, _timeoutMs, answers) => {
    shaped.preparations.push(letters(messages));
    for (const message of messages) if (message[0] === FrontendType.Describe) answers?.shapes?.push(shaped.shapes.shift() ?? null);
    return Promise.resolve({ error: null });
  };
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), describeStatement('s1'), SYNC]));
  const out = sent(path);
  const at = out.indexOf('pa_');
  shaped.name = out.toString('latin1', at, out.indexOf(0, at));
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, PARAMETERS, encodeTextRowDescription(['a']), ready('I')]));
  await path.settle();
  assert.equal(received(path), '1 t T Z(I)');
  return shaped;
}

/** The server lost s1 (closed to make room), then ALTER TABLE gave t the columns `columns`. */
function lostAfterDdl(shaped: Shaped, columns: string[]): void {
  shaped.path.primary.statements.delete(shaped.name);
  shaped.path.primary.statementShapes.delete(shaped.name);
  shaped.shapes.push(shapeOf(columns));
}

const rows = (...values: string[]): Buffer => Buffer.concat([BIND_COMPLETE, encodeDataRow(values), encodeCommandComplete('SELECT 1')]);

test('made again in a new shape: described first, and the Bind that relies on the old one fails with 0A000 (RevalidateCachedQuery), then every such Bind of the name', async () => {
  const shaped = await shownOneColumn();
  const { path } = shaped;
  lostAfterDdl(shaped, ['a', 'b']);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPDS'], 'closed in case, made again, described');
  assert.deepEqual(sent(path), Buffer.concat([REFUSED_PARSE, EXECUTE, SYNC]), 'the Bind goes as a Parse the server refuses');
  path.primary.sink!.onServerData(Buffer.concat([SYNTAX_ERROR, ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(0A000 RevalidateCachedQuery) Z(I)');
  assert.ok(path.primary.statements.has(shaped.name), 'the statement made again is held, valid for others');

  // Again: failed as Postgres fails it, with nothing to prepare.
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(sent(path), Buffer.concat([REFUSED_PARSE, EXECUTE, SYNC]));
  assert.equal(shaped.preparations.length, 1);
  path.primary.sink!.onServerData(Buffer.concat([SYNTAX_ERROR, ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(0A000 RevalidateCachedQuery) Z(I)');

  // As postgres.js retries: the same text prepared again under another name, described, bound.
  path.client.emit('data', Buffer.concat([encodeParse('s2', TEXT, NO_TYPES), describeStatement('s2'), FLUSH]));
  assert.deepEqual(sent(path), Buffer.concat([describeStatement(shaped.name), FLUSH]), 'held: its Parse answered here, its Describe sent');
  path.primary.sink!.onServerData(Buffer.concat([PARAMETERS, encodeTextRowDescription(['a', 'b'])]));
  path.client.emit('data', Buffer.concat([bind('s2', ['1']), EXECUTE, SYNC]));
  const bound = sent(path);
  assert.ok(!bound.includes(REFUSED_PARSE) && bound.includes(Buffer.from(shaped.name)), 'bound: the shape it was shown is the server’s');
  path.primary.sink!.onServerData(Buffer.concat([rows('1', '7'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '1 t T 2 D C Z(I)');
});

test('a request that describes its portal gets the new description: nothing is described first, nothing refused, also for an outdated name', async () => {
  const shaped = await shownOneColumn();
  const { path } = shaped;
  lostAfterDdl(shaped, ['a', 'b']);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), DESCRIBE_PORTAL, EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPS']);
  assert.ok(!sent(path).includes(REFUSED_PARSE));
  path.primary.sink!.onServerData(Buffer.concat([BIND_COMPLETE, encodeTextRowDescription(['a', 'b']), encodeDataRow(['1', '7']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '2 T D C Z(I)');
  // The Bind without Describe, on the server whose shape is not known: made anew and described, then refused.
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPS', 'CPDS'], 'held, its shape there unknown: made anew and described');
  assert.deepEqual(sent(path), Buffer.concat([REFUSED_PARSE, EXECUTE, SYNC]));
  path.primary.sink!.onServerData(Buffer.concat([SYNTAX_ERROR, ready('I')]));
  // And the describing request still runs.
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), DESCRIBE_PORTAL, EXECUTE, SYNC]));
  assert.ok(!sent(path).includes(REFUSED_PARSE));
  path.primary.sink!.onServerData(Buffer.concat([BIND_COMPLETE, encodeTextRowDescription(['a', 'b']), encodeDataRow(['1', '7']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(0A000 RevalidateCachedQuery) Z(I) 2 T D C Z(I)');
});

test('DDL that leaves the columns as they were: made again, described, and bound without an error', async () => {
  const shaped = await shownOneColumn();
  const { path } = shaped;
  lostAfterDdl(shaped, ['a']);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPDS']);
  const bound = sent(path);
  assert.ok(!bound.includes(REFUSED_PARSE) && bound.includes(Buffer.from(shaped.name)));
  path.primary.sink!.onServerData(Buffer.concat([rows('1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '2 D C Z(I)');
  // Known now: the next Bind needs no preparation.
  path.client.emit('data', Buffer.concat([bind('s1', ['2']), EXECUTE, SYNC]));
  await path.settle();
  assert.equal(shaped.preparations.length, 1);
  assert.ok(sent(path).includes(Buffer.from(shaped.name)));
});

test('inside a transaction block the refusal fails the block, as in Postgres: 25P02 after it', async () => {
  const shaped = await shownOneColumn();
  const { path } = shaped;
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), ready('T')]));
  lostAfterDdl(shaped, ['a', 'b']);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPDS']);
  assert.deepEqual(sent(path), Buffer.concat([encodeQuery('begin'), REFUSED_PARSE, EXECUTE, SYNC]), 'the server fails at the Bind’s place, and the block with it');
  path.primary.sink!.onServerData(Buffer.concat([SYNTAX_ERROR, ready('E')]));
  path.client.emit('data', encodeQuery('select 1'));
  path.primary.sink!.onServerData(Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '25P02', message: 'current transaction is aborted' }), ready('E')]));
  path.client.emit('data', encodeQuery('rollback'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('ROLLBACK'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'C Z(T) E(0A000 RevalidateCachedQuery) Z(E) E(25P02) Z(E) C Z(I)');
});

test('a Bind ended with Flush (its exchange open) is refused there too: the rest is skipped up to the client’s Sync', async () => {
  const shaped = await shownOneColumn();
  const { path } = shaped;
  lostAfterDdl(shaped, ['a', 'b']);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, FLUSH]));
  await path.settle();
  assert.deepEqual(sent(path), Buffer.concat([REFUSED_PARSE, EXECUTE, FLUSH]));
  path.primary.sink!.onServerData(SYNTAX_ERROR);
  path.client.emit('data', SYNC);
  assert.deepEqual(sent(path), SYNC);
  path.primary.sink!.onServerData(ready('I'));
  await path.settle();
  assert.equal(received(path), 'E(0A000 RevalidateCachedQuery) Z(I)');
});

test('a server whose shape for the statement is the old one does not refuse a client shown the new one: the statement is made anew there, and the Bind runs', async () => {
  // Another client described the statement on this server before ALTER TABLE; this client
  // prepared it after, and was shown the new columns (its Describe ran elsewhere). The server's
  // shape is the outdated one, not the client's.
  const shaped = await shownOneColumn();
  const { path } = shaped;
  path.primary.statementShapes.set(shaped.name, shapeOf(['old']));
  shaped.shapes.push(shapeOf(['a'])); // what the statement made anew describes now
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, SYNC]));
  await path.settle();
  assert.deepEqual(shaped.preparations, ['CPDS'], 'closed, made anew, described');
  const bound = sent(path);
  assert.ok(!bound.includes(REFUSED_PARSE) && bound.includes(Buffer.from(shaped.name)), 'the Bind goes: the fresh shape is the one the client was shown');
  path.primary.sink!.onServerData(Buffer.concat([rows('1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '2 D C Z(I)');
  assert.equal(path.primary.statementShapes.get(shaped.name), shapeOf(['a']), 'the server’s shape is the fresh one from then on');
});
