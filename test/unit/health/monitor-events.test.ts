// HealthMonitor's events over a scripted Prober and a FakeClock: host down/up, role changes,
// failover start and end (with its duration, old and new primary), split brain, breaker
// transitions driven by probes, re-resolved names (address-changed, the probe's connection
// dropped first, a failed lookup counting as a failed probe), kick()'s rate limit, nextRound(),
// and the unprobed mode of a single host.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HealthEvent } from '../../../src/health/events.ts';
import type { HealthMonitorOptions, HostState } from '../../../src/health/monitor.ts';
import type { HostEntry } from '../../../src/pool/server-pool.ts';
import { entry, LEVEL, monitorHarness, primary, replica, ScriptedProber, settle } from './health-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';

function monitor(prober: ScriptedProber, hosts: HostEntry[], overrides: Partial<HealthMonitorOptions> = {}) {
  const harness = monitorHarness(prober, hosts, overrides, 10_000);
  return { ...harness, byId: (id: string): HostState => harness.find(id)! };
}

const refused = new Error('connect ECONNREFUSED 10.0.0.1:5432');

test('the primary dies, a replica is promoted: host-down, failover-started, role-changed, failover-ended with its duration', async () => {
  const prober = new ScriptedProber()
    .script(P, primary('0/1'), refused, refused, refused)
    .script(R1, replica('0/1'), replica('0/1'), replica('0/1'), primary('0/2'));
  const { health, lines, events, types, counters, clock } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  assert.deepEqual(types(), ['role-changed', 'role-changed'], 'discovering the primary is not a failover');
  events.length = 0;

  clock.advance(1000);
  await health.probeAll(); // P fails once: still up, still the primary
  assert.deepEqual(types(), []);
  clock.advance(1000);
  await health.probeAll(); // P fails twice: down, and nobody else is the primary
  assert.deepEqual(types(), ['host-down', 'failover-started']);
  assert.deepEqual(events[1], { type: 'failover-started', oldPrimary: P, reason: `${P} is down: ${refused.message}` });
  assert.equal(health.primaryState.failoverSince, 12_000);

  clock.advance(1500);
  await health.probeAll(); // R1 promoted
  assert.deepEqual(types(), ['host-down', 'failover-started', 'role-changed', 'failover-ended']);
  assert.deepEqual(events[3], { type: 'failover-ended', oldPrimary: P, newPrimary: R1, durationMs: 1500, reason: `${R1} answers as the primary` });
  assert.deepEqual(health.primaryState, { primary: R1, failoverSince: null });

  const started = lines.find((line) => line['event'] === 'failover-started')!;
  assert.equal(started.level, LEVEL.warn);
  const ended = lines.find((line) => line['event'] === 'failover-ended')!;
  assert.deepEqual([ended.level, ended['newPrimary'], ended['oldPrimary'], ended['durationMs']], [LEVEL.info, R1, P, 1500]);
  const promoted = lines.find((line) => line['event'] === 'role-changed' && line.host === R1 && line['was'] === 'replica')!;
  assert.deepEqual([promoted.level, promoted.msg], [LEVEL.warn, 'host role changed']);
  assert.deepEqual([counters.count('failover-started'), counters.count('failover-ended'), counters.count('host-down', P)], [1, 1, 1]);
  assert.equal(counters.count('host-down', R1), 0);
});

test('the old primary coming back ends the failover with itself as the new primary, and host-up', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'), refused, refused, primary('0/1')).script(R1, replica('0/1'));
  const { health, events, types, clock } = monitor(prober, [entry(P), entry(R1)], { failureThreshold: 2 });
  await health.probeAll();
  await health.probeAll();
  await health.probeAll();
  events.length = 0;
  clock.advance(700);
  await health.probeAll();
  assert.deepEqual(types(), ['host-up', 'failover-ended']);
  const ended = events[1] as Extract<HealthEvent, { type: 'failover-ended' }>;
  assert.deepEqual([ended.oldPrimary, ended.newPrimary, ended.durationMs], [P, P, 700]);
});

test('a primary replaced within one round is a failover that started and ended in it', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'), replica('0/2')).script(R1, replica('0/1'), primary('0/2'));
  const { health, events, types } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  events.length = 0;
  await health.probeAll();
  assert.deepEqual(types(), ['role-changed', 'role-changed', 'failover-started', 'failover-ended']);
  assert.deepEqual(events[3], { type: 'failover-ended', oldPrimary: P, newPrimary: R1, durationMs: 0, reason: `${R1} answers as the primary` });
});

test('an old primary failing its probes while a promoted one answers is no split brain: the answering one is the primary', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'), refused).script(R1, replica('0/1'), primary('0/2'));
  const { health, types, byId } = monitor(prober, [entry(P), entry(R1)], { failureThreshold: 3 });
  await health.probeAll();
  await health.probeAll();
  assert.deepEqual([byId(P).up, byId(P).role, byId(P).failures], [true, 'primary', 1]);
  assert.ok(!types().includes('split-brain'));
  assert.deepEqual(health.primaryState.primary, R1);
});

