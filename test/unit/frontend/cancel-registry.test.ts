import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelRegistry, type Cancellable } from '../../../src/frontend/cancel-registry.ts';

/** A session whose cancels settle when the test says so. */
function session(): Cancellable & { sent: number; settle(): void } {
  const pending: Array<() => void> = [];
  return {
    sent: 0,
    cancelUpstream() {
      this.sent++;
      return new Promise<void>((resolve) => pending.push(resolve));
    },
    settle: () => pending.shift()?.(),
  };
}

function keyOf(secretKey: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeInt32BE(secretKey);
  return key;
}

test('only the exact key cancels', () => {
  const registry = new CancelRegistry();
  const target = session();
  const { processId, secretKey } = registry.register(target);
  assert.equal(registry.cancel(processId, keyOf(secretKey ^ 1)), 'no-match');
  assert.equal(registry.cancel(processId + 1, keyOf(secretKey)), 'no-match');
  assert.equal(registry.cancel(processId, Buffer.alloc(3)), 'no-match');
  assert.equal(target.sent, 0);
  assert.equal(registry.cancel(processId, keyOf(secretKey)), 'sent');
  assert.equal(target.sent, 1);
  assert.deepEqual(registry.results, { sent: 1, idle: 0, 'no-match': 3, 'too-many': 0 });
});

test('at most maxInFlight cancels are on their way; a settled one frees its place', async () => {
  const registry = new CancelRegistry(2);
  const targets = [session(), session(), session()];
  const keys = targets.map((t) => registry.register(t));
  const cancel = (i: number) => registry.cancel(keys[i]!.processId, keyOf(keys[i]!.secretKey));
  assert.equal(cancel(0), 'sent');
  assert.equal(cancel(1), 'sent');
  assert.equal(cancel(2), 'too-many');
  assert.equal(targets[2]!.sent, 0);
  assert.equal(registry.pending, 2);
  assert.deepEqual(targets.map((t) => registry.pendingFor(t)), [1, 1, 0]);
  assert.equal(cancel(0), 'too-many');
  targets[0]!.settle();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(registry.pending, 1);
  assert.deepEqual(targets.map((t) => registry.pendingFor(t)), [0, 1, 0]);
  assert.equal(cancel(2), 'sent');
  assert.equal(targets[2]!.sent, 1);
  assert.deepEqual(registry.results, { sent: 3, idle: 0, 'no-match': 0, 'too-many': 2 });
});

test('a session with nothing to cancel takes no place', () => {
  const registry = new CancelRegistry(1);
  const idle: Cancellable = { cancelUpstream: () => null };
  const { processId, secretKey } = registry.register(idle);
  assert.equal(registry.cancel(processId, keyOf(secretKey)), 'sent');
  assert.equal(registry.pending, 0);
  assert.deepEqual(registry.results, { sent: 0, idle: 1, 'no-match': 0, 'too-many': 0 }, 'counted as idle, not sent');
});

test('landed runs once the cancel has reached the server, at once when there was nothing to send it to, and never for a wrong key', async () => {
  const registry = new CancelRegistry();
  const target = session();
  const { processId, secretKey } = registry.register(target);
  let landed = 0;
  assert.equal(registry.cancel(processId, keyOf(secretKey), () => landed++), 'sent');
  await Promise.resolve();
  assert.equal(landed, 0, 'not while the cancel is on its way');
  target.settle();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(landed, 1);
  const idle: Cancellable = { cancelUpstream: () => null };
  const other = registry.register(idle);
  assert.equal(registry.cancel(other.processId, keyOf(other.secretKey), () => landed++), 'sent');
  assert.equal(landed, 2, 'nothing to send it to: at once');
  assert.equal(registry.cancel(processId, keyOf(secretKey ^ 1), () => landed++), 'no-match');
  assert.equal(landed, 2, 'the caller closes a wrong key’s connection itself');
});

test('two cancels of one session count for it until each has landed', async () => {
  const registry = new CancelRegistry();
  const target = session();
  const { processId, secretKey } = registry.register(target);
  registry.cancel(processId, keyOf(secretKey));
  registry.cancel(processId, keyOf(secretKey));
  assert.equal(registry.pendingFor(target), 2);
  target.settle();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(registry.pendingFor(target), 1);
  target.settle();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(registry.pendingFor(target), 0);
  assert.equal(registry.pending, 0);
});
