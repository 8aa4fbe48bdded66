// HealthCounters (totals, per host, zeros for every type) and the level and message each event
// is logged at.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEALTH_EVENT_TYPES, HealthCounters, logHealthEvent, type HealthEvent } from '../../../src/health/events.ts';
import { LEVEL, memoryLog } from './health-fakes.ts';

const EXAMPLES: HealthEvent[] = [
  { type: 'host-down', host: 'a:1', reason: 'refused', failures: 3 },
  { type: 'host-up', host: 'a:1', reason: 'a probe succeeded' },
  { type: 'role-changed', host: 'b:1', from: 'replica', to: 'primary', configured: 'auto', reason: 'pg_is_in_recovery() is false' },
  { type: 'failover-started', oldPrimary: 'a:1', reason: 'a:1 is down: refused' },
  { type: 'failover-ended', oldPrimary: 'a:1', newPrimary: 'b:1', durationMs: 1200, reason: 'b:1 answers as the primary' },
  { type: 'split-brain', hosts: ['a:1', 'b:1'], reason: 'both report pg_is_in_recovery() = false' },
  { type: 'split-brain-ended', primary: 'b:1', reason: 'only b:1 claims to be the primary' },
  { type: 'breaker-opened', host: 'a:1', reason: '5 consecutive connect failures', failures: 5, retryInMs: 10_000 },
  { type: 'breaker-half-open', host: 'a:1', reason: 'a health probe succeeded' },
  { type: 'breaker-closed', host: 'a:1', reason: 'the trial connect succeeded' },
  { type: 'address-changed', host: 'c:1', from: ['10.0.0.1'], to: ['10.0.0.2'], reason: 'c now resolves to 10.0.0.2' },
];

test('every event type has an example here, and each is logged once with its type and reason', () => {
  assert.deepEqual(new Set(EXAMPLES.map((event) => event.type)), new Set(HEALTH_EVENT_TYPES));
  const { log, lines } = memoryLog();
  for (const event of EXAMPLES) logHealthEvent(log, event);
  assert.equal(lines.length, EXAMPLES.length);
  lines.forEach((line, i) => {
    assert.equal(line['event'], EXAMPLES[i]!.type);
    assert.equal(line['reason'], EXAMPLES[i]!.reason);
  });
  const level = (type: string): number => lines.find((line) => line['event'] === type)!.level;
  assert.equal(level('split-brain'), LEVEL.error, 'split brain is an alert');
  assert.equal(level('host-down'), LEVEL.warn);
  assert.equal(level('failover-started'), LEVEL.warn);
  assert.equal(level('failover-ended'), LEVEL.info);
  assert.equal(level('breaker-opened'), LEVEL.warn);
  assert.equal(level('address-changed'), LEVEL.warn);
});

test('a role differing from the configured one is logged as an error; a first discovery as info', () => {
  const { log, lines } = memoryLog();
  logHealthEvent(log, { type: 'role-changed', host: 'a:1', from: 'primary', to: 'replica', configured: 'primary', reason: 'r' });
  logHealthEvent(log, { type: 'role-changed', host: 'b:1', from: 'unknown', to: 'replica', configured: 'auto', reason: 'r' });
  assert.deepEqual(lines.map((line) => [line.level, line.msg]), [
    [LEVEL.error, 'host role differs from the configured one; routing follows the server'],
    [LEVEL.info, 'host role discovered'],
  ]);
});

test('HealthCounters counts per type and per host; failover events count for the old primary', () => {
  const counters = new HealthCounters();
  for (const event of EXAMPLES) counters.record(event);
  counters.record({ type: 'host-down', host: 'b:1', reason: 'timeout', failures: 3 });
  assert.equal(counters.count('host-down'), 2);
  assert.equal(counters.count('host-down', 'a:1'), 1);
  assert.equal(counters.count('failover-ended', 'a:1'), 1);
  assert.equal(counters.count('failover-ended', 'b:1'), 0);
  assert.equal(counters.count('split-brain'), 1);
  const snapshot = counters.snapshot();
  assert.equal(snapshot.total['address-changed'], 1);
  assert.deepEqual(snapshot.byHost['c:1'], { 'address-changed': 1 });
  assert.equal(snapshot.byHost['b:1']!['role-changed'], 1);
  assert.deepEqual(Object.keys(new HealthCounters().snapshot().total).sort(), [...HEALTH_EVENT_TYPES].sort());
  assert.ok(Object.values(new HealthCounters().snapshot().total).every((count) => count === 0));
});
