// HealthMonitor under a config reload, over a scripted Prober and a FakeClock: setHosts keeps a
// kept host's state object, history and breaker, updates its configured role and weight, drops a
// removed host (breaker, probe connection, results of a round under way), probes an added one at
// once (after the round under way, if any), switches role probes on and off, never lets a
// configured role contradict a probe; setOptions moves the pending round, changes the failure
// threshold and the breakers' options.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker, type BreakerTransition } from '../../../src/health/circuit-breaker.ts';
import type { HealthMonitorOptions } from '../../../src/health/monitor.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import type { HostEntry } from '../../../src/pool/server-pool.ts';
import { entry, monitorHarness, primary, replica, ScriptedProber, settle } from './health-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const R2 = 'db3:5432';
const refused = new Error('connect ECONNREFUSED 10.0.0.1:5432');

function monitor(prober: ScriptedProber, hosts: HostEntry[], overrides: Partial<HealthMonitorOptions> = {}) {
  const harness = monitorHarness(prober, hosts, overrides);
  return { ...harness, byId: harness.find };
}

/** Lets a round that needs a few promise turns (lookups, probes) finish. */
async function rounds(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await settle();
}

test('a kept host keeps its state object, history and breaker; its configured role and weight change in place', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, refused);
  const { health, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  const before = health.hosts;
  const kept = byId(R1)!;
  const breaker = health.breaker(R1);
  assert.equal(kept.failures, 1);

  const delta = health.setHosts([entry(P), { ...entry(R1, 'replica'), weight: 3 }], true);
  assert.deepEqual(delta, { added: [], removed: [] });
  assert.notEqual(health.hosts, before, 'the list is a new array');
  assert.equal(byId(R1), kept, 'the same HostState object');
  assert.deepEqual([kept.failures, kept.lastError, kept.configuredRole, kept.weight], [1, refused.message, 'replica', 3]);
  assert.equal(kept.role, 'replica', 'never probed successfully: the configured role counts');
  assert.equal(health.breaker(R1), breaker);
  assert.deepEqual(before.map((host) => host.id), [P, R1], 'the old snapshot array is left as it was');
});

test('a role a probe told stands when the configuration now says otherwise', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  health.setHosts([entry(P, 'replica'), entry(R1, 'primary')], true);
  assert.deepEqual([byId(P)!.role, byId(R1)!.role], ['primary', 'replica']);
  assert.deepEqual([byId(P)!.configuredRole, byId(R1)!.configuredRole], ['replica', 'primary']);
});

test('an added host gets a breaker and is probed at once, not at the next interval', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1')).script(R2, replica('0/1'));
  const { health, clock, events, byId, probesOf } = monitor(prober, [entry(P), entry(R1)]);
  await health.start();
  await clock.advanceAsync(100);
  events.length = 0;

  const delta = health.setHosts([entry(P), entry(R1), entry(R2)], true);
  assert.deepEqual(delta, { added: [R2], removed: [] });
  assert.equal(byId(R2)!.role, 'unknown');
  assert.equal(health.breaker(R2)?.state, 'closed');
  await rounds();
  assert.equal(probesOf(R2), 1, 'probed without waiting for the interval');
  assert.equal(clock.now(), 100);
  assert.equal(byId(R2)!.role, 'replica');
  assert.deepEqual(events.map((event) => [event.type, 'host' in event ? event.host : null]), [['role-changed', R2]]);
  health.stop();
});

test('a host added while a round is under way is probed right after that round', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1')).script(R2, replica('0/1'));
  const { health, byId, probesOf } = monitor(prober, [entry(P), entry(R1)]);
  const letGo = prober.hold();
  const first = health.start();
  await settle();
  health.setHosts([entry(P), entry(R1), entry(R2)], true);
  letGo();
  await first;
  await rounds();
  assert.equal(probesOf(R2), 1);
  assert.equal(byId(R2)!.role, 'replica');
  assert.equal(probesOf(P), 2, 'one extra round');
  health.stop();
});

