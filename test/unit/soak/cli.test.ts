// The soak's command line and how its clients are shared out over the kinds of work.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { DEFAULTS, parseSoakArgs, ROOT } from '../../../soak/cli.ts';
import { assignWorkers, MIN_CLIENTS, WORK_KINDS } from '../../../soak/kinds.ts';

test('defaults: 10 minutes, 12 clients, 2 replicas, results in soak/results, the seed from the clock', () => {
  const options = parseSoakArgs([], () => 1_700_000_000_123);
  assert.ok(options);
  assert.equal(options.minutes, 10);
  assert.equal(options.clients, 12);
  assert.equal(options.replicas, 2);
  assert.equal(options.sampleSeconds, 5);
  assert.equal(options.seed, 1_700_000_000_123 % 2 ** 31);
  assert.equal(options.outDir, path.join(ROOT, 'soak', 'results'));
  assert.deepEqual(options.workers, { short: 3, 'prepared-pg': 2, 'prepared-postgresjs': 2, 'long-txn': 2, 'big-result': 1, disconnect: 2 });
});

test('every option, and --help', () => {
  const options = parseSoakArgs(['--minutes', '0.5', '--clients', '20', '--seed', '42', '--replicas', '1', '--out', 'tmp/soak']);
  assert.ok(options);
  assert.equal(options.minutes, 0.5);
  assert.equal(options.clients, 20);
  assert.equal(options.seed, 42);
  assert.equal(options.replicas, 1);
  assert.equal(options.outDir, path.resolve('tmp/soak'));
  assert.equal(parseSoakArgs(['--help']), null);
  assert.equal(parseSoakArgs(['-h']), null);
});

test('bad values are refused with the option named', () => {
  assert.throws(() => parseSoakArgs(['--minutes', '0']), /--minutes expects a positive number, got "0"/);
  assert.throws(() => parseSoakArgs(['--minutes', 'ten']), /--minutes/);
  assert.throws(() => parseSoakArgs(['--minutes', '']), /--minutes/);
  assert.throws(() => parseSoakArgs(['--clients', String(MIN_CLIENTS - 1)]), /--clients expects an integer >= 6/);
  assert.throws(() => parseSoakArgs(['--clients', '12.5']), /--clients/);
  assert.throws(() => parseSoakArgs(['--replicas', '3']), /--replicas expects an integer from 1 to 2/);
  assert.throws(() => parseSoakArgs(['--seed', '-1']), /--seed/);
  assert.throws(() => parseSoakArgs(['--bogus']), /Unknown option '--bogus'/);
  assert.throws(() => parseSoakArgs(['extra']), /positional/);
});

test('clients: one of each kind, the rest by weight, always adding up', () => {
  assert.deepEqual(assignWorkers(MIN_CLIENTS), Object.fromEntries(WORK_KINDS.map((kind) => [kind, 1])));
  assert.deepEqual(assignWorkers(DEFAULTS.clients), { short: 3, 'prepared-pg': 2, 'prepared-postgresjs': 2, 'long-txn': 2, 'big-result': 1, disconnect: 2 });
  assert.deepEqual(assignWorkers(30), { short: 7, 'prepared-pg': 5, 'prepared-postgresjs': 5, 'long-txn': 5, 'big-result': 3, disconnect: 5 });
  for (let clients = MIN_CLIENTS; clients <= 200; clients++) {
    const counts = assignWorkers(clients);
    assert.equal(Object.values(counts).reduce((sum, count) => sum + count, 0), clients, `${clients} clients`);
    for (const kind of WORK_KINDS) assert.ok(counts[kind] >= 1, `${kind} at ${clients} clients`);
  }
  assert.throws(() => assignWorkers(MIN_CLIENTS - 1), /at least 6 clients/);
});
