// The bench's summaries: per-group medians and per-round ratios against the baseline, the named
// comparisons (tps, CPU, p99, latency added over direct), scaling between client counts, CPU per
// transaction and /proc parsing.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { clockTicksPerSecond, parseMachineTicks, parseProcStat, parseVmRssBytes, readCpuSeconds, readCpuTimes, readServerCpu, serverTicks, type ProcSource, type ProcStat } from '../../../bench/proc.ts';
import { cpuMicrosPerTransaction, pairRatios, summarize, summarizeScaling } from '../../../bench/report.ts';
import { COMPARED, row } from './rows.ts';

test('CPU µs per transaction', () => {
  assert.equal(cpuMicrosPerTransaction(2.5, 100_000), 25);
  assert.equal(cpuMicrosPerTransaction(null, 100_000), null);
  assert.equal(cpuMicrosPerTransaction(1, 0), null);
});

test('ratios pair each round with the baseline of the same round, skipping failed runs', () => {
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 500),
    row(2, 'direct', 2000), row(2, 'ambassador', 1500),
    row(3, 'direct', 1000), row(3, 'ambassador', null),
    row(4, 'direct', null), row(4, 'ambassador', 900),
  ];
  assert.deepEqual(pairRatios(rows, 'ambassador', 'direct'), [0.5, 0.75]);
});

test('summary: groups by workload, mode and clients; median of per-round ratios (not ratio of medians); CPU, RSS, latencies of ok runs only', () => {
  const MiB = 2 ** 20;
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 900, { cpuUsPerTxn: 30, userCpuUsPerTxn: 9, rssBytes: 60 * MiB, latencyP99Ms: 3 }),
    row(2, 'direct', 3000), row(2, 'ambassador', 600, { cpuUsPerTxn: 50, userCpuUsPerTxn: 20, rssBytes: 70 * MiB, latencyP99Ms: 5 }),
    row(3, 'direct', 2000), row(3, 'ambassador', 1000, { cpuUsPerTxn: 40, userCpuUsPerTxn: 11, rssBytes: 65 * MiB, latencyP99Ms: 4 }),
    row(4, 'direct', 2000), row(4, 'ambassador', null, { cpuUsPerTxn: 999, userCpuUsPerTxn: 999, rssBytes: 999 * MiB, latencyP99Ms: 999 }),
    row(1, 'direct', 100, { mode: 'prepared' }), row(1, 'ambassador', 50, { mode: 'prepared' }),
    row(1, 'direct', 100, { clients: 256 }), row(1, 'ambassador', 20, { clients: 256 }),
  ];
  const [simple, prepared, wide] = summarize(rows, 'direct');
  assert.deepEqual([simple!.mode, prepared!.mode, wide!.clients], ['simple', 'prepared', 256]);
  const [direct, ambassador] = simple!.targets;
  assert.equal(direct!.target, 'direct');
  assert.equal(direct!.medianTps, 2000);
  assert.equal(direct!.medianRatio, null);
  assert.deepEqual(direct!.ratios, []);
  assert.equal(ambassador!.medianTps, 900);
  assert.deepEqual(ambassador!.ratios, [0.9, 0.2, 0.5]);
  assert.equal(ambassador!.medianRatio, 0.5); // the ratio of medians would be 0.45
  assert.equal(ambassador!.medianCpuUsPerTxn, 40);
  assert.equal(ambassador!.medianUserCpuUsPerTxn, 11);
  assert.equal(direct!.medianUserCpuUsPerTxn, null);
  assert.equal(ambassador!.medianLatencyP99Ms, 4);
  assert.ok(Math.abs(ambassador!.medianLatencyMeanMs! - 32_000 / 900) < 1e-9);
  assert.equal(ambassador!.maxRssBytes, 70 * MiB);
  assert.equal(ambassador!.runs, 4);
  assert.equal(ambassador!.okRuns, 3);
  assert.equal(prepared!.targets[1]!.medianRatio, 0.5);
  assert.equal(wide!.targets[1]!.medianRatio, 0.2);
});

