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
  encodeAuthenticationMD5,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeNegotiateProtocolVersion,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../../../src/protocol/backend.ts';

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
