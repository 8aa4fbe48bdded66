// pgbench's report parser and the run/failure rules, on output captured from pgbench 15.18
// (Debian) against the bench cluster.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePgbenchOutput, pgbenchArgs, pgbenchDurationS, pgbenchProblem, stderrExcerpt, WORKLOADS } from '../../../bench/pgbench.ts';

const SELECT_ONLY_SIMPLE = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 57185
number of failed transactions: 0 (0.000%)
latency average = 0.139 ms
initial connection time = 21.978 ms
tps = 28878.644045 (without initial connection time)
`;

// A script failing on every client: pgbench aborts the clients, exits 2, and still prints a report
// whose "failed transactions" is 0.
const ABORTED_STDOUT = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/benchscratch/bad.sql
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
`;
const ABORTED_STDERR = `pgbench: error: client 1 script 0 aborted in command 0 query 0: ERROR:  relation "no_such_table" does not exist
LINE 1: SELECT * FROM no_such_table;
                      ^
pgbench: error: client 0 script 0 aborted in command 0 query 0: ERROR:  relation "no_such_table" does not exist
LINE 1: SELECT * FROM no_such_table;
                      ^
pgbench: error: Run was aborted; the above results are incomplete.
`;

test('a clean select-only report parses into its numbers and counts as a run', () => {
  const summary = parsePgbenchOutput(SELECT_ONLY_SIMPLE, '');
  assert.deepEqual(summary, {
    tps: 28878.644045,
    latencyAvgMs: 0.139,
    initialConnectionMs: 21.978,
    transactions: 57185,
    failed: 0,
    abortedClients: 0,
    runAborted: false,
    queryMode: 'simple',
    clients: 4,
    threads: 2,
    errors: [],
  });
  assert.equal(pgbenchProblem(0, summary), null);
});

test('aborted clients make the run fail even though "failed transactions" is 0', () => {
  const summary = parsePgbenchOutput(ABORTED_STDOUT, ABORTED_STDERR);
  assert.equal(summary.tps, null);
  assert.equal(summary.transactions, 0);
  assert.equal(summary.failed, 0);
  assert.equal(summary.abortedClients, 2);
  assert.equal(summary.runAborted, true);
  assert.equal(summary.errors.length, 3);
  assert.match(pgbenchProblem(2, summary) ?? '', /^2 client\(s\) aborted: .*no_such_table/);
});

test('failed transactions, a non-zero exit, or a missing tps line each fail a run', () => {
  const clean = parsePgbenchOutput(SELECT_ONLY_SIMPLE, '');
  assert.equal(pgbenchProblem(0, { ...clean, failed: 3 }), '3 failed transaction(s)');
  assert.match(pgbenchProblem(1, clean) ?? '', /exited with 1/);
  assert.match(pgbenchProblem(0, { ...clean, tps: null }) ?? '', /no "tps = \.\.\." line/);
  assert.equal(pgbenchProblem(0, { ...clean, transactions: 0 }), 'pgbench processed no transactions');
});

test('a connection failure (nothing on stdout) is not a run', () => {
  const stderr = 'pgbench: error: connection to server at "127.0.0.1", port 1 failed: Connection refused\n';
  const summary = parsePgbenchOutput('', stderr);
  assert.equal(summary.tps, null);
  assert.match(pgbenchProblem(1, summary) ?? '', /exited with 1: pgbench: error: connection to server/);
});

test('measured runs keep one connection per client, skip vacuum, pass the mode and log every transaction', () => {
  const options = {
    endpoint: { host: '127.0.0.1', port: 6000, user: 'app', password: 'secret', database: 'app' },
    workload: WORKLOADS.find((w) => w.name === 'select-only')!,
    mode: 'prepared' as const,
    clients: 32,
    threads: 2,
    durationS: 15,
    logPrefix: '/tmp/x/pgbench_log',
  };
  const args = pgbenchArgs(options);
  assert.deepEqual(args, [
    '-h', '127.0.0.1', '-p', '6000', '-U', 'app', '-S', '-M', 'prepared', '-c', '32', '-j', '2', '-T', '15', '--no-vacuum',
    '-l', '--log-prefix=/tmp/x/pgbench_log', 'app',
  ]);
  assert.ok(!args.includes('-C'));
  assert.ok(!args.includes('secret'), 'the password travels in PGPASSWORD, not argv');
  // One client gets one thread; without a log prefix there is no log; TPC-B-like is the default script (no -S).
  const tpcb = pgbenchArgs({ ...options, workload: WORKLOADS.find((w) => w.name === 'tpcb')!, clients: 1, logPrefix: undefined });
  assert.deepEqual(tpcb.slice(6, 14), ['-M', 'prepared', '-c', '1', '-j', '1', '-T', '15']);
  assert.ok(!tpcb.includes('-l') && !tpcb.includes('-S'));
});

test('many clients get a second per hundred for connecting, counted in -T but not in tps', () => {
  assert.equal(pgbenchDurationS(10, 1), 10);
  assert.equal(pgbenchDurationS(10, 32), 10);
  assert.equal(pgbenchDurationS(10, 256), 12);
  assert.equal(pgbenchDurationS(1, 256), 3);
});

test('workloads: select-only at 1, 32, 256 clients, the rest at 32; split ones are their own kind', () => {
  assert.deepEqual(
    WORKLOADS.map((w) => `${w.name}:${w.kind}:${w.args.join(' ')}:${w.modes.join('/')}:${w.defaultClients.join('/')}`),
    [
      'select-only:plain:-S:simple/extended/prepared:1/32/256',
      'tpcb:plain::simple/prepared:32',
      'split-select-only:split:-S:simple/extended/prepared:32',
      'split-tpcb:split::simple/prepared:32',
    ],
  );
});

test('stderr excerpt: null when empty, kept whole when short, cut with a count when long', () => {
  assert.equal(stderrExcerpt(''), null);
  assert.equal(stderrExcerpt(' \n'), null);
  assert.equal(stderrExcerpt(`${ABORTED_STDERR}\n`), ABORTED_STDERR.trim());
  const long = 'x'.repeat(50);
  assert.equal(stderrExcerpt(long, 20), `${'x'.repeat(20)}\n… (30 more characters)`);
});
