// HealthMonitor over a scripted Prober: roles (configured until the first probe, then the
// server's, with an error log when they disagree with the configuration), the failure threshold,
// replica lag from the same round's primary position, the first-round readiness, stop() under
// fake timers and a shared round; probeResultFromRow and the shape of PROBE_SQL.

import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/lib/clock.ts';
import { test } from 'node:test';
import { loadModule, parseSync } from 'libpg-query';

import {
  HealthMonitor,
  PROBE_SQL,
  probeResultFromRow,
  type HealthMonitorOptions,
  type HostState,
  type Prober,
} from '../../../src/health/monitor.ts';
import { parseLsn } from '../../../src/pool/host-choice.ts';
import type { HostEntry } from '../../../src/pool/server-pool.ts';
import { entry, LEVEL, memoryLog, primary, replica, ScriptedProber, settle, STATIC_DNS, type LogLine } from './health-fakes.ts';

const P = 'db1:5432';
const R1 = 'db2:5432';
const R2 = 'db3:5432';

function monitor(
  prober: ScriptedProber,
  hosts: HostEntry[],
  overrides: Partial<HealthMonitorOptions> = {},
): { health: HealthMonitor; lines: LogLine[]; byId: (id: string) => HostState } {
  const { log, lines } = memoryLog();
  const health = new HealthMonitor({ hosts, prober, intervalMs: 1000, timeoutMs: 250, failureThreshold: 3, log, resolve: STATIC_DNS, ...overrides });
  const byId = (id: string): HostState => {
    const found = health.hosts.find((host) => host.id === id);
    assert.ok(found, `host ${id}`);
    return found;
  };
  return { health, lines, byId };
}

test('auto hosts are unknown until probed; configured roles are used before probing', async () => {
  const prober = new ScriptedProber().script(P, primary('0/3000000')).script(R1, replica('0/3000000')).script(R2, replica('0/3000000'));
  const { health, lines, byId } = monitor(prober, [entry(P, 'auto'), entry(R1, 'replica'), entry(R2, 'auto')]);
  assert.deepEqual(health.hosts.map((host) => host.role), ['unknown', 'replica', 'unknown']);
  assert.deepEqual(health.hosts.map((host) => host.up), [true, true, true]);
  assert.equal(prober.calls.length, 0, 'constructing probes nothing');

  await health.probeAll();
  assert.equal(byId(P).role, 'primary');
  assert.equal(byId(R1).role, 'replica');
  assert.equal(byId(R2).role, 'replica');
  assert.deepEqual(prober.calls.map((call) => call.timeoutMs), [250, 250, 250]);
  const discovered = lines.filter((line) => line.msg === 'host role discovered').map((line) => [line.host, line['role'], line.level]);
  assert.deepEqual(discovered, [[P, 'primary', LEVEL.info], [R2, 'replica', LEVEL.info]]);
  assert.equal(lines.filter((line) => line.level >= LEVEL.warn).length, 0);
  assert.ok(health.hosts.every((host) => host.probedAt !== null));
});

test('a role that disagrees with the configuration follows the server and logs an error', async () => {
  const prober = new ScriptedProber().script(P, replica('0/3000000')).script(R1, primary('0/3000000'));
  const { health, lines, byId } = monitor(prober, [entry(P, 'primary'), entry(R1, 'replica')]);
  assert.equal(byId(P).role, 'primary');
  assert.equal(byId(R1).role, 'replica');

  await health.probeAll();
  assert.equal(byId(P).role, 'replica');
  assert.equal(byId(R1).role, 'primary');
  assert.equal(byId(P).configuredRole, 'primary');
  const errors = lines.filter((line) => line.level === LEVEL.error).map((line) => [line.host, line['configured'], line['observed']]);
  assert.deepEqual(errors, [[P, 'primary', 'replica'], [R1, 'replica', 'primary']]);
});

