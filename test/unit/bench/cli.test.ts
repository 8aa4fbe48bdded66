// The bench's command line and the work it implies: groups of (workload, clients, mode) and the
// targets each runs back to back. By default pgbouncer (transaction pooling, 1.18) runs without
// -M prepared and pgbouncer-session stands in for it there; ambassador-split runs only the split
// workloads, with direct and the pgbouncers as its partners.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { estimateSeconds, memoryTargets, parseCli, runGroups, targetModes, type BenchOptions } from '../../../bench/cli.ts';
import { ROOT } from '../../../bench/targets.ts';

function parsed(argv: string[]): BenchOptions {
  const options = parseCli(argv);
  assert.ok(options);
  return options;
}

/** "workload mode ×clients" -> targets, in run order. */
function plan(options: BenchOptions): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const group of runGroups(options)) out[`${group.workload.name} ${group.mode} ×${group.clients}`] = group.targets.map((target) => target.name);
  return out;
}

const PLAIN = {
  simple: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer'],
  extended: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer'],
  prepared: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer-session'],
};
/**
 * select-only adds node-pipe (Node's net streams), node-pool (a minimal pooler on Node, no -M
 * prepared) and in extended protocol ambassador-txn-cached.
 */
const SELECT_ONLY = {
  simple: [...PLAIN.simple, 'node-pipe', 'node-pool'],
  extended: ['direct', 'ambassador', 'ambassador-txn', 'ambassador-txn-cached', 'pgbouncer', 'node-pipe', 'node-pool'],
  prepared: [...PLAIN.prepared, 'node-pipe'],
};
const SPLIT = {
  simple: ['direct', 'ambassador-split', 'pgbouncer'],
  extended: ['direct', 'ambassador-split', 'pgbouncer'],
  prepared: ['direct', 'ambassador-split', 'pgbouncer-session'],
};

test('defaults: 10 s x 3 rounds, select-only at 1, 32, 256 clients, TPC-B and split at 32, memory last, results in bench/results', () => {
  const options = parsed([]);
  assert.equal(options.durationS, 10);
  assert.equal(options.repeats, 3);
  assert.equal(options.poolSize, 20);
  assert.equal(options.clients, null);
  assert.equal(options.memory, true);
  assert.equal(options.memoryClients, 10_000);
  assert.equal(options.outDir, path.join(ROOT, 'bench', 'results'));
  assert.deepEqual(options.workloads.map((w) => w.name), ['select-only', 'tpcb', 'split-select-only', 'split-tpcb']);
  assert.deepEqual(plan(options), {
    'select-only simple ×1': SELECT_ONLY.simple, 'select-only extended ×1': SELECT_ONLY.extended, 'select-only prepared ×1': SELECT_ONLY.prepared,
    'select-only simple ×32': SELECT_ONLY.simple, 'select-only extended ×32': SELECT_ONLY.extended, 'select-only prepared ×32': SELECT_ONLY.prepared,
    'select-only simple ×256': SELECT_ONLY.simple, 'select-only extended ×256': SELECT_ONLY.extended, 'select-only prepared ×256': SELECT_ONLY.prepared,
    'tpcb simple ×32': PLAIN.simple, 'tpcb prepared ×32': PLAIN.prepared,
    'split-select-only simple ×32': SPLIT.simple, 'split-select-only extended ×32': SPLIT.extended, 'split-select-only prepared ×32': SPLIT.prepared,
    'split-tpcb simple ×32': SPLIT.simple, 'split-tpcb prepared ×32': SPLIT.prepared,
  });
  assert.deepEqual(memoryTargets(options).map((t) => t.name), ['ambassador-txn', 'pgbouncer']);
});

test('the default run fits in about 45 minutes, --quick in about 17', () => {
  const full = estimateSeconds(parsed([])) / 60;
  const quick = estimateSeconds(parsed(['--quick'])) / 60;
  assert.ok(full > 25 && full <= 45, `default: ${full.toFixed(1)} min`);
  assert.ok(quick > 5 && quick <= 18, `quick: ${quick.toFixed(1)} min`);
  assert.ok(estimateSeconds(parsed(['--workloads', 'tpcb'])) < estimateSeconds(parsed(['--workloads', 'tpcb,select-only'])));
});

test('--clients applies to every workload; --workloads selects and keeps the table order', () => {
  const options = parsed(['--clients', '8,64,8', '--workloads', 'split-tpcb,select-only', '--modes', 'simple']);
  assert.deepEqual(options.clients, [8, 64]);
  assert.equal(options.memory, false);
  assert.deepEqual(memoryTargets(options), []);
  assert.deepEqual(plan(options), {
    'select-only simple ×8': SELECT_ONLY.simple, 'select-only simple ×64': SELECT_ONLY.simple,
    'split-tpcb simple ×8': SPLIT.simple, 'split-tpcb simple ×64': SPLIT.simple,
  });
});

test('--memory runs only the memory bench; --memory-clients, --out, --quick, --repeat, --pool-size', () => {
  const memory = parsed(['--memory', '--memory-clients', '500', '--out', 'tmp/results']);
  assert.equal(memory.memory, true);
  assert.deepEqual(memory.workloads, []);
  assert.deepEqual(runGroups(memory), []);
  assert.equal(memory.memoryClients, 500);
  assert.equal(memory.outDir, path.resolve('tmp/results'));
  const quick = parsed(['--quick', '--pool-size', '8']);
  assert.equal(quick.durationS, 3);
  assert.equal(quick.repeats, 3);
  assert.equal(quick.poolSize, 8);
  assert.equal(parsed(['--quick', '--duration', '7', '--repeat', '4']).durationS, 7);
  assert.equal(parsed(['--quick', '--duration', '7', '--repeat', '4']).repeats, 4);
});

