// What a client is told when the server of its request dies: the loss as an ERROR (08006, or the
// server's own FATAL code) and, for a transaction block that was open, the answers of an aborted
// transaction until ROLLBACK or COMMIT ends it, in both protocols. Requests come from a real
// RequestBuilder; answers are decoded message by message.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { answerInLostTransaction, endsSession, lostServerError } from '../../../src/frontend/lost-transaction.ts';
import { RequestBuilder, type Request } from '../../../src/frontend/request-builder.ts';
import { decodeErrorFields, decodeReadyForQuery, encodeErrorResponse } from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter, PayloadReader } from '../../../src/protocol/writer.ts';
import { SessionEffectsCache } from '../../../src/router/session-effects.ts';

const builder = new RequestBuilder(new SessionEffectsCache());

function request(...messages: Buffer[]): Request {
  const done: Request[] = [];
  for (const message of messages) {
    const result = builder.add(message[0]!, message.subarray(5));
    if (result !== null && result !== 'terminate' && result !== 'wait') done.push(result);
  }
  assert.equal(done.length, 1, 'test: the messages make exactly one request');
  return done[0]!;
}

const bind = (portal: string, statement: string): Buffer =>
  new MessageWriter().cstring(portal).cstring(statement).int16(0).int16(0).int16(0).finish(FrontendType.Bind);
const execute = (portal: string): Buffer => new MessageWriter().cstring(portal).int32(0).finish(FrontendType.Execute);
const flush = (): Buffer => new MessageWriter().finish(FrontendType.Flush);
const parse = (name: string, sql: string): Buffer => encodeParse(name, sql, Buffer.from([0, 0]));

/** Each message as its type letter, with the tag, status or SQLSTATE it carries. */
function messages(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const type = String.fromCharCode(bytes[offset]!);
    const length = bytes.readInt32BE(offset + 1);
    const payload = bytes.subarray(offset + 5, offset + 1 + length);
    offset += 1 + length;
    if (type === 'C') out.push(`C:${new PayloadReader(payload).cstring()}`);
    else if (type === 'Z') out.push(`Z:${decodeReadyForQuery(payload)}`);
    else if (type === 'E') out.push(`E:${decodeErrorFields(payload).get('C')}`);
    else out.push(type);
  }
  return out;
}

test('ROLLBACK, ABORT, COMMIT, END as a simple Query end the lost transaction', () => {
  for (const sql of ['ROLLBACK', 'abort;', ' commit work ', 'END TRANSACTION', 'rollback and no chain']) {
    const answer = answerInLostTransaction(request(encodeQuery(sql)), null);
    assert.deepEqual(messages(answer.bytes), ['C:ROLLBACK', 'Z:I'], sql);
    assert.equal(answer.status, 'I');
    assert.equal(answer.skipToSync, false);
  }
});

test('ROLLBACK in the extended protocol gets every acknowledgement a server sends', () => {
  const answer = answerInLostTransaction(
    request(parse('', 'ROLLBACK'), bind('', ''), encodeTarget(FrontendType.Describe, 'P', ''), execute(''), encodeSync()),
    null,
  );
  assert.deepEqual(messages(answer.bytes), ['1', '2', 'n', 'C:ROLLBACK', 'Z:I']);
  assert.equal(answer.status, 'I');

  builder.add(FrontendType.Parse, parse('end_tx', 'COMMIT').subarray(5));
  builder.add(FrontendType.Sync, encodeSync().subarray(5));
  const named = answerInLostTransaction(request(bind('', 'end_tx'), execute(''), encodeSync()), null);
  assert.deepEqual(messages(named.bytes), ['2', 'C:ROLLBACK', 'Z:I'], 'a prepared COMMIT ends it too');
});

test('anything else is refused with 25P02 and the transaction stays aborted', () => {
  for (const sql of ['SELECT 1', 'INSERT INTO t VALUES (1)', 'ROLLBACK TO SAVEPOINT a', 'ROLLBACK AND CHAIN', 'COMMIT; SELECT 1']) {
    const answer = answerInLostTransaction(request(encodeQuery(sql)), null);
    assert.deepEqual(messages(answer.bytes), ['E:25P02', 'Z:E'], sql);
    assert.equal(answer.status, 'E');
  }
  const extended = answerInLostTransaction(request(parse('', 'SELECT 1'), bind('', ''), execute(''), encodeSync()), null);
  assert.deepEqual(messages(extended.bytes), ['E:25P02', 'Z:E']);
});

