// What SQL and protocol messages do to the statements a client holds under transaction pooling,
// as Postgres would have them: DEALLOCATE of a statement the client prepared through the protocol
// is answered without a server (its server statement is shared, under another name); a Parse of a
// name the client holds is refused (42P05) at its place; DEALLOCATE ALL drops the server's
// statements where it runs, not before the request's own Parse. Driven in process with
// bench/hot-path.ts's fake client and servers.

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
import { encodeParse, encodeQuery, encodeSync, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';
import { REFUSED_PARSE } from '../../../src/frontend/statements.ts';
import { bind, received, sent } from '../../support/hot-path-wire.ts';

const TEXT = 'select $1::int as n';
const NO_TYPES = Buffer.from([0, 0]);
const EXECUTE = new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute);

async function keeping(): Promise<HotPath> {
  const path = await hotPath('extended', false);
  path.client.keep = true;
  path.primary.keep = true;
  return path;
}

const ready = (status: 'I' | 'T' | 'E'): Buffer => encodeReadyForQuery(status);
const error = (code: string): Buffer => encodeErrorResponse({ severity: 'ERROR', code, message: code });

/** A path whose client prepared s1 (TEXT) and ran it once: the server holds it; what was sent and received so far is dropped. */
async function holdingS1(): Promise<HotPath> {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeSync()]));
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  received(path);
  sent(path);
  return path;
}

test('DEALLOCATE ALL behind a Parse in one request: the statement it dropped is parsed again on the server next time', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeParse('', 'deallocate all', NO_TYPES), bind('', []), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'the server did not hold it: parsed there');
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), PARSE_COMPLETE, BIND_COMPLETE, encodeCommandComplete('DEALLOCATE ALL'), ready('I')]));
  await path.settle();
  assert.equal(path.primary.statements.size, 0, 'nothing held once DEALLOCATE ALL has run, the Parse before it neither');
  assert.equal(received(path), '1 2 D C 1 2 C Z(I)');
  path.client.emit('data', Buffer.concat([encodeParse('s2', TEXT, NO_TYPES), bind('s2', ['2']), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'parsed again, not answered by the ambassador');
  assert.equal(path.primary.statements.size, 1);
});

test('DEALLOCATE ALL or DISCARD ALL that the server refuses or skips drops nothing: the client’s names and the server’s statements stay', async () => {
  const path = await holdingS1();
  const boundAsShared = async (): Promise<boolean> => {
    path.client.emit('data', Buffer.concat([bind('s1', ['2']), EXECUTE, encodeSync()]));
    const bytes = sent(path);
    path.primary.sink!.onServerData(Buffer.concat([BIND_COMPLETE, encodeDataRow(['2']), encodeCommandComplete('SELECT 1'), ready('I')]));
    await path.settle();
    received(path);
    return bytes.includes(Buffer.from('\0pa_')) && !bytes.includes(Buffer.from('\0s1\0'));
  };
  for (const [what, request, answer] of [
    ['DISCARD ALL in a transaction block', encodeQuery('discard all'), Buffer.concat([error('25001'), ready('E')])],
    ['DEALLOCATE ALL in a failed block', encodeQuery('deallocate all'), Buffer.concat([error('25P02'), ready('E')])],
    ['DEALLOCATE ALL after an error in its Query', encodeQuery('select 1/0; deallocate all'), Buffer.concat([error('22012'), ready('I')])],
    ['DEALLOCATE ALL after an error in its request', Buffer.concat([encodeParse('', 'select 1/0', NO_TYPES), bind('', []), EXECUTE, encodeParse('', 'deallocate all', NO_TYPES), bind('', []), EXECUTE, encodeSync()]), Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, error('22012'), ready('I')])],
    ['DEALLOCATE ALL whose Parse fails', Buffer.concat([encodeParse('', 'deallocate all', NO_TYPES), bind('', []), EXECUTE, encodeSync()]), Buffer.concat([error('25P02'), ready('E')])],
  ] as const) {
    path.client.emit('data', request);
    assert.ok(sent(path).length > 0, what);
    path.primary.sink!.onServerData(answer);
    await path.settle();
    received(path);
    assert.equal(path.primary.statements.size, 1, `${what}: the server still holds the statement`);
    if (answer.at(-1) === 0x45) {
      path.client.emit('data', encodeQuery('rollback'));
      path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('ROLLBACK'), ready('I')]));
      await path.settle();
      received(path);
      sent(path);
    }
    assert.ok(await boundAsShared(), `${what}: the name is still the client’s`);
  }
  // Run: gone for both.
  path.client.emit('data', encodeQuery('select 1; deallocate all'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('SELECT 1'), encodeCommandComplete('DEALLOCATE ALL'), ready('I')]));
  await path.settle();
  assert.equal(path.primary.statements.size, 0);
  assert.equal(await boundAsShared(), false, 'the name goes as it came (26000)');
});

