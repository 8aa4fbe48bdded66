import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import { sameBytes } from '../../../src/lib/bytes.ts';

test('sameBytes compares ranges at their offsets, by loop or by Buffer#compare, and finds a difference at any place', () => {
  for (const length of [0, 1, 7, 64, 128, 129, 300]) {
    const a = Buffer.alloc(length + 10);
    const b = Buffer.alloc(length + 3);
    for (let i = 0; i < length; i++) a[7 + i] = b[2 + i] = (i * 31 + 5) & 0xff;
    a[6] = 1; // just outside the range: not compared
    assert.equal(sameBytes(a, 7, b, 2, length), true, `${length} equal bytes`);
    for (const at of length === 0 ? [] : [0, length >> 1, length - 1]) {
      b[2 + at]! ^= 0x40;
      assert.equal(sameBytes(a, 7, b, 2, length), false, `${length} bytes, one differing at ${at}`);
      b[2 + at]! ^= 0x40;
    }
  }
});