test('comparisons: per-round pairs of named targets, only in groups where both ran, with CPU and p99 ratios', () => {
  const prepared = { mode: 'prepared' };
  const rows = [
    row(1, 'direct', 1000), row(1, 'ambassador', 500), row(1, 'ambassador-txn', 600, { cpuUsPerTxn: 60 }), row(1, 'pgbouncer', 800, { cpuUsPerTxn: 20 }),
    row(2, 'direct', 1000), row(2, 'ambassador', 700), row(2, 'ambassador-txn', null), row(2, 'pgbouncer', 900, { cpuUsPerTxn: 20 }),
    row(3, 'direct', 1000), row(3, 'ambassador', 600), row(3, 'ambassador-txn', 500, { cpuUsPerTxn: 40 }), row(3, 'pgbouncer', 1000, { cpuUsPerTxn: 20 }),
    row(1, 'direct', 2000, prepared), row(1, 'ambassador-txn', 100, prepared), row(1, 'pgbouncer-session', 1000, prepared),
  ];
  const [simple, prep] = summarize(rows, 'direct', { comparisons: COMPARED, latencyReference: 'direct' });
  assert.deepEqual(simple!.comparisons.map((c) => `${c.numerator}/${c.denominator}`), ['ambassador/direct', 'ambassador-txn/pgbouncer']);
  const txn = simple!.comparisons[1]!;
  assert.deepEqual(txn.ratios, [0.75, 0.5]);
  assert.equal(txn.medianRatio, 0.625);
  assert.equal(txn.rounds, 3);
  assert.equal(txn.note, 'same pool mode (transaction)');
  assert.deepEqual(txn.cpu, { ratios: [3, 2], median: 2.5 });
  // p99 = 100000 / tps in these rows, so the p99 ratio is the inverse of the tps ratio.
  assert.deepEqual(txn.p99.ratios.map((ratio) => Number(ratio.toFixed(6))), [1.333333, 2]);
  assert.equal(txn.addedLatency, null, 'latency added over direct is a 1-client measure');
  assert.equal(simple!.comparisons[0]!.medianRatio, 0.6);
  // In prepared mode there is no ambassador and no transaction-mode pgbouncer.
  assert.deepEqual(prep!.comparisons.map((c) => `${c.numerator}/${c.denominator}`), ['ambassador-txn/pgbouncer-session']);
  assert.deepEqual(prep!.comparisons[0]!.ratios, [0.1]);
  assert.deepEqual(prep!.comparisons[0]!.cpu, { ratios: [], median: null }, 'no CPU reading, no CPU ratio');
  assert.equal(prep!.targets.find((t) => t.target === 'pgbouncer-session')!.medianRatio, 0.5);
  assert.deepEqual(summarize(rows, 'direct').map((group) => group.comparisons), [[], []]);
});

test('latency added over direct: in 1-client groups where direct ran, for pairs without direct', () => {
  const one = { clients: 1 };
  const rows = [
    row(1, 'direct', 1000, { ...one, latencyMeanMs: 0.1 }), row(1, 'ambassador', 500, { ...one, latencyMeanMs: 0.2 }),
    row(1, 'ambassador-txn', 600, { ...one, latencyMeanMs: 0.16 }), row(1, 'pgbouncer', 800, { ...one, latencyMeanMs: 0.15 }),
    row(2, 'direct', 1000, { ...one, latencyMeanMs: 0.1 }), row(2, 'ambassador', 500, { ...one, latencyMeanMs: 0.2 }),
    row(2, 'ambassador-txn', 600, { ...one, latencyMeanMs: 0.15 }), row(2, 'pgbouncer', 800, { ...one, latencyMeanMs: 0.125 }),
  ];
  const [group] = summarize(rows, 'direct', { comparisons: COMPARED, latencyReference: 'direct' });
  const [sessionVsDirect, txnVsPgbouncer] = group!.comparisons;
  assert.equal(sessionVsDirect!.addedLatency, null, 'a pair with direct in it has nothing to divide');
  assert.deepEqual(txnVsPgbouncer!.addedLatency!.ratios.map((ratio) => Number(ratio.toFixed(9))), [1.2, 2]);
  assert.equal(Number(txnVsPgbouncer!.addedLatency!.median!.toFixed(9)), 1.6);
  const withoutDirect = summarize(rows.filter((r) => r.target !== 'direct'), 'ambassador', { comparisons: COMPARED, latencyReference: 'direct' });
  assert.equal(withoutDirect[0]!.comparisons[0]!.addedLatency, null);
});

