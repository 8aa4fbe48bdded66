// Pieces of the soak report: a markdown row from its samples, the gauges from /metrics, the
// statements' literals, the 50 MiB result check, the restart plan, and the
// markdown as a whole.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderLiterals } from '../../../soak/connect.ts';
import { WrongAnswer } from '../../../soak/errors.ts';
import { WORK_KINDS } from '../../../soak/kinds.ts';
import { renderMarkdown } from '../../../soak/markdown.ts';
import { OpWindow } from '../../../soak/op-window.ts';
import { planRestarts } from '../../../soak/replica-restarts.ts';
import { tableRow, type SampleRecord, type SoakReport } from '../../../soak/report.ts';
import { gaugesFromExposition, type ResourceSample } from '../../../soak/sampler.ts';
import { BIG_ROW_BYTES, BIG_ROWS, checkBigResult } from '../../../soak/work-big-result.ts';
import { growthVerdict, soakVerdict } from '../../../soak/verdict.ts';

function resource(tS: number, rssMiB: number, fds: number, cpuPercent: number | null = 10): ResourceSample {
  return {
    tS, rssBytes: rssMiB * 2 ** 20, fds, activeHandles: fds - 10, cpuPercent, cpuSeconds: tS / 10,
    sockets: { fds, sockets: fds - 12, clientTcp: 12, otherTcp: 20, byState: { ESTABLISHED: 32, LISTEN: 2 } },
    gauges: { activeHandles: fds - 10, heapUsedBytes: 20 * 2 ** 20, externalBytes: 1, clientConnections: 12, serverConnections: 20 },
  };
}

function record(tS: number, rssMiB: number, fds: number, cpuPercent: number | null = 10): SampleRecord {
  return { ...resource(tS, rssMiB, fds, cpuPercent), kinds: new OpWindow().close() };
}

test('a table row: resources at its last sample, CPU averaged over the samples that have it', () => {
  const window = new OpWindow();
  window.record('short', 'ok', 4);
  const row = tableRow(0, [record(5, 100, 40, null), record(10, 101, 41, 20), record(15, 102, 42, 40)], window.close());
  assert.equal(row.fromS, 0);
  assert.equal(row.toS, 15);
  assert.equal(row.rssBytes, 102 * 2 ** 20);
  assert.equal(row.fds, 42);
  assert.equal(row.clientTcp, 12);
  assert.equal(row.heapUsedBytes, 20 * 2 ** 20);
  assert.equal(row.cpuPercent, 30);
  assert.equal(row.kinds.short.ops, 1);
  assert.throws(() => tableRow(0, [], window.close()), /at least one sample/);
});

test('gauges from /metrics: handles, heap, and client and server connections summed over labels', () => {
  const text = [
    '# HELP nodejs_active_handles_total x',
    'nodejs_active_handles_total 31',
    'nodejs_heap_size_used_bytes 1000',
    'pg_ambassador_client_connections{state="active"} 2',
    'pg_ambassador_client_connections{state="idle"} 10',
    'pg_ambassador_server_connections{host="a",role="primary",state="idle"} 5',
    'pg_ambassador_server_connections{host="b",role="replica",state="active"} 1',
  ].join('\n');
  assert.deepEqual(gaugesFromExposition(text), { activeHandles: 31, heapUsedBytes: 1000, externalBytes: null, clientConnections: 12, serverConnections: 6 });
});

test('literals for the simple protocol: integers as they are, strings quoted', () => {
  assert.equal(renderLiterals('SELECT $1::int + $2::int, $3::text, $10', [1, -2, "o'k", 4, 5, 6, 7, 8, 9, 10]), "SELECT 1::int + -2::int, 'o''k'::text, 10");
  assert.throws(() => renderLiterals('SELECT $2', [1]), /no parameter \$2/);
  assert.throws(() => renderLiterals('SELECT $1', [0.5]), /only integer literals/);
});

test('the 50 MiB result: 50 rows of 1 MiB of the row\'s letter, anything else is a wrong answer', () => {
  const rows = Array.from({ length: BIG_ROWS }, (_, index) => ({ g: index + 1, chunk: String.fromCharCode(97 + ((index + 1) % 26)).repeat(BIG_ROW_BYTES) }));
  const random = () => 0.5;
  checkBigResult(rows, random);
  assert.throws(() => checkBigResult(rows.slice(1), random), WrongAnswer);
  assert.throws(() => checkBigResult([...rows.slice(0, 49), { g: 50, chunk: 'z'.repeat(BIG_ROW_BYTES) }], random), /row 50: character 0/);
  assert.throws(() => checkBigResult([...rows.slice(0, 49), { g: 50, chunk: 'z' }], random), /row 50: length/);
  assert.throws(() => checkBigResult(undefined, random), /several results/);
});

test('restarts: replica 1 at 50%, the other (or the same) at 65%', () => {
  assert.deepEqual(planRestarts(600, 2), [{ replica: 0, atS: 300 }, { replica: 1, atS: 390 }]);
  assert.deepEqual(planRestarts(120, 1), [{ replica: 0, atS: 60 }, { replica: 0, atS: 78 }]);
  assert.deepEqual(planRestarts(120, 0), []);
});

test('the markdown names the verdict, the kinds and every row', () => {
  const samples = Array.from({ length: 24 }, (_, index) => record(5 * (index + 1), 150, 50));
  const growth = growthVerdict(samples, 120);
  const verdict = soakVerdict({ growth, unexpectedErrors: 0, clientSocketsLeft: 0, uncommittedRowsFound: 0, ambassadorDied: null, problems: [] });
  const totals = new OpWindow().close();
  const report: SoakReport = {
    facts: { date: '2026-01-01T00:00:00.000Z', nproc: 2, cpuModel: 'cpu', memoryGiB: 4, kernel: 'k', node: 'v20', postgres: '15', gitCommit: null, loadAvgAtStart: [1, 1, 1], loadAvgAtEnd: [2, 2, 2] },
    settings: {
      minutes: 2, durationS: 120, clients: 12, workers: { short: 3, 'prepared-pg': 2, 'prepared-postgresjs': 2, 'long-txn': 2, 'big-result': 1, disconnect: 2 },
      seed: 1, replicas: 2, sampleSeconds: 5, rowSeconds: 30, ambassador: 'amb', kinds: Object.fromEntries(WORK_KINDS.map((kind) => [kind, `about ${kind}`])) as SoakReport['settings']['kinds'],
      restartPlan: planRestarts(120, 2), notes: ['a note'],
    },
    verdict, growth, totals, errors: [], restarts: [{ replica: 'replica1', stopS: 60, backS: 63, error: null }], replicaTransactions: 10, uncommittedRowsFound: 0,
    atStart: resource(0, 80, 20), afterLoad: { afterS: 1, sample: resource(121, 150, 30) }, ambassadorLog: [], samples,
    rows: [0, 1, 2, 3].map((row) => tableRow(row * 30, samples.slice(row * 6, row * 6 + 6), new OpWindow().close())), wallTimeS: 150,
  };
  const text = renderMarkdown(report);
  assert.match(text, /^# Soak run: PASS/);
  assert.match(text, /\| 90-120 \| 0 \| 0 \/ 0 \|/);
  assert.match(text, /- replica1: stopped \(fast shutdown\) at 60\.0 s, accepting logins again at 63\.0 s/);
  for (const kind of WORK_KINDS) assert.ok(text.includes(`- **${kind}**`), kind);
});