test('a host is down only after failureThreshold consecutive failures and up after one success', async () => {
  const refused = new Error('connect ECONNREFUSED 10.0.0.2:5432');
  const prober = new ScriptedProber()
    .script(P, primary('0/3000000'))
    .script(R1, replica('0/3000000'), refused, refused, replica('0/3000000'), refused, refused, refused, replica('0/3000010'));
  const { health, lines, byId } = monitor(prober, [entry(P), entry(R1)], { failureThreshold: 3 });

  await health.probeAll(); // success
  await health.probeAll(); // failure 1
  assert.deepEqual([byId(R1).up, byId(R1).failures, byId(R1).lastError], [true, 1, refused.message]);
  await health.probeAll(); // failure 2
  assert.deepEqual([byId(R1).up, byId(R1).failures], [true, 2]);
  await health.probeAll(); // success: the count starts again
  assert.deepEqual([byId(R1).up, byId(R1).failures, byId(R1).lastError], [true, 0, null]);
  await health.probeAll(); // failure 1
  await health.probeAll(); // failure 2
  assert.equal(byId(R1).up, true, 'two failures since the last success are not three');
  assert.equal(lines.filter((line) => line.msg === 'host is down').length, 0);
  await health.probeAll(); // failure 3
  assert.deepEqual([byId(R1).up, byId(R1).failures], [false, 3]);
  const down = lines.filter((line) => line.msg === 'host is down');
  assert.equal(down.length, 1);
  assert.deepEqual([down[0]!.level, down[0]!.host, down[0]!['failures'], down[0]!['reason']], [LEVEL.warn, R1, 3, refused.message]);
  await health.probeAll(); // success
  assert.deepEqual([byId(R1).up, byId(R1).failures, byId(R1).lastError], [true, 0, null]);
  assert.equal(lines.filter((line) => line.msg === 'host is up again' && line.host === R1).length, 1);
  assert.equal(byId(P).up, true);
});

test('failureThreshold 1 marks a host down at its first failure; a non-Error rejection is kept as text', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const rejecting: Prober = {
    probe: (host) => (host.host === 'db2' ? Promise.reject('timeout after 250 ms') : prober.probe(host, 250)),
    close: () => prober.close(),
  };
  const { log } = memoryLog();
  const health = new HealthMonitor({ hosts: [entry(P), entry(R1)], prober: rejecting, intervalMs: 1000, timeoutMs: 250, failureThreshold: 1, log, resolve: STATIC_DNS });
  await health.probeAll();
  const r1 = health.hosts[1]!;
  assert.deepEqual([r1.up, r1.failures, r1.lastError, r1.role], [false, 1, 'timeout after 250 ms', 'unknown']);
  assert.equal(health.hosts[0]!.up, true);
});

test('lagBytes is the same round\'s primary position minus the replica\'s; lagMs is how long the primary has been ahead', async () => {
  const clock = new FakeClock(1_000_000);
  const prober = new ScriptedProber()
    .script(P, primary('0/3000100'), primary('0/3000400'), primary('0/3000400'))
    .script(R1, replica('0/3000000', 1500), replica('0/3000300', 20), replica('0/3000300', 20))
    .script(R2, replica('0/3000100', null), replica('0/3000500', 0), replica('0/3000500', 0));
  const { health, byId } = monitor(prober, [entry(P), entry(R1), entry(R2)], { clock });

  await health.probeAll();
  // The primary was first seen ahead of R1 in this very round: behind by bytes, not yet by time.
  assert.deepEqual([byId(R1).lagBytes, byId(R1).lagMs, byId(R1).replayLsn], [0x100, 0, parseLsn('0/3000000')]);
  assert.deepEqual([byId(R2).lagBytes, byId(R2).lagMs, byId(R2).replayLsn], [0, 0, parseLsn('0/3000100')]);
  assert.deepEqual([byId(P).lagBytes, byId(P).lagMs, byId(P).replayLsn, byId(P).lsn], [undefined, undefined, undefined, parseLsn('0/3000100')]);

  await clock.advance(700);
  await health.probeAll();
  // R1 replayed past what the primary had 700 ms ago, not past what it has now (0/3000400 since this round).
  assert.deepEqual([byId(R1).lagBytes, byId(R1).lagMs, byId(R1).replayLsn], [0x100, 0, parseLsn('0/3000300')]);
  assert.equal(byId(R2).lagBytes, 0, 'a replica reporting a position past the primary\'s is not behind');

  await clock.advance(2_000);
  await health.probeAll();
  // Still at 0/3000300 while the primary has held 0/3000400 for 2 s: 2 s behind.
  assert.deepEqual([byId(R1).lagBytes, byId(R1).lagMs], [0x100, 2_000]);
  assert.equal(byId(R2).lagMs, 0);
});