test('two answering primaries: split-brain at error level naming both, once, and its end when one steps down', async () => {
  const prober = new ScriptedProber()
    .script(P, primary('0/1'), primary('0/2'), primary('0/3'), primary('0/4'))
    .script(R1, replica('0/1'), primary('0/2'), primary('0/2'), replica('0/4'));
  const { health, lines, events, types } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  events.length = 0;
  await health.probeAll();
  await health.probeAll();
  assert.deepEqual(types(), ['role-changed', 'split-brain'], 'reported once while it lasts');
  assert.deepEqual((events[1] as Extract<HealthEvent, { type: 'split-brain' }>).hosts, [P, R1]);
  const alert = lines.filter((line) => line['event'] === 'split-brain');
  assert.equal(alert.length, 1);
  assert.equal(alert[0]!.level, LEVEL.error);
  assert.match(alert[0]!.msg, /db1:5432 and db2:5432 both claim to be the primary; writes are refused until one steps down/);
  await health.probeAll();
  assert.deepEqual(types().slice(2), ['role-changed', 'split-brain-ended']);
  assert.deepEqual(health.primaryState.primary, P, 'the primary known before is still it');
});

test('a successful probe moves an open breaker to half-open at once; breaker events carry the host and reason', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, events, byId } = monitor(prober, [entry(P), entry(R1)], { circuitBreaker: { threshold: 1, cooldownMs: 60_000 } });
  const breaker = health.breaker(P)!;
  breaker.failed(breaker.admit(), 'connect ECONNREFUSED');
  assert.equal(byId(P).breaker, 'open');
  assert.deepEqual(events[0], { type: 'breaker-opened', host: P, failures: 1, retryInMs: 60_000, reason: '1 consecutive connect failures, the last: connect ECONNREFUSED' });
  await health.probeAll();
  assert.equal(byId(P).breaker, 'half-open');
  assert.deepEqual(events.find((e) => e.type === 'breaker-half-open'), { type: 'breaker-half-open', host: P, reason: 'a health probe succeeded' });
  breaker.succeeded(breaker.admit());
  assert.equal(byId(P).breaker, 'closed');
  assert.equal(events.at(-1)!.type, 'breaker-closed');
});

test('a name resolving elsewhere: address-changed, the probe connection dropped before the probe; IPs and sockets are not looked up', async () => {
  const answers = [['10.0.0.2', '10.0.0.1'], ['10.0.0.1', '10.0.0.2'], ['10.0.0.3']];
  const looked: string[] = [];
  const resolve = async (host: string): Promise<string[]> => {
    looked.push(host);
    return answers.length > 1 ? answers.shift()! : answers[0]!;
  };
  const prober = new ScriptedProber().script('db.example:5432', primary('0/1')).script('10.1.1.1:5432', replica('0/1')).script('/run/pg:5432', replica('0/1'));
  const order: string[] = [];
  const probe = prober.probe.bind(prober);
  prober.probe = (host, timeoutMs) => (order.push(`probe ${host.host}`), probe(host, timeoutMs));
  const forget = prober.forget.bind(prober);
  prober.forget = (host) => (order.push(`forget ${host.host}`), forget(host));
  const { health, events, byId } = monitor(prober, [entry('db.example:5432'), entry('10.1.1.1:5432'), entry('/run/pg:5432')], { resolve });

  await health.probeAll();
  await health.probeAll(); // same set in another order: no change
  assert.deepEqual(events.filter((e) => e.type === 'address-changed'), []);
  assert.deepEqual(byId('db.example:5432').addresses, ['10.0.0.1', '10.0.0.2']);
  order.length = 0;
  await health.probeAll();
  const changed = events.filter((e) => e.type === 'address-changed');
  assert.deepEqual(changed, [
    { type: 'address-changed', host: 'db.example:5432', from: ['10.0.0.1', '10.0.0.2'], to: ['10.0.0.3'], reason: 'db.example now resolves to 10.0.0.3' },
  ]);
  assert.deepEqual(prober.forgotten, ['db.example:5432']);
  assert.deepEqual(order.filter((step) => step.endsWith('db.example')), ['forget db.example', 'probe db.example']);
  assert.deepEqual(new Set(looked), new Set(['db.example']), 'only the name is looked up');
  assert.equal(byId('10.1.1.1:5432').addresses, null);
});