test('a removed host loses its breaker and probe connection; a round under way does not apply its result', async () => {
  // The second round finds R2 failing.
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1')).script(R2, replica('0/1'), refused);
  const { health, events, byId } = monitor(prober, [entry(P), entry(R1), entry(R2)], { failureThreshold: 1 });
  await health.probeAll();
  const removed = byId(R2)!;
  events.length = 0;

  const letGo = prober.hold();
  const round = health.probeAll();
  await settle();
  const delta = health.setHosts([entry(P), entry(R1)], true);
  assert.deepEqual(delta, { added: [], removed: [R2] });
  assert.equal(health.breaker(R2), undefined);
  assert.deepEqual(prober.forgotten, [R2]);
  assert.deepEqual(health.hosts.map((host) => host.id), [P, R1]);
  letGo();
  await round;
  assert.deepEqual(events, [], 'no host-down for a host no longer configured');
  assert.equal(removed.failures, 0);
  assert.equal(byId(R1)!.failures, 0);
});

test('removing the primary from the configuration is not reported as a failover', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1')).script(R2, replica('0/1'));
  const { health, events } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  assert.equal(health.primaryState.primary, P);
  health.setHosts([entry(R1), entry(R2)], true);
  await health.probeAll();
  assert.ok(!events.some((event) => event.type.startsWith('failover')), JSON.stringify(events));
  assert.equal(health.primaryState.primary, null);
});

test('a host added as primary while a probe knows the primary is unknown until probed: no split brain from a reload', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1')).script(R2, replica('0/1'));
  const { health, events, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  health.setHosts([entry(P), entry(R1), entry(R2, 'primary')], true);
  assert.equal(byId(R2)!.role, 'unknown');
  await health.probeAll();
  assert.equal(byId(R2)!.role, 'replica');
  assert.ok(!events.some((event) => event.type === 'split-brain'));
});

test('from one host to two, role probes switch on and a round runs at once; back to one they switch off', async () => {
  const prober = new ScriptedProber().script(P, replica('0/1')).script(R1, primary('0/1'));
  const { health, clock, byId, probesOf } = monitor(prober, [entry(P, 'primary')], { probeRoles: false });
  await health.start();
  assert.equal(probesOf(P), 0, 'one host: no role probes');
  const kept = byId(P)!;

  health.setHosts([entry(P), entry(R1)], true);
  assert.equal(health.probingRoles, true);
  assert.equal(kept.role, 'unknown', 'the configured role (auto) until a probe tells');
  await rounds();
  assert.deepEqual([probesOf(P), probesOf(R1)], [1, 1]);
  assert.deepEqual([kept.role, byId(R1)!.role], ['replica', 'primary']);

  prober.script(R1, refused); // after one more primary answer (a script's last outcome repeats)
  for (let i = 0; i < 3; i += 1) await clock.advanceAsync(1000);
  assert.equal(byId(R1)!.up, false);
  health.setHosts([entry(R1, 'primary')], false);
  const only = byId(R1)!;
  assert.deepEqual([only.role, only.up, only.failures], ['primary', true, 0], 'no probe would ever mark it up again');
  const probes = prober.calls.length;
  await clock.advanceAsync(3000);
  assert.equal(prober.calls.length, probes, 'no role probes while its breaker is closed');
  health.stop();
});

test('a shorter interval moves the pending round; a longer one pushes it back', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, clock, probesOf } = monitor(prober, [entry(P), entry(R1)], { intervalMs: 10_000 });
  await health.start();
  await clock.advanceAsync(500);
  health.setOptions({ intervalMs: 1_000, timeoutMs: 250, failureThreshold: 2 });
  await clock.advanceAsync(499);
  assert.equal(probesOf(P), 1);
  await clock.advanceAsync(1);
  assert.equal(probesOf(P), 2, 'one interval after the last round, not after the old 10 s');
  await clock.advanceAsync(1_000);
  assert.equal(probesOf(P), 3);
  health.setOptions({ intervalMs: 5_000, timeoutMs: 100, failureThreshold: 2 });
  await clock.advanceAsync(4_999);
  assert.equal(probesOf(P), 3);
  await clock.advanceAsync(1);
  assert.equal(probesOf(P), 4);
  assert.equal(prober.calls.at(-1)!.timeoutMs, 100, 'the new probe timeout');
  health.stop();
});