test('a request without Sync gets the error and the rest is skipped up to Sync', () => {
  const answer = answerInLostTransaction(request(parse('', 'SELECT 1'), bind('', ''), execute(''), flush()), null);
  assert.deepEqual(messages(answer.bytes), ['E:25P02']);
  assert.equal(answer.skipToSync, true);
  assert.equal(answer.status, 'E');
});

test('the first request after the loss hears of the loss itself rather than 25P02', () => {
  const loss = lostServerError('db1:5432', null, true);
  const answer = answerInLostTransaction(request(encodeQuery('SELECT 1')), loss);
  assert.deepEqual(messages(answer.bytes), ['E:08006', 'Z:E']);
});

test('a COMMIT or END the client sends before it heard of the loss fails with the loss, and the transaction is over', () => {
  const loss = lostServerError('db1:5432', null, true);
  for (const sql of ['COMMIT', 'commit;', 'END', 'end transaction', 'COMMIT WORK AND NO CHAIN']) {
    const answer = answerInLostTransaction(request(encodeQuery(sql)), loss);
    assert.deepEqual(messages(answer.bytes), ['E:08006', 'Z:I'], sql);
    assert.equal(answer.status, 'I', sql);
  }
  const extended = answerInLostTransaction(request(parse('', 'COMMIT'), bind('', ''), execute(''), encodeSync()), loss);
  assert.deepEqual(messages(extended.bytes), ['E:08006', 'Z:I']);
  const unsynced = answerInLostTransaction(request(parse('', 'COMMIT'), bind('', ''), execute(''), flush()), loss);
  assert.deepEqual(messages(unsynced.bytes), ['E:08006'], 'no Sync yet: the rest is skipped up to it');
  assert.equal(unsynced.skipToSync, true);
  assert.equal(unsynced.status, 'I', 'its Sync then answers ReadyForQuery I');
});

test('a ROLLBACK the client sends before it heard of the loss succeeds quietly: nothing it wanted kept is lost', () => {
  const loss = lostServerError('db1:5432', null, true);
  for (const sql of ['ROLLBACK', 'abort', 'rollback transaction']) {
    const answer = answerInLostTransaction(request(encodeQuery(sql)), loss);
    assert.deepEqual(messages(answer.bytes), ['C:ROLLBACK', 'Z:I'], sql);
    assert.equal(answer.status, 'I');
  }
});

test('COMMIT AND CHAIN and PREPARE TRANSACTION after the loss get it, and the block stays aborted until ROLLBACK', () => {
  const loss = lostServerError('db1:5432', null, true);
  for (const sql of ['COMMIT AND CHAIN', "PREPARE TRANSACTION 'tx1'"]) {
    const answer = answerInLostTransaction(request(encodeQuery(sql)), loss);
    assert.deepEqual(messages(answer.bytes), ['E:08006', 'Z:E'], sql);
    assert.equal(answer.status, 'E', sql);
  }
});

test('the loss is an ERROR: 08006, or the code and message of the FATAL the server sent', () => {
  const plain = decodeErrorFields(lostServerError('db1:5432', null, false).subarray(5));
  assert.equal(plain.get('S'), 'ERROR');
  assert.equal(plain.get('C'), '08006');
  assert.match(plain.get('M') ?? '', /db1:5432 was lost/);
  assert.match(plain.get('D') ?? '', /may or may not have completed/);

  const fatal = encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' });
  const told = decodeErrorFields(lostServerError('db1:5432', fatal.subarray(5), true).subarray(5));
  assert.equal(told.get('S'), 'ERROR');
  assert.equal(told.get('C'), '57P01');
  assert.match(told.get('M') ?? '', /^terminating connection due to administrator command \(server db1:5432\)$/);
  assert.match(told.get('D') ?? '', /ROLLBACK/);
});

test('endsSession: FATAL and PANIC end the server session, ERROR does not', () => {
  assert.equal(endsSession(encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'x' }).subarray(5)), true);
  assert.equal(endsSession(encodeErrorResponse({ severity: 'PANIC', code: 'XX000', message: 'x' }).subarray(5)), true);
  assert.equal(endsSession(encodeErrorResponse({ severity: 'ERROR', code: '42601', message: 'x' }).subarray(5)), false);
});
