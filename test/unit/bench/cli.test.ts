// The bench's command line and the target x query-mode matrix it implies: by default pgbouncer
// (transaction pooling, 1.18) runs without -M prepared and pgbouncer-session stands in for it there.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCli, targetModes, type BenchOptions } from '../../../bench/cli.ts';

function parsed(argv: string[]): BenchOptions {
  const options = parseCli(argv);
  assert.ok(options);
  return options;
}

function matrix(options: BenchOptions): Record<string, string[]> {
  const byMode: Record<string, string[]> = {};
  for (const mode of options.modes) byMode[mode] = options.targets.filter((target) => targetModes(target, options).includes(mode)).map((target) => target.name);
  return byMode;
}

test('defaults: 32 clients, pool size 20, 15 s x 3 rounds, every target in its default modes', () => {
  const options = parsed([]);
  assert.equal(options.clients, 32);
  assert.equal(options.poolSize, 20);
  assert.equal(options.durationS, 15);
  assert.equal(options.repeats, 3);
  assert.equal(options.explicitTargets, false);
  assert.deepEqual(options.targets.map((t) => t.name), ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer', 'pgbouncer-session']);
  assert.deepEqual(matrix(options), {
    simple: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer'],
    extended: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer'],
    prepared: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer-session'],
  });
});

test('--quick, --repeat, --pool-size, --modes', () => {
  const options = parsed(['--quick', '--repeat', '2', '--pool-size', '8', '--modes', 'prepared,simple']);
  assert.equal(options.durationS, 5);
  assert.equal(options.repeats, 2);
  assert.equal(options.poolSize, 8);
  assert.deepEqual(options.modes, ['prepared', 'simple']);
  assert.deepEqual(matrix(options), {
    prepared: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer-session'],
    simple: ['direct', 'ambassador', 'ambassador-txn', 'pgbouncer'],
  });
  assert.equal(parsed(['--quick', '--duration', '7']).durationS, 7);
});

test('--targets keeps the order given (the first is the baseline) and runs each in every supported mode', () => {
  const options = parsed(['--targets', 'pgbouncer-session,direct,pgbouncer']);
  assert.equal(options.explicitTargets, true);
  assert.deepEqual(options.targets.map((t) => t.name), ['pgbouncer-session', 'direct', 'pgbouncer']);
  assert.deepEqual(matrix(options), {
    simple: ['pgbouncer-session', 'direct', 'pgbouncer'],
    extended: ['pgbouncer-session', 'direct', 'pgbouncer'],
    prepared: ['pgbouncer-session', 'direct'],
  });
  assert.deepEqual(parsed(['--targets', 'direct,direct']).targets.map((t) => t.name), ['direct']);
});

test('bad input is rejected with the reason', () => {
  assert.throws(() => parseCli(['--pool-size', '0']), /--pool-size expects a positive integer, got "0"/);
  assert.throws(() => parseCli(['--targets', 'pgpool']), /--targets: unknown "pgpool"; expected some of direct, ambassador, ambassador-txn, pgbouncer, pgbouncer-session/);
  assert.throws(() => parseCli(['--modes', 'copy']), /--modes: unknown "copy"/);
  assert.throws(() => parseCli(['--targets', 'direct,pgbouncer', '--modes', 'prepared']), /pgbouncer runs in none of the selected modes \(prepared\); it supports simple, extended/);
  assert.throws(() => parseCli(['--bogus']), /Unknown option/);
  assert.equal(parseCli(['--help']), null);
});