test('a lower failure threshold applies from the next failed probe', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'), refused, refused);
  const { health, byId } = monitor(prober, [entry(P), entry(R1)], { failureThreshold: 5 });
  await health.probeAll();
  await health.probeAll();
  assert.deepEqual([byId(R1)!.failures, byId(R1)!.up], [1, true]);
  health.setOptions({ intervalMs: 1000, timeoutMs: 250, failureThreshold: 2 });
  await health.probeAll();
  assert.equal(byId(R1)!.up, false);
});

test('breakers take new options: the threshold from the next failure, the cooldown from the next opening', () => {
  const clock = new FakeClock(0);
  const changes: BreakerTransition[] = [];
  const breaker = new CircuitBreaker(P, { threshold: 5, cooldownMs: 10_000 }, clock, (change) => changes.push(change));
  breaker.failed(breaker.admit(), 'refused');
  breaker.setOptions({ threshold: 2, cooldownMs: 1_000 });
  breaker.failed(breaker.admit(), 'refused');
  assert.equal(breaker.state, 'open', 'two failures reach the new threshold');
  assert.equal(changes[0]!.retryAt, 1_000);
  breaker.setOptions({ threshold: 2, cooldownMs: 60_000 });
  clock.advance(1_000);
  assert.equal(breaker.state, 'half-open', 'the open spell keeps the cooldown it started with');
  breaker.failed(breaker.admit(), 'refused');
  assert.equal(changes.at(-1)!.retryAt, 61_000, 'the next opening uses the new cooldown');
});

test('the monitor hands new breaker options to every breaker', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health } = monitor(prober, [entry(P), entry(R1)], { circuitBreaker: { threshold: 5, cooldownMs: 10_000 } });
  health.setOptions({ intervalMs: 1000, timeoutMs: 250, failureThreshold: 2, circuitBreaker: { threshold: 1, cooldownMs: 10_000 } });
  const breaker = health.breaker(R1)!;
  breaker.failed(breaker.admit(), 'refused');
  assert.equal(breaker.state, 'open');
  assert.equal(health.hosts[1]!.breaker, 'open');
  health.stop();
});

test('a round under way when role probes were switched off does not apply its role answers', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  const letGo = prober.hold();
  const round = health.probeAll();
  await settle();
  health.setHosts([entry(R1, 'primary')], false); // one host left: the pool configures it as the primary
  letGo();
  await round;
  assert.equal(byId(R1)!.role, 'primary', 'not the replica answer of the round started before');
});

test('a removed host\'s breaker and name lookups publish nothing any more', async () => {
  let r1Address = '10.0.0.1';
  let held: Promise<void> | null = null;
  let releaseLookup: () => void = () => {};
  const resolve = async (name: string): Promise<string[]> => {
    if (name !== 'db2') return ['10.0.0.1'];
    if (held) await held;
    return [r1Address];
  };
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, events } = monitor(prober, [entry(P), entry(R1)], { resolve });
  await health.probeAll(); // the baseline addresses
  events.length = 0;
  const breaker = health.breaker(R1)!;
  r1Address = '10.0.0.2';
  held = new Promise<void>((wake) => (releaseLookup = wake));
  const round = health.probeAll();
  await settle();
  health.setHosts([entry(P)], true);
  releaseLookup();
  await round;
  for (let i = 0; i < 5; i += 1) breaker.failed(breaker.admit(), 'refused'); // connects under way when R1 was removed
  assert.deepEqual(events, [], JSON.stringify(events));
});