test('a failed lookup counts as a failed probe and the host is not probed', async () => {
  let fail = false;
  const resolve = async (): Promise<string[]> => {
    if (fail) throw Object.assign(new Error('getaddrinfo ENOTFOUND db2'), { code: 'ENOTFOUND' });
    return ['10.0.0.2'];
  };
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const { health, byId, types } = monitor(prober, [entry(P), entry(R1)], { resolve, failureThreshold: 2 });
  await health.probeAll();
  fail = true;
  prober.calls.length = 0;
  await health.probeAll();
  assert.deepEqual(prober.calls, [], 'no probe without an address');
  assert.deepEqual([byId(R1).failures, byId(R1).lastError], [1, 'could not resolve db2: ENOTFOUND']);
  await health.probeAll();
  assert.equal(byId(R1).up, false);
  assert.ok(types().includes('host-down'));
  assert.deepEqual(byId(R1).addresses, ['10.0.0.2'], 'the last known addresses are kept');
});

test('kick(): an extra round at once, then none sooner than min(interval/2, 200 ms) after the last start, never two at a time', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, clock } = monitor(prober, [entry(P)], { intervalMs: 1000 });
  health.kick('before start');
  await settle();
  assert.equal(prober.calls.length, 0, 'nothing before start()');
  await health.start(); // round 1 at t=0
  health.kick('connect refused');
  health.kick('connect refused again');
  await settle();
  assert.equal(prober.calls.length, 1, 'the first round started less than 200 ms ago');
  await clock.advanceAsync(199);
  assert.equal(prober.calls.length, 1);
  await clock.advanceAsync(1);
  assert.equal(prober.calls.length, 2, 'one deferred round for both kicks');
  await clock.advanceAsync(500);
  const release = prober.hold();
  health.kick('server closed the connection');
  await settle();
  assert.equal(prober.calls.length, 3, 'long enough since the last start: at once');
  health.kick('while one is under way');
  await clock.advanceAsync(300);
  assert.equal(prober.calls.length, 3, 'a round under way is the answer');
  release();
  await settle();
  assert.equal(prober.calls.length, 3);
  health.stop();
});

test('kick(): with a short interval the spacing is half of it', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, clock } = monitor(prober, [entry(P)], { intervalMs: 100 });
  await health.start();
  health.kick('refused');
  await clock.advanceAsync(49);
  assert.equal(prober.calls.length, 1);
  await clock.advanceAsync(1);
  assert.equal(prober.calls.length, 2);
  health.stop();
});

test('kicked rounds count towards failureThreshold like scheduled ones', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'), refused).script(R1, replica('0/1'));
  const { health, clock, byId, types } = monitor(prober, [entry(P), entry(R1)], { failureThreshold: 3, intervalMs: 10_000 });
  await health.start();
  for (let i = 0; i < 3; i++) {
    health.kick('refused');
    await clock.advanceAsync(200);
  }
  assert.equal(byId(P).up, false, 'three kicked rounds, no scheduled one');
  assert.deepEqual(types().slice(-2), ['host-down', 'failover-started']);
  health.stop();
});

test('nextRound() resolves when the next round completes, and at once after stop()', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, clock } = monitor(prober, [entry(P)]);
  await health.start();
  let done = false;
  void health.nextRound().then(() => (done = true));
  await clock.advanceAsync(999);
  assert.equal(done, false);
  await clock.advanceAsync(1);
  assert.equal(done, true, 'after the scheduled round');
  let kicked = false;
  await clock.advanceAsync(500);
  const release = prober.hold();
  health.kick('suspect');
  void health.nextRound().then(() => (kicked = true));
  await settle();
  assert.equal(kicked, false, 'the round is under way');
  release();
  await settle();
  assert.equal(kicked, true);
  health.stop();
  await health.nextRound();
});

test('without role probes (one host): rounds only look names up and probe a host whose breaker is open', async () => {
  let fail = false;
  const resolve = async (): Promise<string[]> => {
    if (fail) throw new Error('SERVFAIL');
    return ['10.0.0.1'];
  };
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, byId, events } = monitor(prober, [entry(P, 'primary')], { probeRoles: false, resolve, circuitBreaker: { threshold: 1, cooldownMs: 60_000 } });
  await health.probeAll();
  fail = true;
  await health.probeAll();
  await health.probeAll();
  assert.equal(prober.calls.length, 0, 'no probe while the breaker is closed');
  assert.deepEqual([byId(P).up, byId(P).failures, byId(P).role], [true, 0, 'primary'], 'a failed lookup does not mark it down');
  fail = false;
  const breaker = health.breaker(P)!;
  breaker.failed(breaker.admit(), 'refused');
  await health.probeAll();
  assert.equal(prober.calls.length, 1);
  assert.equal(byId(P).breaker, 'half-open');
  assert.deepEqual(events.map((e) => e.type), ['breaker-opened', 'breaker-half-open']);
});

test('an onEvent handler that throws is logged and does not stop the round', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, lines, byId } = monitor(prober, [entry(P)], {
    onEvent: () => {
      throw new Error('observer bug');
    },
  });
  await health.probeAll();
  assert.equal(byId(P).role, 'primary');
  assert.equal(lines.filter((line) => line.msg === 'health event handler failed').length, 1);
});
