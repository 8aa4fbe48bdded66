import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo, NumberFifo } from '../../../src/lib/fifo.ts';

test('entries come out in the order they went in, with unshift putting one back in front', () => {
  const fifo = new Fifo<number>();
  assert.equal(fifo.shift(), undefined);
  for (let i = 0; i < 5; i++) fifo.push(i);
  assert.equal(fifo.first, 0);
  assert.equal(fifo.shift(), 0);
  assert.equal(fifo.shift(), 1);
  fifo.unshift(1);
  assert.equal(fifo.length, 4);
  assert.deepEqual([fifo.shift(), fifo.shift(), fifo.shift(), fifo.shift(), fifo.shift()], [1, 2, 3, 4, undefined]);
  assert.equal(fifo.length, 0);
  fifo.unshift(9); // into an empty queue
  assert.equal(fifo.shift(), 9);
});

test('draining 300,000 entries interleaved with pushes keeps order and compacts', () => {
  const fifo = new Fifo<number>();
  let next = 0;
  let expected = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100_000; i++) fifo.push(next++);
    for (let i = 0; i < 60_000; i++) assert.equal(fifo.shift(), expected++);
  }
  assert.equal(fifo.length, next - expected);
  while (fifo.length > 0) assert.equal(fifo.shift(), expected++);
  assert.equal(expected, 300_000);
  fifo.push(1);
  fifo.clear();
  assert.equal(fifo.length, 0);
  assert.equal(fifo.first, undefined);
});

test('a ring that wraps around, grows while wrapped and takes entries back in front keeps their order', () => {
  const fifo = new Fifo<string>();
  const expected: string[] = [];
  let next = 0;
  // Push and shift so the head walks around the ring; then fill past its size while wrapped.
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 3; i++) (fifo.push(`e${next}`), expected.push(`e${next++}`));
    for (let i = 0; i < 2; i++) assert.equal(fifo.shift(), expected.shift());
  }
  for (let i = 0; i < 50; i++) (fifo.push(`e${next}`), expected.push(`e${next++}`));
  const taken = fifo.shift()!;
  assert.equal(taken, expected[0]);
  fifo.unshift(taken);
  assert.equal(fifo.length, expected.length);
  assert.equal(fifo.first, expected[0]);
  const out: string[] = [];
  while (fifo.length > 0) out.push(fifo.shift()!);
  assert.deepEqual(out, expected);
  // Emptied after a burst larger than it keeps: still a working queue.
  fifo.push('again');
  assert.deepEqual([fifo.length, fifo.shift(), fifo.shift()], [1, 'again', undefined]);
});

test('NumberFifo keeps fractional numbers exactly, in order, across growth and wrap-around', () => {
  const fifo = new NumberFifo();
  assert.equal(fifo.shift(), undefined);
  assert.equal(fifo.first, undefined);
  const expected: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const value = 1234567.891 + i / 7;
    fifo.push(value);
    expected.push(value);
    if (i % 3 === 0) assert.equal(fifo.shift(), expected.shift());
  }
  assert.equal(fifo.length, expected.length);
  assert.equal(fifo.first, expected[0]);
  const out: number[] = [];
  while (fifo.length > 0) out.push(fifo.shift()!);
  assert.deepEqual(out, expected);
  fifo.push(0.5);
  fifo.clear();
  assert.deepEqual([fifo.length, fifo.shift()], [0, undefined]);
});

test('at() reads an entry by its place from the oldest, also once the ring wraps', () => {
  const fifo = new Fifo<number>();
  assert.equal(fifo.at(0), undefined);
  for (let i = 0; i < 4; i++) fifo.push(i);
  fifo.shift();
  fifo.shift();
  fifo.push(4);
  fifo.push(5); // wrapped: slots hold 4, 5, 2, 3
  assert.deepEqual([0, 1, 2, 3].map((i) => fifo.at(i)), [2, 3, 4, 5]);
  assert.equal(fifo.at(4), undefined);
  assert.equal(fifo.at(-1), undefined);
});
