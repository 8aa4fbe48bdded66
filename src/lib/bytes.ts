// Byte ranges compared where they lie.

import type { Buffer } from 'node:buffer';

/**
 * Up to this many bytes a loop in JavaScript compares: Buffer#compare with offsets checks its
 * four offsets in JavaScript, then calls into C++, which costs more than the loop on the hot
 * path, where caches are cold between one client's turns (a perf profile at 1 client put 0.6 us
 * per transaction in the compare of pgbench's 60-byte Parse). Warm, the two cross near 64 bytes;
 * beyond this the loop's 1.4 ns a byte outgrows the call.
 */
const LOOP_BYTES = 128;

/** Whether `a[aFrom, aFrom + length)` and `b[bFrom, bFrom + length)` hold the same bytes; both ranges lie within their buffers. */
export function sameBytes(a: Buffer, aFrom: number, b: Buffer, bFrom: number, length: number): boolean {
  if (length > LOOP_BYTES) return a.compare(b, bFrom, bFrom + length, aFrom, aFrom + length) === 0;
  for (let i = 0; i < length; i++) if (a[aFrom + i] !== b[bFrom + i]) return false;
  return true;
}
