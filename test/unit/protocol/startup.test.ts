import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serialize } from 'pg-protocol';
import {
  decodeStartupPacket,
  encodeCancelRequest,
  encodeSslRequest,
  encodeStartupMessage,
  StartupError,
  StartupReader,
  type StartupPacket,
} from '../../../src/protocol/startup.ts';

function readAll(parts: Buffer[]): { packet: StartupPacket; rest: Buffer } | null {
  const reader = new StartupReader();
  let out: { packet: StartupPacket; rest: Buffer } | null = null;
  for (const part of parts) out = reader.push(part) ?? out;
  return out;
}

test('a StartupMessage built by pg-protocol decodes at every split point', () => {
  const packet = serialize.startup({ user: 'app', database: 'appdb', application_name: 'psql', options: '-c search_path=x' });
  for (let i = 0; i <= packet.length; i++) {
    const result = readAll([packet.subarray(0, i), packet.subarray(i)]);
    assert.ok(result, `split at ${i}`);
    assert.equal(result.packet.kind, 'startup');
    if (result.packet.kind !== 'startup') return;
    assert.equal(result.packet.major, 3);
    assert.equal(result.packet.minor, 0);
    assert.deepEqual(Object.fromEntries(result.packet.params), {
      user: 'app',
      database: 'appdb',
      application_name: 'psql',
      options: '-c search_path=x',
      client_encoding: 'UTF8',
    });
    assert.equal(result.rest.length, 0);
  }
});

test('our own encoder round-trips and pg-protocol agrees byte for byte', () => {
  const ours = encodeStartupMessage([['user', 'u'], ['database', 'd']]);
  const theirs = serialize.startup({ user: 'u', database: 'd' });
  const decoded = decodeStartupPacket(ours);
  assert.equal(decoded.kind, 'startup');
  // pg-protocol adds client_encoding; compare the common prefix layout instead of raw bytes.
  assert.equal(ours.readInt32BE(4), theirs.readInt32BE(4));
  assert.deepEqual(decoded.kind === 'startup' && Object.fromEntries(decoded.params), { user: 'u', database: 'd' });
});

test('SSLRequest, GSSENCRequest and CancelRequest are recognised; bytes after them are returned as rest', () => {
  const ssl = encodeSslRequest();
  assert.deepEqual(readAll([ssl])?.packet, { kind: 'ssl' });
  const trailing = readAll([Buffer.concat([ssl, Buffer.from('hello')])]);
  assert.equal(trailing?.rest.toString(), 'hello');
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(80877104, 4);
  assert.deepEqual(readAll([gss])?.packet, { kind: 'gssenc' });
  const key = Buffer.from([1, 2, 3, 4]);
  const cancel = readAll([encodeCancelRequest(4242, key)])?.packet;
  assert.deepEqual(cancel, { kind: 'cancel', processId: 4242, secretKey: key });
});

test('lengths 0, 7, negative, 2^31-1 and over the limit are rejected before buffering', () => {
  for (const length of [0, 1, 7, -1, 0x7fffffff, 10001]) {
    const header = Buffer.alloc(8);
    header.writeInt32BE(length, 0);
    header.writeInt32BE(196608, 4);
    assert.throws(
      () => new StartupReader().push(header),
      (err: unknown) => err instanceof StartupError && err.reason === 'invalid-length',
      `length ${length}`,
    );
  }
});

test('unknown protocol versions are refused with the supported range', () => {
  for (const [major, minor] of [[1, 0], [2, 0], [4, 0], [0, 0], [5, 1]]) {
    const packet = Buffer.alloc(9);
    packet.writeInt32BE(9, 0);
    packet.writeInt32BE((major! << 16) | minor!, 4);
    assert.throws(
      () => decodeStartupPacket(packet),
      (err: unknown) => err instanceof StartupError && err.reason === 'unsupported-protocol' && /3\.0/.test(err.message),
      `${major}.${minor}`,
    );
  }
});

test('protocol 3.x minors are accepted and _pq_ options collected for negotiation', () => {
  const body = Buffer.from('user\0u\0_pq_.test\0x\0\0');
  const packet = Buffer.alloc(8 + body.length);
  packet.writeInt32BE(packet.length, 0);
  packet.writeInt32BE((3 << 16) | 2, 4);
  body.copy(packet, 8);
  const decoded = decodeStartupPacket(packet);
  assert.equal(decoded.kind === 'startup' && decoded.minor, 2);
  assert.deepEqual(decoded.kind === 'startup' && decoded.protocolOptions, ['_pq_.test']);
});

test('malformed parameter lists are refused', () => {
  const cases = ['user\0u\0', 'user\0', 'user', 'user\0u\0x\0\0', 'user\0u\0\0extra'];
  for (const body of cases) {
    const b = Buffer.from(body);
    const packet = Buffer.alloc(8 + b.length);
    packet.writeInt32BE(packet.length, 0);
    packet.writeInt32BE(196608, 4);
    b.copy(packet, 8);
    assert.throws(() => decodeStartupPacket(packet), StartupError, JSON.stringify(body));
  }
});

test('a packet with 10,000 parameters is refused (by length or count)', () => {
  const params: Array<[string, string]> = [];
  for (let i = 0; i < 10_000; i++) params.push([`p${i}`, 'v']);
  const packet = encodeStartupMessage(params);
  assert.throws(() => new StartupReader().push(packet), StartupError);
  assert.throws(() => new StartupReader({ maxPacketSize: 1 << 30, maxParameters: 1000 }).push(packet), (err: unknown) => err instanceof StartupError && err.reason === 'too-many-parameters');
});

test('cancel requests with bad lengths are refused', () => {
  const short = Buffer.alloc(12);
  short.writeInt32BE(12, 0);
  short.writeInt32BE(80877102, 4);
  assert.throws(() => decodeStartupPacket(short), StartupError);
});