test('scaling: each target at its highest client count against the next highest, with the failures at the highest', () => {
  const rows = [
    row(1, 'ambassador-txn', 900, { clients: 1 }), row(1, 'ambassador-txn', 1000, { clients: 32 }), row(1, 'ambassador-txn', 950, { clients: 256 }),
    row(2, 'ambassador-txn', 900, { clients: 1 }), row(2, 'ambassador-txn', 1000, { clients: 32 }),
    row(2, 'ambassador-txn', null, { clients: 256, failedTransactions: 3, abortedClients: 2 }),
    row(3, 'ambassador-txn', 1000, { clients: 32 }), row(3, 'ambassador-txn', 850, { clients: 256 }),
    row(1, 'pgbouncer', 800, { clients: 32 }),
    row(1, 'ambassador-txn', 500, { clients: 32, mode: 'prepared' }), row(1, 'ambassador-txn', 600, { clients: 256, mode: 'prepared' }),
  ];
  const scaling = summarizeScaling(rows);
  assert.deepEqual(scaling.map((s) => `${s.target} ${s.mode} ${s.toClients}/${s.fromClients}`), ['ambassador-txn simple 256/32', 'ambassador-txn prepared 256/32']);
  const [simple, prepared] = scaling;
  assert.deepEqual(simple!.ratios, [0.95, 0.85]);
  assert.equal(simple!.medianRatio, 0.8999999999999999);
  assert.equal(simple!.runsAtTo, 3);
  assert.equal(simple!.failedRunsAtTo, 1);
  assert.equal(simple!.failedTransactionsAtTo, 3);
  assert.equal(simple!.abortedClientsAtTo, 2);
  assert.deepEqual(prepared!.ratios, [1.2]);
  assert.equal(prepared!.failedRunsAtTo, 0);
});

test('/proc/<pid>/stat: utime and stime counted from the last ")" of the command name', () => {
  // Captured from a running node process, with the command name replaced by a hostile one.
  const stat = '4242 (no de) (x)) S 1 4242 4242 0 -1 4194560 20960 0 0 0 1234 567 0 0 20 0 11 0 93012 1195626496 14318 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0';
  const { utime, stime } = parseProcStat(stat);
  assert.deepEqual({ utime, stime }, { utime: 1234, stime: 567 });
  assert.throws(() => parseProcStat('garbage'), /unexpected/);
});

test('/proc/<pid>/stat: the parent and the times of the process and of its reaped children', () => {
  const stat = '4242 (post (gres)) S 77 4242 4242 0 -1 4194560 20960 0 0 0 1234 567 89 12 20 0 11 0 93012 1195626496 14318';
  assert.deepEqual(parseProcStat(stat), { state: 'S', ppid: 77, utime: 1234, stime: 567, cutime: 89, cstime: 12 });
  assert.throws(() => parseProcStat('4242 (x) S 77 1 2'), /no ppid/);
});

/** A process table for serverTicks: pid -> [ppid, utime, stime, cutime, cstime]. */
function table(entries: Record<number, [number, number, number, number, number]>): Map<number, ProcStat> {
  return new Map(Object.entries(entries).map(([pid, [ppid, utime, stime, cutime, cstime]]) => [Number(pid), { state: 'S', ppid, utime, stime, cutime, cstime }]));
}

test('server CPU: every process under each postmaster, at any depth, with what it reaped; nothing else', () => {
  const before = table({
    100: [1, 10, 5, 7, 3], // a postmaster
    101: [100, 20, 4, 0, 0], // its backends
    102: [100, 1, 1, 2, 1], // one that reaped a child of its own (an archive_command)
    103: [102, 4, 4, 0, 0], // that one's live child
    200: [1, 500, 500, 9, 9], // the proxy
    201: [200, 50, 50, 0, 0], // and its child
    300: [1, 2, 2, 0, 0], // a replica's postmaster
    301: [300, 6, 1, 0, 0],
  });
  assert.deepEqual(serverTicks([100, 300], before), { user: 17 + 20 + 3 + 4 + 2 + 6, total: 25 + 24 + 5 + 8 + 4 + 7 });
  // Backend 101 ran 10 + 2 more ticks and exited (the postmaster reaped it: 30 + 6 into its
  // children's times), and so did 103 (2 + 0 more, into 102's); 104 started and ran 3 + 1; the
  // proxy's ticks never count.
  const after = table({
    100: [1, 11, 5, 7 + 30, 3 + 6], 102: [100, 1, 1, 2 + 6, 1 + 4], 104: [100, 3, 1, 0, 0], 200: [1, 900, 900, 9, 9], 201: [200, 90, 90, 0, 0],
    300: [1, 2, 2, 0, 0], 301: [300, 6, 1, 0, 0],
  });
  const [was, is] = [serverTicks([100, 300], before), serverTicks([100, 300], after)];
  assert.deepEqual({ user: is.user - was.user, total: is.total - was.total }, { user: 1 + 10 + 2 + 3, total: 1 + 12 + 2 + 4 });
});