test('lagMs does not count an idle spell: a replica at the last commit is not behind however old that commit is', async () => {
  const clock = new FakeClock(0);
  const prober = new ScriptedProber()
    .script(P, primary('0/5000000'), primary('0/5000000'), primary('0/5000200'))
    // The replica's own estimate (now minus its last replayed commit) grows with idleness.
    .script(R1, replica('0/5000000', 0), replica('0/5000000', 60_000), replica('0/5000000', 60_000));
  const { health, byId } = monitor(prober, [entry(P), entry(R1)], { clock });
  await health.probeAll();
  await clock.advance(60_000);
  await health.probeAll();
  assert.equal(byId(R1).lagMs, 0, 'idle, caught up');
  await clock.advance(200);
  await health.probeAll();
  assert.equal(byId(R1).lagMs, 0, 'a write the replica has not replayed yet, first seen in this round');
  await clock.advance(300);
  await health.probeAll();
  assert.equal(byId(R1).lagMs, 300);
});

test('without a primary in the round lagBytes is unknown', async () => {
  const down = new Error('connection refused');
  const prober = new ScriptedProber()
    .script(P, primary('0/3000100'), down)
    .script(R1, replica('0/3000000', 5));
  const { health, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  assert.equal(byId(R1).lagBytes, 0x100);
  await health.probeAll();
  assert.equal(byId(P).up, true, 'one failure is below the threshold');
  assert.equal(byId(R1).lagBytes, undefined, 'the primary\'s position from an earlier round is not used');
  assert.equal(byId(R1).lagMs, 5);

  const onlyReplicas = new ScriptedProber().script(R1, replica('0/3000000', 7)).script(R2, replica('0/3000100', 0));
  const second = monitor(onlyReplicas, [entry(R1), entry(R2)]);
  await second.health.probeAll();
  assert.deepEqual(second.health.hosts.map((host) => host.lagBytes), [undefined, undefined]);
  assert.deepEqual(second.health.hosts.map((host) => host.lagMs), [7, 0]);
});

test('a promoted replica drops its replica fields; a demoted primary gains them', async () => {
  const prober = new ScriptedProber()
    .script(P, primary('0/3000100'), replica('0/3000100', 0))
    .script(R1, replica('0/3000000', 900), primary('0/3000200'));
  const { health, byId } = monitor(prober, [entry(P), entry(R1)]);
  await health.probeAll();
  await health.probeAll();
  assert.equal(byId(R1).role, 'primary');
  assert.deepEqual([byId(R1).replayLsn, byId(R1).lagMs, byId(R1).lagBytes], [undefined, undefined, undefined]);
  assert.equal(byId(P).role, 'replica');
  assert.deepEqual([byId(P).replayLsn, byId(P).lagMs, byId(P).lagBytes], [parseLsn('0/3000100'), 0, 0x100]);
});

test('ready() resolves only after the first round; start() returns the same promise', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1'));
  const { health, byId } = monitor(prober, [entry(P)]);
  const release = prober.hold();
  const started = health.start();
  assert.equal(health.running, true);
  let ready = false;
  void health.ready().then(() => (ready = true));
  await settle();
  assert.equal(ready, false, 'the probe has not answered');
  assert.equal(byId(P).role, 'unknown');
  release();
  await health.ready();
  assert.equal(ready, true);
  assert.equal(byId(P).role, 'primary');
  assert.equal(health.start(), started, 'a second start() changes nothing');
  assert.equal(prober.calls.length, 1);
  health.stop();
});

