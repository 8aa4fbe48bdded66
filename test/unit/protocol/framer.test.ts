import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALL_TYPES, Framer, FramingError, typeSet } from '../../../src/protocol/framer.ts';

function message(type: string, payload: Buffer): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(payload.length + 4, 1);
  payload.copy(out, 5);
  return out;
}

/** Runs the framer over `parts` and returns what it reported, as plain data. */
function collect(framer: Framer, parts: Buffer[]): Array<{ type: string; payload: string | null; length: number }> {
  const seen: Array<{ type: string; payload: string | null; length: number }> = [];
  for (const part of parts) {
    framer.push(part, (type, payload, length) => {
      seen.push({ type: String.fromCharCode(type), payload: payload === null ? null : payload.toString('hex'), length });
    });
  }
  return seen;
}

const stream = Buffer.concat([
  message('Q', Buffer.from('select 1\0')),
  message('S', Buffer.alloc(0)),
  message('D', Buffer.from('x'.repeat(300))),
  message('Z', Buffer.from('I')),
  message('d', Buffer.from([0, 1, 2, 3, 255])),
]);

test('every split point of a stream yields the same messages as the whole stream', () => {
  const expected = collect(new Framer(1 << 20, ALL_TYPES), [stream]);
  assert.equal(expected.length, 5);
  assert.deepEqual(expected[0], { type: 'Q', payload: Buffer.from('select 1\0').toString('hex'), length: 13 });
  for (let i = 0; i <= stream.length; i++) {
    const got = collect(new Framer(1 << 20, ALL_TYPES), [stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(got, expected, `split at ${i}`);
  }
});

test('every pair of split points yields the same messages (three parts)', () => {
  const expected = collect(new Framer(1 << 20, ALL_TYPES), [stream]);
  for (let i = 0; i <= stream.length; i += 3) {
    for (let j = i; j <= stream.length; j += 7) {
      const got = collect(new Framer(1 << 20, ALL_TYPES), [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]);
      assert.deepEqual(got, expected, `split at ${i},${j}`);
    }
  }
});

test('byte-at-a-time input yields the same messages', () => {
  const expected = collect(new Framer(1 << 20, ALL_TYPES), [stream]);
  const bytes = [...stream].map((b) => Buffer.from([b]));
  assert.deepEqual(collect(new Framer(1 << 20, ALL_TYPES), bytes), expected);
});

test('uninspected types are reported without payload and never buffered', () => {
  const framer = new Framer(1 << 20, typeSet('Z'));
  for (let i = 0; i <= stream.length; i++) {
    const got = collect(new Framer(1 << 20, typeSet('Z')), [stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(
      got.map((m) => [m.type, m.payload]),
      [['Q', null], ['S', null], ['D', null], ['Z', Buffer.from('I').toString('hex')], ['d', null]],
      `split at ${i}`,
    );
  }
  assert.ok(framer.atBoundary);
});

test('an inspected message within one chunk is a view of the chunk, not a copy', () => {
  const chunk = message('Z', Buffer.from('T'));
  let payload: Buffer | null = null;
  new Framer(100, ALL_TYPES).push(chunk, (_t, p) => {
    payload = p;
  });
  assert.ok(payload !== null);
  assert.equal((payload as Buffer).buffer, chunk.buffer);
});

test('the declared length is checked before buffering: over the limit throws at once', () => {
  const framer = new Framer(1000, ALL_TYPES);
  const header = Buffer.alloc(5);
  header.write('Q', 0, 'latin1');
  header.writeInt32BE(0x7fffffff, 1);
  assert.throws(() => framer.push(header, () => {}), (err: unknown) => err instanceof FramingError && err.reason === 'message-too-large');
});

test('lengths below 4 (0, 3, negative) are rejected', () => {
  for (const length of [0, 1, 3, -1, -2147483648]) {
    const header = Buffer.alloc(5);
    header.write('Q', 0, 'latin1');
    header.writeInt32BE(length, 1);
    assert.throws(
      () => new Framer(1000, ALL_TYPES).push(header, () => {}),
      (err: unknown) => err instanceof FramingError && err.reason === 'length-too-small',
      `length ${length}`,
    );
  }
});

test('returning false stops processing and reports where', () => {
  const framer = new Framer(1000, ALL_TYPES);
  const first = message('R', Buffer.alloc(4));
  const both = Buffer.concat([first, message('S', Buffer.from('a\0b\0'))]);
  const seen: string[] = [];
  const stopped = framer.push(both, (type) => {
    seen.push(String.fromCharCode(type));
    return false;
  });
  assert.deepEqual(seen, ['R']);
  assert.equal(stopped, first.length);
  assert.ok(framer.atBoundary);
});

test('the handler learns where each message ends in the current chunk', () => {
  const ends: number[] = [];
  const framer = new Framer(1 << 20, typeSet('Z'));
  const onMessage = (_t: number, _p: Buffer | null, _l: number, end: number): void => void ends.push(end);
  framer.push(stream.subarray(0, 20), onMessage);
  framer.push(stream.subarray(20), onMessage);
  // Q (14 bytes) and S (5) end in the first 20 bytes; D (305), Z (6), d (10) in the second chunk.
  assert.deepEqual(ends, [14, 19, 19 + 305 - 20, 19 + 305 + 6 - 20, 19 + 305 + 6 + 10 - 20]);
});

test('atBoundary is false in the middle of a message', () => {
  const framer = new Framer(1000, ALL_TYPES);
  const m = message('Q', Buffer.from('select 1\0'));
  framer.push(m.subarray(0, 7), () => {});
  assert.equal(framer.atBoundary, false);
  framer.push(m.subarray(7), () => {});
  assert.equal(framer.atBoundary, true);
});

test('shift takes one whole message at a time off a chunk queue, whatever the split, and leaves the rest queued', () => {
  const one = Buffer.from([0x70, 0, 0, 0, 7, 0x61, 0x62, 0]); // p "ab\0"
  const two = Buffer.from([0x51, 0, 0, 0, 4]); // Q, empty
  const bytes = Buffer.concat([one, two, one.subarray(0, 3)]);
  for (let split = 1; split < bytes.length; split++) {
    const framer = new Framer(1024, ALL_TYPES);
    const queue = [bytes.subarray(0, split), bytes.subarray(split)];
    const first = framer.shift(queue);
    assert.deepEqual(first && { type: first.type, payload: [...first.payload] }, { type: 0x70, payload: [0x61, 0x62, 0] }, `split at ${split}`);
    bytes.fill(0, 0, one.length); // the bytes it came from, already consumed
    assert.deepEqual([...first!.payload], [0x61, 0x62, 0], 'the payload is a copy: it outlives the chunk');
    bytes.set(one, 0);
    assert.deepEqual(framer.shift(queue), { type: 0x51, payload: Buffer.alloc(0) });
    assert.equal(framer.shift(queue), undefined, 'a partial message is not a message');
    assert.equal(framer.atBoundary, false);
    queue.push(one.subarray(3));
    assert.equal(framer.shift(queue)?.type, 0x70);
    assert.deepEqual(queue, []);
  }
});
