// Bind names read with a NameCache: the same text as a plain decode, whatever the bytes, and a
// name that comes again read without decoding its bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeBindNames, decodeTarget, NameCache } from '../../../src/protocol/frontend.ts';

/** A Bind payload: portal, statement, then no parameters and no result formats. */
function bindPayload(portal: Buffer, statement: Buffer): Buffer {
  return Buffer.concat([portal, Buffer.from([0]), statement, Buffer.from([0, 0, 0, 0, 0, 0, 0])]);
}

/** `payload`, made to fail if anything decodes it (a name read again must not be). */
function undecodable(payload: Buffer): Buffer {
  payload.toString = () => assert.fail('test: the name was decoded again');
  return payload;
}

test('a statement name read again is not decoded again; different names are told apart', () => {
  const names = new NameCache();
  const first = decodeBindNames(bindPayload(Buffer.alloc(0), Buffer.from('P0_1')), names);
  const again = decodeBindNames(undecodable(bindPayload(Buffer.alloc(0), Buffer.from('P0_1'))), names);
  assert.equal(first.statement, 'P0_1');
  assert.equal(again.statement, 'P0_1');
  assert.equal(again.portalEnd, 0);
  assert.equal(again.restOffset, 6);
  // Same length and last byte (the same slot): compared byte by byte.
  assert.equal(decodeBindNames(bindPayload(Buffer.alloc(0), Buffer.from('Q0_1')), names).statement, 'Q0_1');
  assert.equal(decodeBindNames(bindPayload(Buffer.alloc(0), Buffer.from('P0_2')), names).statement, 'P0_2');
  assert.equal(decodeBindNames(bindPayload(Buffer.from('portal'), Buffer.from('P0_1')), names).statement, 'P0_1');
  assert.equal(decodeBindNames(bindPayload(Buffer.alloc(0), Buffer.alloc(0)), names).statement, '');
});

test('names that are not ASCII, or not valid UTF-8, read as a plain decode reads them, every time', () => {
  const names = new NameCache();
  const samples = [
    Buffer.from('stmt_é'),
    Buffer.from([0x73, 0xff, 0x74]), // not UTF-8: U+FFFD in the middle
    Buffer.from([0x73, 0xc3, 0xa9]), // 'sé'
    Buffer.from([0x73, 0xc3, 0x29]), // a broken sequence
    Buffer.from('日本'),
  ];
  for (let round = 0; round < 3; round++) {
    for (const bytes of samples) {
      assert.equal(decodeBindNames(bindPayload(Buffer.alloc(0), bytes), names).statement, bytes.toString('utf8'), bytes.toString('hex'));
    }
  }
});

test('a name of Latin-1 letters is not kept: their bytes (invalid UTF-8) would compare equal to its characters', () => {
  const names = new NameCache();
  // 'é' x 16 then 'a' is 33 bytes; the 17 bytes E9 x 16, 61 land in the same slot.
  const latin = Buffer.from(`${'é'.repeat(16)}a`);
  const raw = Buffer.from([...Array<number>(16).fill(0xe9), 0x61]);
  assert.equal(names.read(latin, 0, latin.length), `${'é'.repeat(16)}a`);
  assert.equal(names.read(raw, 0, raw.length), `${'\ufffd'.repeat(16)}a`);
});

test('against a plain decode: random names from a small alphabet of ASCII and other bytes', () => {
  const names = new NameCache();
  const alphabet = [0x61, 0x62, 0x5f, 0x31, 0x41, 0xc3, 0xa9, 0xff, 0x80, 0xe6, 0x97, 0xa5];
  let seed = 11;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 16) % n;
  };
  const seen = new Set<string>();
  let again = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.from(Array.from({ length: 1 + next(4) }, () => alphabet[next(alphabet.length)]!));
    const read = names.read(bindPayload(Buffer.alloc(0), bytes), 1, 1 + bytes.length);
    assert.equal(read, bytes.toString('utf8'), bytes.toString('hex'));
    if (seen.has(bytes.toString('hex'))) again++;
    seen.add(bytes.toString('hex'));
  }
  assert.ok(again > 1000, `test: names came again (${again} times)`);
});

test('Bind names and Describe/Close targets read in place: within their range, whatever lies around it', () => {
  // A Bind whose names have no NUL before the range ends, with NULs right after it: malformed.
  const bind = Buffer.from('portal\0stmt');
  const around = Buffer.concat([Buffer.from([0, 0]), bind, Buffer.from([0, 0, 0])]);
  assert.throws(() => decodeBindNames(around, null, 2, 2 + bind.length), RangeError);
  // Well formed at an offset: names as read alone, ends as indexes in the chunk.
  const whole = bindPayload(Buffer.from('p1'), Buffer.from('s1'));
  const chunk = Buffer.concat([Buffer.from('xx\0'), whole, Buffer.from('\0')]);
  assert.deepEqual(decodeBindNames(chunk, null, 3, 3 + whole.length), { portal: 'p1', statement: 's1', portalEnd: 5, restOffset: 9 });
  // Describe 'S' "name": the NUL must be the range's last byte.
  const target = Buffer.from('Sname\0');
  const framed = Buffer.concat([Buffer.from('P\0'), target, Buffer.from('S\0')]);
  assert.deepEqual(decodeTarget(framed, 2, 2 + target.length), { kind: 'S', name: 'name' });
  assert.deepEqual(decodeTarget(framed, 0, 2), { kind: 'P', name: '' });
  assert.throws(() => decodeTarget(framed, 2, 2 + target.length - 1), RangeError, 'no NUL in range');
  assert.throws(() => decodeTarget(framed, 2, 2), RangeError, 'an empty range has no kind, whatever byte follows');
});