test('a Parse behind DEALLOCATE ALL in its request goes to the server even when that held the statement; skipped, it leaves the statement held', async () => {
  const path = await holdingS1();
  const dropThenParse = Buffer.concat([encodeParse('', 'deallocate all', NO_TYPES), bind('', []), EXECUTE, encodeParse('s2', TEXT, NO_TYPES), bind('s2', ['2']), EXECUTE, encodeSync()]);
  path.client.emit('data', dropThenParse);
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'parsed again on the server');
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, error('25P02'), ready('E')]));
  await path.settle();
  assert.equal(received(path), '1 2 E(25P02) Z(E)');
  assert.equal(path.primary.statements.size, 1, 'refused, and the Parse behind it skipped: the server holds what it held');
  path.client.emit('data', encodeQuery('rollback'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('ROLLBACK'), ready('I')]));
  path.client.emit('data', dropThenParse);
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeCommandComplete('DEALLOCATE ALL'), PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['2']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'C Z(I) 1 2 C 1 2 D C Z(I)');
  assert.equal(path.primary.statements.size, 1, 'dropped, then made again by the Parse behind it');
});

test('a request behind a DEALLOCATE ALL not answered yet waits for its answer', async () => {
  const path = await holdingS1();
  // Another name for the held text: its Parse is answered here only if the server still holds it then.
  path.client.emit('data', Buffer.concat([encodeQuery('begin'), encodeQuery('discard all'), encodeParse('s2', TEXT, NO_TYPES), bind('s2', ['2']), EXECUTE, encodeSync()]));
  assert.deepEqual(sent(path), Buffer.concat([encodeQuery('begin'), encodeQuery('discard all')]));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), ready('T'), error('25001'), ready('E')]));
  await path.settle();
  assert.ok(!sent(path).includes(Buffer.from(TEXT)), 'refused: the server holds it, the Parse is answered here');
});

test('behind a DISCARD ALL not answered yet, a request that uses no shared statement goes at once', async () => {
  const path = await holdingS1();
  // A driver resetting a reused connection: DISCARD ALL, then its next commands, in one write.
  path.client.emit('data', Buffer.concat([encodeQuery('discard all'), encodeQuery('select 2'), encodeParse('', 'select 3', NO_TYPES), bind('', []), EXECUTE, encodeSync(), encodeParse('s2', TEXT, NO_TYPES), bind('s2', ['4']), EXECUTE, encodeSync()]));
  const first = sent(path);
  assert.ok(first.includes(Buffer.from('select 2\0')) && first.includes(Buffer.from('select 3\0')), 'the simple Query and the unnamed statement went behind it');
  assert.ok(!first.includes(Buffer.from(TEXT)), 'the Parse of a shared statement waits: whether the server holds it depends on the answer');
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('DISCARD ALL'), ready('I'), encodeDataRow(['2']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['3']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'DISCARD ALL ran: the text is parsed again on the server');
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

test('a Parse of a name the client holds goes on as one the server refuses; the client gets 42P05 in place of the server’s error', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeSync()]));
  const first = sent(path);
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  received(path);
  path.client.emit('data', Buffer.concat([encodeParse('s1', 'select 2', NO_TYPES), bind('s1', ['2']), EXECUTE, encodeSync()]));
  const second = sent(path);
  assert.deepEqual(second.subarray(0, REFUSED_PARSE.length), REFUSED_PARSE);
  assert.ok(!second.includes(Buffer.from('select 2')), 'the new text goes nowhere');
  const renamed = first.subarray(first.indexOf(Buffer.from('pa_')), first.indexOf(0, first.indexOf(Buffer.from('pa_'))));
  assert.ok(second.includes(renamed), 'the Bind behind it still names the first text (skipped by the server)');
  path.primary.sink!.onServerData(Buffer.concat([error('42601'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(42P05) Z(I)');

  // In a failed transaction the server's own refusal (25P02) is the client's, as from Postgres.
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), ready('T')]));
  path.client.emit('data', encodeQuery('select 1/0'));
  path.primary.sink!.onServerData(Buffer.concat([error('22012'), ready('E')]));
  path.client.emit('data', Buffer.concat([encodeParse('s1', 'select 2', NO_TYPES), encodeSync()]));
  path.primary.sink!.onServerData(Buffer.concat([error('25P02'), ready('E')]));
  await path.settle();
  assert.equal(received(path), 'C Z(T) E(22012) Z(E) E(25P02) Z(E)');
});