test('probing runs every intervalMs; stop() closes the prober and no more rounds happen', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const rounds: number[] = [];
  const { health } = monitor(prober, [entry(P), entry(R1)], { intervalMs: 1000, onRound: (hosts) => rounds.push(hosts.length) });
  await health.start();
  assert.equal(prober.calls.length, 2);
  t.mock.timers.tick(999);
  await settle();
  assert.equal(prober.calls.length, 2);
  t.mock.timers.tick(1);
  await settle(); // each host's name is looked up before its probe
  assert.equal(prober.calls.length, 4, 'the second round after intervalMs');
  await settle();
  t.mock.timers.tick(1000);
  await settle();
  assert.equal(prober.calls.length, 6, 'and the third');
  await settle();
  assert.deepEqual(rounds, [2, 2, 2]);

  health.stop();
  assert.equal(prober.closed, true);
  assert.equal(health.running, false);
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(prober.calls.length, 6, 'no round after stop()');
  assert.deepEqual(rounds, [2, 2, 2]);
});

test('stop() during a round: its results are not applied and nothing is scheduled', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const prober = new ScriptedProber().script(P, primary('0/1'), replica('0/1'));
  const rounds: number[] = [];
  const { health, byId } = monitor(prober, [entry(P)], { onRound: () => rounds.push(1) });
  await health.start();
  const release = prober.hold();
  t.mock.timers.tick(1000);
  await settle();
  assert.equal(prober.calls.length, 2, 'the second round is under way');
  health.stop();
  release();
  await settle();
  assert.equal(byId(P).role, 'primary', 'the answer that came after stop() is ignored');
  assert.equal(rounds.length, 1);
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(prober.calls.length, 2);
});

test('probeAll() shares a round in progress and starts a new one after it', async () => {
  const prober = new ScriptedProber().script(P, primary('0/1')).script(R1, replica('0/1'));
  const rounds: number[] = [];
  const { health } = monitor(prober, [entry(P), entry(R1)], { onRound: () => rounds.push(1) });
  const release = prober.hold();
  const first = health.probeAll();
  const second = health.probeAll();
  assert.equal(second, first);
  await settle();
  assert.equal(prober.calls.length, 2, 'one probe per host');
  release();
  await Promise.all([first, second]);
  assert.equal(rounds.length, 1);
  const third = health.probeAll();
  assert.notEqual(third, first);
  await third;
  assert.equal(prober.calls.length, 4);
  assert.equal(rounds.length, 2);
});

test('probeResultFromRow reads role, position and lag from the probe\'s row', () => {
  assert.deepEqual(probeResultFromRow(['f', '16/B374D848', '0']), { inRecovery: false, lsn: 0x16_b374d848n, lagMs: 0 });
  assert.deepEqual(probeResultFromRow(['t', '0/3000060', '1250']), { inRecovery: true, lsn: 0x3000060n, lagMs: 1250 });
  assert.deepEqual(probeResultFromRow(['t', null, null]), { inRecovery: true, lsn: null, lagMs: null });
  assert.equal(probeResultFromRow(['t', '0/1', '-3']).lagMs, 0, 'clock skew never gives a negative lag');
  assert.equal(probeResultFromRow(['t', '0/1', 'NaN']).lagMs, null);
  assert.equal(probeResultFromRow(['true', '0/1', '0']).inRecovery, false, 'only the server\'s t is true');
  assert.throws(() => probeResultFromRow(undefined), /no row/);
  assert.throws(() => probeResultFromRow(['t', '0/1']), /no row/);
  assert.throws(() => probeResultFromRow(['f', 'not-an-lsn', '0']), /invalid LSN/);
});

test('PROBE_SQL is one SELECT of three columns: recovery, position, replay delay', async () => {
  await loadModule();
  const stmts = parseSync(PROBE_SQL).stmts ?? [];
  assert.equal(stmts.length, 1);
  const select = (stmts[0]!.stmt as { SelectStmt?: { targetList?: unknown[] } }).SelectStmt;
  assert.ok(select, 'a SELECT');
  assert.equal(select.targetList?.length, 3);
  for (const name of ['pg_is_in_recovery', 'pg_last_wal_replay_lsn', 'pg_current_wal_lsn', 'pg_last_xact_replay_timestamp', 'pg_last_wal_receive_lsn']) {
    assert.ok(PROBE_SQL.includes(`pg_catalog.${name}()`), name);
  }
});
