// The result shapes a client was shown, and the ones each server connection was seen to describe
// its statements with (result-shapes.ts): what is noted from a Describe's answer, when a Bind that
// relies on the client's description fails, and what a preparation's describes teach.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import { BackendType, decodeErrorFields, encodeErrorResponse, encodeTextRowDescription, NO_RESULT } from '../../../src/protocol/backend.ts';
import { decodeParse, encodeParse } from '../../../src/protocol/frontend.ts';
import { CACHED_PLAN_ERROR, isCachedPlanError, judgeShapes, learnShapes, noteDescribed, SHAPE_REFUSAL, shapeRefused, shapeUnverified } from '../../../src/frontend/result-shapes.ts';
import type { Item } from '../../../src/frontend/request-builder.ts';
import { clientStatement, madeStatement, touchStatement, type ClientStatement } from '../../../src/frontend/statements.ts';

function server(): BackendConnection {
  return { statements: new Map<string, number>(), staleStatements: new Set<string>(), statementShapes: new Map<string, string>() } as unknown as BackendConnection;
}

function statement(text = 'select * from t'): ClientStatement {
  const payload = encodeParse('s1', text, Buffer.from([0, 0])).subarray(5);
  return clientStatement(decodeParse(payload), payload);
}

/** A RowDescription of text columns: its type and payload, as noteDescribed takes them. */
function described(columns: string[]): [number, Buffer, number, number] {
  const payload = encodeTextRowDescription(columns).subarray(5);
  return [BackendType.RowDescription, payload, 0, payload.length];
}

test('the first answer to a Describe is the shape the client was shown; the server’s is noted too, and neither changes after', () => {
  const conn = server();
  const s1 = statement();
  assert.equal(s1.shape, null);
  noteDescribed(conn, s1, ...described(['a']));
  const shown = s1.shape;
  assert.notEqual(shown, null);
  assert.equal(conn.statementShapes.get(s1.serverName), shown);
  noteDescribed(conn, s1, ...described(['a', 'b']));
  assert.equal(s1.shape, shown, 'what the client was shown first stays');
  assert.equal(conn.statementShapes.get(s1.serverName), shown, 'a statement’s shape on a server does not change while it holds it');
  // On another server, its shape there is noted; the client's stays.
  const other = server();
  noteDescribed(other, s1, BackendType.NoData, Buffer.alloc(0), 0, 0);
  assert.equal(other.statementShapes.get(s1.serverName), NO_RESULT);
  assert.equal(s1.shape, shown);
  // Made again there, its shape is not known until described again.
  madeStatement(conn, s1.serverName);
  assert.equal(conn.statementShapes.has(s1.serverName), false);
});

test('a RowDescription that cannot be read notes nothing', () => {
  const conn = server();
  const s1 = statement();
  noteDescribed(conn, s1, BackendType.RowDescription, Buffer.from([0, 1, 0x61]), 0, 3);
  assert.equal(s1.shape, null);
  assert.equal(conn.statementShapes.size, 0);
});

test('a Bind relying on the client’s description: verified first where the server’s shape is unknown or another, refused once outdated, and from then on everywhere', () => {
  const s1 = statement();
  const conn = server();
  touchStatement(conn, s1.serverName);
  assert.equal(shapeUnverified(conn, s1), false, 'the client was shown nothing: nothing to check');
  assert.equal(shapeRefused(conn, s1), false);
  s1.shape = 'shown';
  assert.equal(shapeUnverified(conn, s1), true);
  assert.equal(shapeRefused(conn, s1), false, 'unknown: not refused (the preparation makes it anew and describes it first)');
  conn.statementShapes.set(s1.serverName, 'shown');
  assert.deepEqual([shapeUnverified(conn, s1), shapeRefused(conn, s1), s1.outdated], [false, false, false]);
  const changed = server();
  changed.statementShapes.set(s1.serverName, 'another');
  // The server's may be the one out of date (described there before DDL the client's Describe came after).
  assert.equal(shapeUnverified(changed, s1), true, 'another shape on the server: made anew and described, not refused on sight');
  assert.equal(shapeRefused(changed, s1), true, 'a Bind sent without that (inside a failed exchange, which skips it anyway) is refused');
  assert.equal(s1.outdated, true);
  assert.equal(shapeRefused(conn, s1), true, 'outdated: refused also where the server has the shape it was shown, as Postgres keeps failing it');
  assert.equal(shapeUnverified(server(), s1), false, 'an outdated statement needs no Describe anywhere');
});