test('a name whose Parse failed on the server, or whose server was lost before answering it, can be parsed again', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', 'select nothing from nowhere', NO_TYPES), bind('s1', []), EXECUTE, encodeSync()]));
  path.primary.sink!.onServerData(Buffer.concat([error('42P01'), ready('I')]));
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), bind('s1', ['1']), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from(TEXT)), 'parsed, not refused');
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, BIND_COMPLETE, encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(42P01) Z(I) 1 2 D C Z(I)');

  // The server is lost with the Parse unanswered: the client never got its ParseComplete.
  path.client.emit('data', Buffer.concat([encodeParse('s2', 'select 2', NO_TYPES), bind('s2', []), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from('select 2')));
  path.primary.statements.clear();
  path.primary.sink!.onServerClose();
  await path.settle();
  assert.match(received(path), /^E\(08\w+\) Z\(I\)$/);
  path.client.emit('data', Buffer.concat([encodeParse('s2', 'select 2', NO_TYPES), bind('s2', []), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from('select 2')), 'parsed again, not refused');

  // Lost after the ParseComplete, which was held back with the first answer (it might have run
  // elsewhere): dropped with it, so the client never heard of that statement either.
  path.primary.sink!.onServerData(PARSE_COMPLETE);
  path.primary.statements.clear();
  path.primary.sink!.onServerClose();
  await path.settle();
  assert.match(received(path), /^E\(08\w+\) Z\(I\)$/, 'no ParseComplete reached the client');
  path.client.emit('data', Buffer.concat([encodeParse('s2', 'select 2', NO_TYPES), bind('s2', []), EXECUTE, encodeSync()]));
  assert.ok(sent(path).includes(Buffer.from('select 2')), 'parsed again, not refused');
});

test('DEALLOCATE of a statement the client prepared through the protocol is answered without a server; the name is gone', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), encodeSync()]));
  await path.settle();
  assert.equal(received(path), '1 Z(I)', 'prepared without a server');
  path.client.emit('data', encodeQuery('DEALLOCATE s1'));
  await path.settle();
  assert.equal(received(path), 'C Z(I)');
  assert.equal(sent(path).length, 0, 'no server saw it');
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, encodeSync()]));
  assert.deepEqual(sent(path), Buffer.concat([bind('s1', ['1']), EXECUTE, encodeSync()]), 'a name the client does not hold goes as it came (26000)');
});

test('DEALLOCATE behind what fails the transaction waits for it, then goes to the server, which refuses it: the name stays', async () => {
  const path = await keeping();
  path.client.emit('data', Buffer.concat([encodeParse('s1', TEXT, NO_TYPES), encodeSync()]));
  path.client.emit('data', encodeQuery('begin'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('BEGIN'), ready('T')]));
  path.client.emit('data', Buffer.concat([encodeQuery('select 1/0'), encodeQuery('deallocate s1')]));
  assert.deepEqual(sent(path), Buffer.concat([encodeQuery('begin'), encodeQuery('select 1/0')]), 'the DEALLOCATE waits for the answer before it');
  path.primary.sink!.onServerData(Buffer.concat([error('22012'), ready('E')]));
  await path.settle();
  assert.deepEqual(sent(path), encodeQuery('deallocate s1'), 'in a failed transaction: the server answers it');
  path.primary.sink!.onServerData(Buffer.concat([error('25P02'), ready('E')]));
  path.client.emit('data', encodeQuery('rollback'));
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('ROLLBACK'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '1 Z(I) C Z(T) E(22012) Z(E) E(25P02) Z(E) C Z(I)');
  sent(path);
  path.client.emit('data', Buffer.concat([bind('s1', ['1']), EXECUTE, encodeSync()]));
  await path.settle(); // its statement is created on the server first (preparation)
  const bound = sent(path);
  assert.ok(bound.includes(Buffer.from('\0pa_')) && !bound.includes(Buffer.from('\0s1\0')), 'still the client’s: bound under its shared name');
});

