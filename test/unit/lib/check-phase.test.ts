import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckPhaseBatch } from '../../../src/lib/check-phase.ts';

const checkPhase = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('items wait for the check phase, not a microtask, and are handled in the order added', async () => {
  const handled: string[] = [];
  const batch = new CheckPhaseBatch<string>((item) => handled.push(item));
  batch.add('a');
  batch.add('b');
  for (let i = 0; i < 3; i++) await Promise.resolve();
  assert.deepEqual(handled, [], 'nothing in the microtasks behind add');
  await checkPhase();
  assert.deepEqual(handled, ['a', 'b']);
  batch.add('c'); // a new batch after the first ran
  await checkPhase();
  assert.deepEqual(handled, ['a', 'b', 'c']);
});

test('an item added by a handler joins the batch that runs, behind the others', async () => {
  const handled: string[] = [];
  const batch: CheckPhaseBatch<string> = new CheckPhaseBatch<string>((item) => {
    handled.push(item);
    if (item === 'a') batch.add('a2');
  });
  batch.add('a');
  batch.add('b');
  // Queued right after the batch's setImmediate: it runs once the whole batch has.
  const after = checkPhase().then(() => [...handled]);
  assert.deepEqual(await after, ['a', 'b', 'a2']);
});

test('a handler that throws surfaces as an uncaught exception; the items behind it are handled in the next check phase', async () => {
  const handled: string[] = [];
  const batch = new CheckPhaseBatch<string>((item) => {
    if (item === 'bad') throw new Error('handler failed');
    handled.push(item);
  });
  const thrown: unknown[] = [];
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', (err) => thrown.push(err));
  try {
    batch.add('a');
    batch.add('bad');
    batch.add('c');
    for (let i = 0; i < 3; i++) await checkPhase();
  } finally {
    process.removeAllListeners('uncaughtException');
    for (const listener of listeners) process.on('uncaughtException', listener);
  }
  assert.deepEqual(handled, ['a', 'c']);
  assert.deepEqual(thrown.map((err) => (err as Error).message), ['handler failed']);
});
