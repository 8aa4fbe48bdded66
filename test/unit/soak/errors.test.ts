// Which errors the soak expects: lost connections during a replica restart (and a grace period
// after it); never wrong answers, hangs, stray server errors or other SQLSTATEs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  classifyError, errorKey, ErrorLog, expectEqual, isLostConnection, onlyRow, OperationTimeout, overlapsAny, StrayServerError, WrongAnswer,
} from '../../../soak/errors.ts';

function serverError(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

test('lost connections: SQLSTATE class 08, 57P01-57P03, and the drivers\' closed-connection errors', () => {
  for (const code of ['08006', '08001', '08003', '57P01', '57P02', '57P03']) assert.equal(isLostConnection(serverError(code)), true, code);
  for (const code of ['42P01', '53300', '25P02', '57014', '40001']) assert.equal(isLostConnection(serverError(code)), false, code);
  assert.equal(isLostConnection(new Error('Connection terminated unexpectedly')), true);
  assert.equal(isLostConnection(Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), { code: 'CONNECTION_CLOSED' })), true);
  assert.equal(isLostConnection(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), true);
  assert.equal(isLostConnection(new Error('Client has encountered a connection error and is not queryable')), false, 'a client broken while idle');
  assert.equal(isLostConnection(new WrongAnswer('Connection terminated')), false);
  assert.equal(isLostConnection(new OperationTimeout('ECONNRESET')), false);
  assert.equal(isLostConnection(new StrayServerError({ severity: 'FATAL', code: '57P01', message: 'terminating connection' })), false);
  assert.equal(isLostConnection(new Error('syntax error')), false);
});

test('restart windows: an operation overlapping one (or its grace period after) matches; an open window runs on', () => {
  const windows = [{ fromMs: 1000, toMs: 2000 }];
  assert.equal(overlapsAny(windows, 500, 999, 100), false, 'ended before');
  assert.equal(overlapsAny(windows, 500, 1000, 100), true, 'ends as the restart starts');
  assert.equal(overlapsAny(windows, 1500, 1600, 0), true, 'inside');
  assert.equal(overlapsAny(windows, 2050, 2060, 100), true, 'inside the grace');
  assert.equal(overlapsAny(windows, 2101, 2200, 100), false, 'after the grace');
  assert.equal(overlapsAny([{ fromMs: 1000, toMs: null }], 900_000, 900_001, 0), true, 'still down');
  assert.equal(overlapsAny([], 0, 1e12, 1e12), false);
});

test('expected only when both: a lost connection, during a restart', () => {
  const context = { startMs: 1500, endMs: 1600, restarts: [{ fromMs: 1000, toMs: 2000 }], graceMs: 0 };
  assert.equal(classifyError(serverError('57P01'), context), 'expected');
  assert.equal(classifyError(serverError('57P01'), { ...context, restarts: [] }), 'unexpected');
  assert.equal(classifyError(serverError('42703'), context), 'unexpected');
  assert.equal(classifyError(new WrongAnswer('sum'), context), 'unexpected');
});

test('error keys group by code and message without numbers; the log counts and orders them', () => {
  assert.equal(errorKey(serverError('08006', 'server 127.0.0.1:5433 closed the connection')), '08006: server N.N.N.N:N closed the connection');
  assert.equal(errorKey(new WrongAnswer('add: sum: expected 3, got 4\nmore')), 'WrongAnswer: add: sum: expected N, got N');
  assert.equal(
    errorKey(new StrayServerError({ severity: 'FATAL', code: '57P01', message: 'terminating connection' })),
    'STRAY: the client received FATAL 57P01 "terminating connection" with no query running, and is unusable',
    'SQLSTATEs keep their digits',
  );
  const log = new ErrorLog();
  log.add('short', 'expected', 'a', 1);
  log.add('short', 'expected', 'a', 5);
  log.add('short', 'expected', 'a', 7);
  log.add('long-txn', 'unexpected', 'b', 3, 'stack');
  log.add('short', 'expected', 'c', 4);
  assert.deepEqual(log.entries(), [
    { kind: 'long-txn', outcome: 'unexpected', key: 'b', count: 1, firstS: 3, lastS: 3, example: 'stack' },
    { kind: 'short', outcome: 'expected', key: 'a', count: 3, firstS: 1, lastS: 7, example: null },
    { kind: 'short', outcome: 'expected', key: 'c', count: 1, firstS: 4, lastS: 4, example: null },
  ]);
});

test('answer checks throw WrongAnswer', () => {
  expectEqual(3, 3, 'sum');
  assert.throws(() => expectEqual(3, '3', 'sum'), (error: unknown) => error instanceof WrongAnswer && /sum: expected "3", got 3/.test(error.message));
  assert.deepEqual(onlyRow([{ a: 1 }], 'x'), { a: 1 });
  assert.throws(() => onlyRow([], 'x'), /x: expected 1 row, got 0/);
  assert.throws(() => onlyRow(undefined, 'x'), /x: expected one result with rows, got several results/);
});
