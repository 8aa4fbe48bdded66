import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Parser } from 'pg-protocol/dist/parser.js';
import { ALL_TYPES, Framer } from '../../../src/protocol/framer.ts';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeErrorFields,
  decodeParameterStatus,
  decodeReadyForQuery,
  decodeResultShape,
  encodeAuthenticationMD5,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeNegotiateProtocolVersion,
  encodeParameterStatus,
  encodeReadyForQuery,
  encodeTextRowDescription,
  NO_RESULT,
} from '../../../src/protocol/backend.ts';
import { MessageWriter } from '../../../src/protocol/writer.ts';

/**
 * Parses our encoded bytes whole with pg-protocol (node-postgres's own parser), and checks that
 * our framer sees the same message boundaries at every split point.
 */
function parseEverySplit(bytes: Buffer): BackendMessage[] {
  const got: BackendMessage[] = [];
  new Parser().parse(bytes, (m) => got.push(JSON.parse(JSON.stringify({ ...m, message: (m as { message?: string }).message })) as BackendMessage));
  const whole: string[] = [];
  new Framer(1 << 20, ALL_TYPES).push(bytes, (type, payload) => void whole.push(`${type}:${payload!.toString('hex')}`));
  assert.equal(whole.length, got.length);
  for (let i = 0; i <= bytes.length; i++) {
    const framer = new Framer(1 << 20, ALL_TYPES);
    const split: string[] = [];
    const onMessage = (type: number, payload: Buffer | null): void => void split.push(`${type}:${payload!.toString('hex')}`);
    framer.push(bytes.subarray(0, i), onMessage);
    framer.push(bytes.subarray(i), onMessage);
    assert.deepEqual(split, whole, `split at ${i}`);
  }
  return got;
}

test('ErrorResponse is read by node-postgres with every field', () => {
  const bytes = encodeErrorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "x"', detail: 'd', hint: 'h' });
  const [m] = parseEverySplit(bytes) as unknown as Array<Record<string, string>>;
  assert.equal(m!.name, 'error');
  assert.equal(m!.severity, 'FATAL');
  assert.equal(m!.code, '28P01');
  assert.equal(m!.message, 'password authentication failed for user "x"');
  assert.equal(m!.detail, 'd');
  assert.equal(m!.hint, 'h');
  const fields = decodeErrorFields(bytes.subarray(5));
  assert.equal(fields.get('C'), '28P01');
  assert.equal(fields.get('V'), 'FATAL');
});

test('the routine field (R) reaches node-postgres: postgres.js retries a prepared query on RevalidateCachedQuery', () => {
  const bytes = encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: 'cached plan must not change result type', routine: 'RevalidateCachedQuery' });
  const [m] = parseEverySplit(bytes) as unknown as Array<Record<string, string>>;
  assert.equal(m!.routine, 'RevalidateCachedQuery');
  assert.equal(decodeErrorFields(bytes.subarray(5)).get('R'), 'RevalidateCachedQuery');
  assert.equal(decodeErrorFields(encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: 'm' }).subarray(5)).has('R'), false, 'none unless given');
});

interface Column {
  name: string;
  table?: number;
  attnum?: number;
  oid: number;
  size?: number;
  typmod?: number;
  format?: number;
}

/** A RowDescription's payload, with every field a server fills in. */
function rowDescription(columns: readonly Column[]): Buffer {
  const w = new MessageWriter().int16(columns.length);
  for (const c of columns) w.cstring(c.name).int32(c.table ?? 16_384).int16(c.attnum ?? 1).int32(c.oid).int16(c.size ?? 4).int32(c.typmod ?? -1).int16(c.format ?? 0);
  return w.finish(0x54).subarray(5);
}

test('a result shape is the columns’ names, types and type modifiers, in order: nothing else of a RowDescription counts', () => {
  const shape = decodeResultShape(rowDescription([{ name: 'a', oid: 23 }, { name: 'b', oid: 1043, typmod: 14 }]));
  assert.equal(typeof shape, 'string');
  // A portal's description (binary formats), or the same columns read from another table or position.
  assert.equal(decodeResultShape(rowDescription([{ name: 'a', oid: 23, table: 1, attnum: 7, format: 1 }, { name: 'b', oid: 1043, typmod: 14, table: 2, size: -1, format: 1 }])), shape);
  for (const [why, columns] of [
    ['a column added', [{ name: 'a', oid: 23 }, { name: 'b', oid: 1043, typmod: 14 }, { name: 'c', oid: 23 }]],
    ['a column dropped', [{ name: 'a', oid: 23 }]],
    ['a type changed', [{ name: 'a', oid: 20 }, { name: 'b', oid: 1043, typmod: 14 }]],
    ['a type modifier changed', [{ name: 'a', oid: 23 }, { name: 'b', oid: 1043, typmod: 24 }]],
    ['a column renamed', [{ name: 'a', oid: 23 }, { name: 'c', oid: 1043, typmod: 14 }]],
    ['columns swapped', [{ name: 'b', oid: 1043, typmod: 14 }, { name: 'a', oid: 23 }]],
  ] as const) {
    assert.notEqual(decodeResultShape(rowDescription(columns)), shape, why);
  }
  // Names are bytes: one that is not UTF-8, or holds the separator's neighbours, still tells shapes apart.
  assert.notEqual(decodeResultShape(rowDescription([{ name: 'aé', oid: 23 }])), decodeResultShape(rowDescription([{ name: 'aè', oid: 23 }])));
  assert.notEqual(decodeResultShape(rowDescription([{ name: '1', oid: 23 }])), decodeResultShape(rowDescription([{ name: '', oid: 123 }])));
  // No columns (SELECT;) is a result, NoData is none.
  assert.notEqual(decodeResultShape(rowDescription([])), NO_RESULT);
  assert.equal(decodeResultShape(encodeTextRowDescription(['x']).subarray(5)), decodeResultShape(rowDescription([{ name: 'x', oid: 25, size: -1, table: 0, attnum: 0 }])));
});