test('judged after a preparation: a statement made anew whose fresh shape is another than the client was shown is outdated; the same shape is not', () => {
  const bindOf = (source: ClientStatement, relies = true): Item => ({ kind: 'bind', relies, source }) as unknown as Item;
  const old = statement();
  old.shape = 'old';
  const current = statement('select * from u');
  current.shape = 'new';
  const unread = statement('select * from v');
  unread.shape = 'new';
  const conn = server();
  conn.statementShapes.set(old.serverName, 'new').set(current.serverName, 'new').set(unread.serverName, 'new');
  judgeShapes(conn, { items: [bindOf(old), bindOf(current), bindOf(unread, false)] }, [old.serverName, current.serverName]);
  assert.deepEqual([old.outdated, current.outdated, unread.outdated], [true, false, false]);
  const other = statement('select * from w');
  other.shape = 'old';
  judgeShapes(conn, { items: [bindOf(other)] }, [old.serverName]);
  assert.equal(other.outdated, false, 'not described in that preparation: nothing judged');
});

test('the refusal is Postgres’s 0A000 with the routine postgres.js retries on, given in place of the server’s error to REFUSED_PARSE', () => {
  const fields = decodeErrorFields(CACHED_PLAN_ERROR.subarray(5));
  assert.deepEqual([fields.get('S'), fields.get('C'), fields.get('M'), fields.get('R')], ['ERROR', '0A000', 'cached plan must not change result type', 'RevalidateCachedQuery']);
  assert.ok(isCachedPlanError(CACHED_PLAN_ERROR.subarray(5)));
  assert.ok(SHAPE_REFUSAL.kind === 'parse' && SHAPE_REFUSAL.refusal === CACHED_PLAN_ERROR);
  assert.equal(isCachedPlanError(encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: 'something else' }).subarray(5)), false);
});

test('a preparation’s describes teach the server’s shapes, the last answers of its exchange (a settings replay may return rows before them)', () => {
  const conn = server();
  learnShapes(conn, ['pa_x', 'pa_y'], ['1\0set_config\x0025\0-1', 'x shape', 'y shape'], null);
  assert.deepEqual([...conn.statementShapes], [['pa_x', 'x shape'], ['pa_y', 'y shape']]);
  // Missing or unreadable: known as a shape no client was shown (judged: refused, not described again and again).
  const s1 = statement();
  noteDescribed(server(), s1, ...described(['a']));
  const broken = server();
  learnShapes(broken, ['pa_x', s1.serverName], [null], null);
  assert.deepEqual([shapeUnverified(broken, s1), shapeRefused(broken, s1)], [true, true]);
});

test('a preparation failed on 0A000: the statements it described that the server held are outdated there (closed and made again next time)', () => {
  const conn = server();
  touchStatement(conn, 'pa_held');
  conn.statementShapes.set('pa_held', 'old');
  learnShapes(conn, ['pa_held', 'pa_made'], [], CACHED_PLAN_ERROR.subarray(5));
  assert.deepEqual([conn.statements.has('pa_held'), conn.staleStatements.has('pa_held'), conn.statementShapes.has('pa_held')], [false, true, false]);
  assert.equal(conn.staleStatements.has('pa_made'), false, 'not held: nothing to close');
  // Another error teaches nothing.
  const other = server();
  touchStatement(other, 'pa_held');
  learnShapes(other, ['pa_held'], ['shape'], encodeErrorResponse({ severity: 'ERROR', code: '42703', message: 'column does not exist' }).subarray(5));
  assert.deepEqual([other.statements.has('pa_held'), other.statementShapes.size], [true, 0]);
});