test('--targets keeps the order given (the first is the baseline) and runs each in every supported mode of its workloads', () => {
  const options = parsed(['--targets', 'pgbouncer-session,direct,pgbouncer', '--workloads', 'tpcb', '--clients', '4']);
  assert.equal(options.explicitTargets, true);
  assert.deepEqual(options.targets.map((t) => t.name), ['pgbouncer-session', 'direct', 'pgbouncer']);
  assert.deepEqual(targetModes(options.targets[0]!, options), ['simple', 'extended', 'prepared']);
  assert.deepEqual(plan(options), {
    'tpcb simple ×4': ['pgbouncer-session', 'direct', 'pgbouncer'],
    'tpcb prepared ×4': ['pgbouncer-session', 'direct'],
  });
  assert.deepEqual(parsed(['--targets', 'direct,direct']).targets.map((t) => t.name), ['direct']);
});

test('--against REF adds ambassador-txn built from REF right after ambassador-txn, in every group it runs in', () => {
  const all = parsed(['--against', 'HEAD~1', '--workloads', 'select-only', '--clients', '32']);
  assert.equal(all.against, 'HEAD~1');
  assert.deepEqual(plan(all)['select-only prepared ×32'], ['direct', 'ambassador', 'ambassador-txn', 'ambassador-txn-old', 'pgbouncer-session', 'node-pipe']);
  assert.deepEqual(
    plan(all)['select-only extended ×32'],
    ['direct', 'ambassador', 'ambassador-txn', 'ambassador-txn-old', 'ambassador-txn-cached', 'pgbouncer', 'node-pipe', 'node-pool'],
  );
  const old = all.targets.find((t) => t.name === 'ambassador-txn-old')!;
  assert.match(old.description, /built from --against HEAD~1/);
  // Named or not in --targets, it goes right after ambassador-txn.
  for (const named of ['pgbouncer,ambassador-txn', 'ambassador-txn-old,pgbouncer,ambassador-txn']) {
    const options = parsed(['--against', 'main', '--targets', named, '--workloads', 'tpcb']);
    assert.deepEqual(options.targets.map((t) => t.name), ['pgbouncer', 'ambassador-txn', 'ambassador-txn-old'], named);
    assert.deepEqual(plan(options)['tpcb prepared ×32'], ['ambassador-txn', 'ambassador-txn-old'], 'pgbouncer has no -M prepared; both builds run it');
  }
  assert.equal(parsed([]).against, null);
  assert.deepEqual(parsed([]).nodeOptions, []);
  assert.deepEqual(parsed(['--node-options=--perf-basic-prof  --max-semi-space-size=8']).nodeOptions, ['--perf-basic-prof', '--max-semi-space-size=8']);
  assert.ok(!parsed([]).targets.some((t) => t.name === 'ambassador-txn-old'), 'without --against there is no second build');
});

test('bad input is rejected with the reason', () => {
  assert.throws(() => parseCli(['--against', 'HEAD~1', '--targets', 'direct,pgbouncer']), /--against compares ambassador-txn with ambassador-txn-old: select ambassador-txn too/);
  assert.throws(() => parseCli(['--against', ' ']), /--against: give a git ref/);
  assert.throws(() => parseCli(['--node-options', ' ']), /--node-options: give node's options/);
  assert.throws(() => parseCli(['--node-options=--perf-basic-prof src/main.ts']), /each beginning with "-", got "--perf-basic-prof src\/main.ts"/);
  assert.throws(() => parseCli(['--targets', 'ambassador-txn-old']), /--targets: unknown "ambassador-txn-old"/);
  assert.throws(() => parseCli(['--pool-size', '0']), /--pool-size expects a positive integer, got "0"/);
  assert.throws(() => parseCli(['--clients', '1,x']), /--clients expects a positive integer, got "x"/);
  assert.throws(() => parseCli(['--targets', 'pgpool']), /--targets: unknown "pgpool"; expected some of direct, ambassador, ambassador-txn, ambassador-txn-cached, ambassador-split, pgbouncer, pgbouncer-session/);
  assert.throws(() => parseCli(['--workloads', 'copy']), /--workloads: unknown "copy"; expected some of select-only, tpcb, split-select-only, split-tpcb, memory/);
  assert.throws(() => parseCli(['--modes', 'copy']), /--modes: unknown "copy"/);
  assert.throws(() => parseCli(['--memory', '--workloads', 'tpcb']), /--memory is --workloads memory/);
  assert.throws(() => parseCli(['--targets', 'direct,pgbouncer', '--modes', 'prepared', '--workloads', 'select-only']), /pgbouncer has nothing to run: it runs plain and split workloads in simple, extended/);
  assert.throws(() => parseCli(['--targets', 'ambassador-split', '--workloads', 'select-only']), /ambassador-split has nothing to run/);
  assert.throws(() => parseCli(['--targets', 'direct', '--memory']), /direct has nothing to run/);
  assert.throws(() => parseCli(['--bogus']), /Unknown option/);
  assert.equal(parseCli(['--help']), null);
});