test('a result shape is read in place from its range of a chunk, and a malformed RowDescription has none', () => {
  const payload = rowDescription([{ name: 'abc', oid: 23 }, { name: 'd', oid: 25 }]);
  const shape = decodeResultShape(payload);
  const chunk = Buffer.concat([Buffer.from([1, 2, 0]), payload, Buffer.from([0, 9, 9])]);
  assert.equal(decodeResultShape(chunk, 3, 3 + payload.length), shape);
  // Cut short at every byte (the name's NUL outside the range does not count), or with bytes to spare.
  for (let to = 0; to < payload.length; to++) assert.equal(decodeResultShape(chunk, 3, 3 + to), null, `cut at ${to}`);
  assert.equal(decodeResultShape(Buffer.concat([payload, Buffer.from([0])])), null);
  const fewer = Buffer.from(payload);
  fewer.writeUInt16BE(1, 0);
  assert.equal(decodeResultShape(fewer), null, 'a column count that does not match the columns');
});

test('NULs inside error text are dropped rather than ending the field early', () => {
  const bytes = encodeErrorResponse({ severity: 'ERROR', code: '08P01', message: 'a\0b' });
  assert.equal(decodeErrorFields(bytes.subarray(5)).get('M'), 'ab');
});

test('authentication requests, status, key data and ReadyForQuery round-trip through node-postgres', () => {
  const salt = Buffer.from([1, 2, 3, 4]);
  const bytes = Buffer.concat([
    encodeAuthenticationMD5(salt),
    encodeAuthenticationSASL(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']),
    encodeAuthenticationSASLContinue(Buffer.from('r=abc,s=xyz,i=4096')),
    encodeAuthenticationOk(),
    encodeParameterStatus('server_version', '15.4'),
    encodeBackendKeyData(1234, -5678),
    encodeReadyForQuery('T'),
  ]);
  const names = parseEverySplit(bytes).map((m) => m.name);
  assert.deepEqual(names, [
    'authenticationMD5Password',
    'authenticationSASL',
    'authenticationSASLContinue',
    'authenticationOk',
    'parameterStatus',
    'backendKeyData',
    'readyForQuery',
  ]);
  assert.deepEqual(decodeAuthentication(encodeAuthenticationMD5(salt).subarray(5)), { code: 5, salt });
  const parsedSalt = (parseEverySplit(encodeAuthenticationMD5(salt))[0] as unknown as { salt: { data: number[] } }).salt.data;
  assert.deepEqual(parsedSalt, [1, 2, 3, 4]);
  assert.deepEqual(decodeAuthentication(encodeAuthenticationSASL(['SCRAM-SHA-256']).subarray(5)), { code: 10, mechanisms: ['SCRAM-SHA-256'] });
  assert.deepEqual(decodeParameterStatus(encodeParameterStatus('a', 'b').subarray(5)), { name: 'a', value: 'b' });
  assert.deepEqual(decodeBackendKeyData(encodeBackendKeyData(7, 9).subarray(5)).processId, 7);
  assert.equal(decodeReadyForQuery(encodeReadyForQuery('E').subarray(5)), 'E');
});

test('ReadyForQuery read in place: only the status byte of its range counts, whatever lies around it', () => {
  // Z messages side by side, as in a server's chunk: each read by its payload's range.
  const chunk = Buffer.concat([encodeReadyForQuery('T'), encodeReadyForQuery('I'), encodeReadyForQuery('E')]);
  assert.deepEqual([5, 11, 17].map((from) => decodeReadyForQuery(chunk, from, from + 1)), ['T', 'I', 'E']);
  // A range of two bytes or none is no status, even where the bytes around hold one.
  assert.throws(() => decodeReadyForQuery(chunk, 5, 7), RangeError);
  assert.throws(() => decodeReadyForQuery(chunk, 5, 5), RangeError);
  assert.throws(() => decodeReadyForQuery(Buffer.from('ZX'), 1, 2), /invalid transaction status 'X'/);
});

test('NegotiateProtocolVersion carries the newest minor and the unsupported options', () => {
  const m = encodeNegotiateProtocolVersion(0, ['_pq_.a', '_pq_.b']);
  assert.equal(String.fromCharCode(m[0]!), 'v');
  assert.equal(m.readInt32BE(1), m.length - 1);
  assert.equal(m.readInt32BE(5), 3 << 16);
  assert.equal(m.readInt32BE(9), 2);
  assert.equal(m.subarray(13).toString(), '_pq_.a\0_pq_.b\0');
});

test('malformed server messages throw RangeError, never crash differently', () => {
  assert.throws(() => decodeAuthentication(Buffer.alloc(2)), RangeError);
  assert.throws(() => decodeAuthentication(Buffer.from([0, 0, 0, 5, 1])), RangeError);
  assert.throws(() => decodeParameterStatus(Buffer.from('abc')), RangeError);
  assert.throws(() => decodeBackendKeyData(Buffer.alloc(3)), RangeError);
  assert.throws(() => decodeReadyForQuery(Buffer.from('X')), RangeError);
  assert.throws(() => decodeReadyForQuery(Buffer.alloc(0)), RangeError);
  const sasl = Buffer.alloc(4);
  sasl.writeInt32BE(10, 0);
  assert.throws(() => decodeAuthentication(sasl), RangeError);
  assert.deepEqual(decodeAuthentication(Buffer.from([0, 0, 0, 99])), { code: 99, unsupported: true });
});