test('server CPU: a backend reaped while the others were being read is not lost; the reading is taken again', () => {
  const stat = (pid: number, [ppid, utime, stime, cutime, cstime]: number[]): string => `${pid} (postgres) S ${ppid} 0 0 0 -1 0 0 0 0 0 ${utime} ${stime} ${cutime} ${cstime} 20 0 1 0`;
  // The postmaster (100) reaps backend 101 (20 + 4 ticks) after the scan read it as live, before
  // the postmaster is read again: taken as it is, that reading would count 101 twice.
  let reads = 0;
  const source: ProcSource = {
    list: () => ['100', '101', '102', 'self'],
    stat: (pid) => {
      reads++;
      const gone = reads > 4; // the root, then 100, 101 and 102 in the scan, then 101 exits
      if (pid === 100) return stat(100, gone ? [1, 10, 5, 20, 4] : [1, 10, 5, 0, 0]);
      if (pid === 101 && gone) throw new Error('ENOENT');
      if (pid === 101) return stat(101, [100, 20, 4, 0, 0]);
      return stat(102, [100, 1, 1, 0, 0]);
    },
  };
  const ticks = clockTicksPerSecond();
  const reading = readServerCpu([100], source);
  assert.deepEqual({ user: reading.user * ticks, total: reading.total * ticks }, { user: 10 + 20 + 1, total: 15 + 24 + 2 });
});

test('server CPU read from /proc: a live child and a reaped one count toward their parent; a root that is gone throws', async () => {
  // A fixed amount of work with no system call per step, then the child's own user CPU (µs) on stdout.
  const spin = 'let x = 0; for (let i = 0; i < 150e6; i++) x = (x * 31 + i) % 1000003; process.stdout.write(`${process.cpuUsage().user} ${x}\\n`);';
  const before = readServerCpu([process.pid]);
  const own = readCpuTimes(process.pid);
  const reapedUser = Number(spawnSync(process.execPath, ['-e', spin], { encoding: 'utf8' }).stdout.split(' ')[0]) / 1e6;
  const live = spawn(process.execPath, ['-e', `${spin} setInterval(() => {}, 1000);`]);
  try {
    const [line] = (await once(live.stdout, 'data', { signal: AbortSignal.timeout(60_000) })) as [Buffer];
    const liveUser = Number(line.toString().split(' ')[0]) / 1e6;
    const after = readServerCpu([process.pid]);
    const ownUser = readCpuTimes(process.pid).user - own.user;
    const childrenUser = after.user - before.user - ownUser;
    // Both children's user time, give or take what each ran after reporting it (its write, its
    // exit) and /proc's 10 ms ticks; a child missed or counted twice is off by a whole spin.
    assert.ok(reapedUser > 0.4 && liveUser > 0.4, `children reported ${reapedUser} and ${liveUser} s`);
    assert.ok(Math.abs(childrenUser - (reapedUser + liveUser)) < 0.2, `counted ${childrenUser} s of children's user time, they reported ${reapedUser} + ${liveUser}`);
    // System time never goes back. The readings are ticks / CLK_TCK in floating point, so with no
    // system tick in between the two differences can still differ by rounding: allow half a tick.
    const systemTicks = ((after.total - before.total) - (after.user - before.user)) * clockTicksPerSecond();
    assert.ok(systemTicks > -0.5, `system time went back by ${-systemTicks} ticks`);
  } finally {
    live.kill();
  }
  assert.throws(() => readServerCpu([live.pid!, 2 ** 22 + 1]), /ENOENT|exited/);
});

test('/proc/stat: idle (idle + iowait) and all of the machine\'s CPU ticks', () => {
  const stat = 'cpu  100 5 50 800 20 3 7 15 4 0\ncpu0 50 2 25 400 10 1 3 7 2 0\nintr 12345\n';
  assert.deepEqual(parseMachineTicks(stat), { idle: 820, all: 1000 });
  assert.throws(() => parseMachineTicks('intr 1\n'), /no cpu line/);
});

test('/proc/<pid>/stat read: user time apart from system time, both in seconds', () => {
  const before = readCpuTimes(process.pid);
  // Work in user mode only until the kernel has charged this process 100 ms more of it.
  const start = process.cpuUsage().user;
  let spin = 0;
  while (process.cpuUsage().user - start < 100_000) for (let i = 0; i < 1_000_000; i++) spin = (spin * 31 + i) % 1_000_003;
  assert.ok(spin >= 0);
  const after = readCpuTimes(process.pid);
  assert.ok(after.user - before.user >= 0.05, `user time went from ${before.user} to ${after.user} s`);
  assert.ok(after.system >= before.system && after.system - before.system < after.user - before.user);
  const total = readCpuSeconds(process.pid);
  assert.ok(total >= after.user + after.system && total - (after.user + after.system) < 0.05);
});

test('/proc/<pid>/status: VmRSS in bytes', () => {
  const status = 'Name:\tnode\nVmPeak:\t 1200000 kB\nVmRSS:\t   57272 kB\nRssAnon:\t   30000 kB\n';
  assert.equal(parseVmRssBytes(status), 57272 * 1024);
  assert.throws(() => parseVmRssBytes('Name:\tzombie\n'), /no VmRSS/);
});