test('a Bind of a name a DEALLOCATE ALL forgot, split across reads behind it, waits for its answer: refused, the name is the client’s again', async () => {
  const path = await holdingS1();
  const use = Buffer.concat([bind('s1', ['2']), EXECUTE, encodeSync()]);
  path.client.emit('data', Buffer.concat([encodeQuery('deallocate all'), use.subarray(0, 7)]));
  path.client.emit('data', use.subarray(7));
  const first = sent(path);
  assert.ok(first.includes(Buffer.from('deallocate all')), 'the drop went');
  assert.ok(!first.includes(Buffer.from('\0s1\0')) && !first.includes(Buffer.from('\0pa_')), 'the Bind waits for its answer');
  path.primary.sink!.onServerData(Buffer.concat([error('25P02'), ready('E')]));
  await path.settle();
  const after = sent(path);
  assert.ok(after.includes(Buffer.from('\0pa_')) && !after.includes(Buffer.from('\0s1\0')), 'then bound as the shared statement: the name came back');
  path.primary.sink!.onServerData(Buffer.concat([error('25P02'), ready('E')]));
  await path.settle();
  assert.equal(received(path), 'E(25P02) Z(E) E(25P02) Z(E)');
});

test('once every drop is answered, the names it forgot are no longer looked for in what the client sends', async () => {
  const path = await holdingS1();
  const builder = (path.client.forwarder as unknown as { requests: { forgetting: boolean } }).requests;
  path.client.emit('data', encodeQuery('discard all'));
  assert.equal(builder.forgetting, true);
  path.primary.sink!.onServerData(Buffer.concat([encodeCommandComplete('DISCARD ALL'), ready('I')]));
  await path.settle();
  path.client.emit('data', encodeQuery('select 1'));
  assert.equal(builder.forgetting, false, 'dropped at the next request');
});

test('a Parse of a held text that an error before it skipped made no name: the client parses it again without 42P05', async () => {
  const path = await holdingS1();
  // As pgx prepares a batch: a bad text, then one the server holds (its Parse answered here), one Sync.
  const describe = (name: string): Buffer => new MessageWriter().byte(0x53).cstring(name).finish(FrontendType.Describe);
  path.client.emit('data', Buffer.concat([encodeParse('bad', 'select nothing from nowhere', NO_TYPES), describe('bad'), encodeParse('s3', TEXT, NO_TYPES), describe('s3'), encodeSync()]));
  path.primary.sink!.onServerData(Buffer.concat([error('42P01'), ready('I')]));
  await path.settle();
  assert.equal(received(path), 'E(42P01) Z(I)', 'the held Parse is skipped with the rest');
  sent(path);
  path.client.emit('data', Buffer.concat([encodeParse('s3', TEXT, NO_TYPES), bind('s3', ['3']), EXECUTE, encodeSync()]));
  assert.ok(!sent(path).includes(REFUSED_PARSE.subarray(5)), 's3 was never made: not refused');
  path.primary.sink!.onServerData(Buffer.concat([BIND_COMPLETE, encodeDataRow(['3']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '1 2 D C Z(I)');
  // s1, made by a Parse of its own, is still the client's.
  path.client.emit('data', Buffer.concat([bind('s1', ['4']), EXECUTE, encodeSync()]));
  assert.ok(sent(path).length > 0);
  path.primary.sink!.onServerData(Buffer.concat([BIND_COMPLETE, encodeDataRow(['4']), encodeCommandComplete('SELECT 1'), ready('I')]));
  await path.settle();
  assert.equal(received(path), '2 D C Z(I)');
});

test('a statement the ambassador answers itself, sent behind an exchange left open, is answered once that exchange’s answers are in', async () => {
  const path = await keeping();
  const describe = new MessageWriter().byte(0x53).cstring('').finish(FrontendType.Describe);
  const flush = new MessageWriter().finish(FrontendType.Flush);
  path.client.emit('data', Buffer.concat([encodeParse('', TEXT, NO_TYPES), describe, flush]));
  assert.ok(sent(path).length > 0, 'the open exchange went to a server');
  path.client.emit('data', encodeQuery('show ambassador.route'));
  await path.settle();
  assert.equal(received(path), '', 'not before the answers in front of it');
  const parameters = new MessageWriter().int16(1).int32(23).finish(0x74);
  path.primary.sink!.onServerData(Buffer.concat([PARSE_COMPLETE, parameters, encodeTextRowDescription(['n'])]));
  await path.settle();
  assert.match(received(path), /^1 t T .*Z\([IT]\)$/, 'the exchange’s answers, then the SHOW’s, without another message from the server');
});
