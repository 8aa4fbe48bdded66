// The soak's verdict: growth is the median of the last third of the samples after warm-up against
// the median of the first third; unexpected errors, client sockets left over, uncommitted rows and
// problems of the run fail it too.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { growthVerdict, growthWindows, soakVerdict, TOLERANCE, type Growth, type ResourcePoint } from '../../../soak/verdict.ts';

const MIB = 2 ** 20;

/** Samples every 5 s over `durationS`, RSS and fds from functions of the time. */
function samples(durationS: number, rssMiB: (tS: number) => number, fds: (tS: number) => number, handles: ((tS: number) => number) | null = null): ResourcePoint[] {
  const points: ResourcePoint[] = [];
  for (let tS = 5; tS <= durationS; tS += 5) points.push({ tS, rssBytes: rssMiB(tS) * MIB, fds: fds(tS), activeHandles: handles === null ? null : handles(tS) });
  return points;
}

test('warm-up is the first 20%; the thirds come from the samples after it', () => {
  const points = samples(600, () => 100, () => 50);
  const { warmupEndS, first, last } = growthWindows(points, 600);
  assert.equal(warmupEndS, 120);
  // 96 samples after warm-up (125..600 s): thirds of 32.
  assert.equal(first.length, 32);
  assert.equal(first[0]!.tS, 125);
  assert.equal(first[31]!.tS, 280);
  assert.equal(last.length, 32);
  assert.equal(last[0]!.tS, 445);
  assert.equal(last[31]!.tS, 600);
});

test('flat after a warm-up that grew: pass', () => {
  const growth = growthVerdict(samples(600, (t) => (t < 100 ? 50 + t : 170), (t) => (t < 60 ? 20 + t / 3 : 60)), 600);
  assert.equal(growth.ok, true);
  assert.deepEqual(growth.checks.map((check) => [check.metric, check.ok]), [['rss', true], ['fds', true]]);
  assert.equal(growth.afterWarmup?.rssBytes, 170 * MIB);
  assert.equal(growth.last?.fds, 60);
});

test('RSS within 10% passes, beyond fails; a spike in one sample does not move the median', () => {
  const within = growthVerdict(samples(600, (t) => 100 + (t > 400 ? 9 : 0), () => 40), 600);
  assert.equal(within.ok, true);
  const spiky = growthVerdict(samples(600, (t) => (t === 500 ? 400 : 100), () => 40), 600);
  assert.equal(spiky.ok, true);
  const leaking = growthVerdict(samples(600, (t) => 100 + t / 20, () => 40), 600);
  assert.equal(leaking.ok, false);
  const rss = leaking.checks.find((check) => check.metric === 'rss')!;
  assert.equal(rss.ok, false);
  assert.equal(rss.limit, rss.afterWarmup * (1 + TOLERANCE.rssRelative));
});

test('fds: +5 passes, +6 fails', () => {
  assert.equal(growthVerdict(samples(600, () => 100, (t) => (t > 400 ? 45 : 40)), 600).ok, true);
  const grew = growthVerdict(samples(600, () => 100, (t) => (t > 400 ? 46 : 40)), 600);
  assert.equal(grew.ok, false);
  assert.deepEqual(grew.checks.map((check) => check.ok), [true, false]);
});

test('Node handles are judged when most samples have them, like fds', () => {
  const leaking = growthVerdict(samples(600, () => 100, () => 40, (t) => 30 + Math.floor(t / 30)), 600);
  assert.deepEqual(leaking.checks.map((check) => [check.metric, check.ok]), [['rss', true], ['fds', true], ['activeHandles', false]]);
  const sparse = samples(600, () => 100, () => 40, () => 30).map((point, index) => (index % 3 === 0 ? point : { ...point, activeHandles: null }));
  assert.deepEqual(growthVerdict(sparse, 600).checks.map((check) => check.metric), ['rss', 'fds'], 'handles left out when most scrapes failed');
});

test('too few samples after warm-up: no comparison, and the verdict fails', () => {
  const growth = growthVerdict(samples(10, () => 100, () => 40), 10);
  assert.equal(growth.ok, false);
  assert.match(growth.problem ?? '', /too few samples/);
  assert.deepEqual(soakVerdict({ growth, unexpectedErrors: 0, clientSocketsLeft: 0, uncommittedRowsFound: 0, ambassadorDied: null, problems: [] }).reasons, [growth.problem]);
});

test('the verdict lists every reason; none is a pass', () => {
  const growth: Growth = growthVerdict(samples(600, () => 100, () => 40), 600);
  const clean = { growth, unexpectedErrors: 0, clientSocketsLeft: 0, uncommittedRowsFound: 0, ambassadorDied: null, problems: [] };
  assert.deepEqual(soakVerdict(clean), { ok: true, reasons: [] });
  const bad = soakVerdict({ ...clean, unexpectedErrors: 3, clientSocketsLeft: 2, uncommittedRowsFound: 1, ambassadorDied: 'exit code 1\nstack', problems: ['restart of replica1 failed: x'] });
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.reasons, [
    'the ambassador died: exit code 1',
    '3 unexpected error(s)',
    '2 client socket(s) still open in the ambassador after every client closed',
    '1 row(s) of transactions that never committed are in the table',
    'restart of replica1 failed: x',
  ]);
  const unknown = soakVerdict({ ...clean, clientSocketsLeft: null, uncommittedRowsFound: null });
  assert.deepEqual(unknown.reasons, ['client sockets after the load: not measured', 'rows of uncommitted transactions: not checked']);
  const grew = soakVerdict({ ...clean, growth: growthVerdict(samples(600, (t) => 100 + t / 10, () => 40), 600) });
  assert.match(grew.reasons[0]!, /^rss grew: median \d+\.\d MiB after warm-up, \d+\.\d MiB in the last third \(limit \d+\.\d MiB\)$/);
});
