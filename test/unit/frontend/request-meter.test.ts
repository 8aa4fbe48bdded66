// RequestMeter: requests matched with their ReadyForQuery in order, transactions timed from their
// first request to ReadyForQuery 'I', swallowed and lost answers not measured, per-database
// totals, and query logging (off / slow / all) with the text cut, no parameters, and the W3C
// traceparent of a sqlcommenter comment.

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { MAX_LOGGED_TEXT, RequestMeter, traceparentOf, type QueryLogSettings } from '../../../src/frontend/request-meter.ts';
import { TrafficStats, type TrafficObserver } from '../../../src/frontend/traffic.ts';

function harness(logging: QueryLogSettings) {
  const events: string[] = [];
  const observer: TrafficObserver = {
    request: (route, reason) => events.push(`request ${route} ${reason}`),
    query: (route) => events.push(`query ${route}`),
    transaction: (route) => events.push(`transaction ${route}`),
    poolWait: () => events.push('wait'),
    error: (sqlstate) => events.push(`error ${sqlstate}`),
  };
  const sink = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  sink.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  const stats = new TrafficStats(observer);
  const meter = new RequestMeter(stats.forDatabase('app'), pino({ level: 'info' }, sink), logging);
  const flush = () => new Promise((resolve) => setImmediate(resolve));
  return { events, lines, stats, meter, flush };
}

const server = { target: { host: 'db1', port: 5432 } };

test('requests are matched with their ReadyForQuery in order; a transaction ends at status I', () => {
  const { events, stats, meter } = harness({ queries: 'off', slowQueryThresholdMs: 0 });
  meter.sent('primary', 'dml', null, true);
  meter.sent('primary', 'in-transaction', null, false);
  meter.answered('T', server);
  meter.answered('I', server);
  meter.sent('replica', 'select', null, true);
  meter.answered('I', server);
  assert.deepEqual(events, [
    'request primary dml',
    'request primary in-transaction',
    'query primary',
    'query primary',
    'transaction primary',
    'request replica select',
    'query replica',
    'transaction replica',
  ]);
  const [app] = stats.totals();
  assert.equal(app!.queries, 3);
  assert.equal(app!.xacts, 2);
});

test('a swallowed answer (re-run elsewhere) and a lost server are not measured', () => {
  const { events, meter } = harness({ queries: 'off', slowQueryThresholdMs: 0 });
  meter.sent('replica', 'select', null, true);
  meter.dropped();
  meter.sent('primary', 'learned-write', null, true);
  meter.answered('I', server);
  meter.sent('primary', 'dml', null, true);
  meter.clear();
  meter.answered('I', server); // nothing in flight: ignored
  assert.deepEqual(events, ['request replica select', 'request primary learned-write', 'query primary', 'transaction primary', 'request primary dml']);
});

test('waits, errors and bytes reach the totals', () => {
  const { events, stats, meter } = harness({ queries: 'off', slowQueryThresholdMs: 0 });
  meter.waitStarted();
  meter.waitEnded();
  meter.waitEnded(); // not waiting: nothing
  meter.error('57P01');
  meter.traffic.received += 100;
  meter.traffic.sent += 250;
  assert.deepEqual(events, ['wait', 'error 57P01']);
  assert.deepEqual(stats.bytes(), { received: 100, sent: 250 });
});

test('query logging all: every query with its text, host, route and traceparent; never parameters', async () => {
  const { lines, meter, flush } = harness({ queries: 'all', slowQueryThresholdMs: 1000 });
  const traced = "SELECT * FROM t WHERE id = $1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
  meter.sent('replica', 'select', [traced], true);
  meter.answered('I', server);
  meter.noteText('INSERT INTO t VALUES (1)'); // session mode: texts noted before the request ends
  meter.sent('primary', 'session', null, true);
  meter.answered('I', server);
  await flush();
  assert.equal(lines.length, 2);
  assert.equal(lines[0]!.msg, 'query');
  assert.equal(lines[0]!.query, traced);
  assert.equal(lines[0]!.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  assert.equal(lines[0]!.host, 'db1:5432');
  assert.equal(lines[0]!.route, 'replica');
  assert.equal(typeof lines[0]!.durationMs, 'number');
  assert.equal(lines[1]!.query, 'INSERT INTO t VALUES (1)');
  assert.equal(lines[1]!.traceparent, undefined);
});

test('query logging slow: only queries at or over the threshold; long texts are cut', async () => {
  const { lines, meter, flush } = harness({ queries: 'slow', slowQueryThresholdMs: 60_000 });
  meter.sent('primary', 'dml', ['SELECT 1'], true);
  meter.answered('I', server);
  await flush();
  assert.equal(lines.length, 0, 'a fast query is not logged');
  meter.configure({ queries: 'slow', slowQueryThresholdMs: 0 });
  const long = `SELECT '${'x'.repeat(MAX_LOGGED_TEXT * 2)}'`;
  meter.sent('primary', 'dml', [long], true);
  meter.answered('I', server);
  await flush();
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, 'slow query');
  assert.equal((lines[0]!.query as string).length, MAX_LOGGED_TEXT);
  assert.equal(lines[0]!.queryLength, long.length);
});

test('traceparentOf reads sqlcommenter values, URL-encoded or not, and ignores malformed ones', () => {
  assert.equal(traceparentOf("select 1 /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/"), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  assert.equal(
    traceparentOf("select 1 /*action='run',traceparent='00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01'*/"),
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  );
  assert.equal(traceparentOf("select 1 /*route%3D'primary',traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/"), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  assert.equal(traceparentOf("select 1 /*traceparent='00-xyz-01'*/"), undefined);
  assert.equal(traceparentOf('select 1'), undefined);
});

test('pipelined requests: the one queued behind a finished transaction starts the next', () => {
  const { events, stats, meter } = harness({ queries: 'off', slowQueryThresholdMs: 0 });
  meter.sent('primary', 'dml', null, true);
  meter.sent('primary', 'dml', null, false); // sent while the first is in flight
  meter.answered('I', server);
  meter.answered('I', server);
  assert.equal(events.filter((e) => e === 'transaction primary').length, 2);
  assert.equal(stats.totals()[0]!.xacts, 2);
});

test('requests in flight behind one another keep their own route and text, in order, across a dropped one', async () => {
  const { events, lines, meter, flush } = harness({ queries: 'all', slowQueryThresholdMs: 0 });
  meter.sent('replica', 'select', ['SELECT 1'], true);
  meter.sent('primary', 'dml', ['SELECT 2'], false);
  meter.sent('replica', 'select', ['SELECT 3'], false);
  meter.dropped(); // SELECT 1's answer was swallowed: it runs again and is measured then
  meter.sent('primary', 'dml', ['SELECT 4'], false);
  meter.answered('T', server);
  meter.answered('T', server);
  meter.answered('I', server);
  meter.answered('I', server); // nothing in flight: ignored
  await flush();
  assert.deepEqual(lines.map((l) => [l.query, l.route]), [['SELECT 2', 'primary'], ['SELECT 3', 'replica'], ['SELECT 4', 'primary']]);
  assert.deepEqual(events.filter((e) => !e.startsWith('request')), ['query primary', 'query replica', 'query primary', 'transaction primary']);
});

test('turning query logging on or off mid-flight never pairs a query with another one\'s text', async () => {
  const { lines, meter, flush } = harness({ queries: 'all', slowQueryThresholdMs: 0 });
  meter.sent('primary', 'dml', ['SELECT 1'], true);
  meter.configure({ queries: 'off', slowQueryThresholdMs: 0 });
  meter.answered('I', server); // logged off: nothing
  meter.sent('primary', 'dml', ['SELECT 2'], true);
  meter.configure({ queries: 'all', slowQueryThresholdMs: 0 });
  meter.sent('primary', 'dml', ['SELECT 3'], true);
  meter.answered('I', server); // SELECT 2, sent while off: not logged
  meter.answered('I', server); // SELECT 3
  await flush();
  assert.deepEqual(
    lines.map((l) => l.query),
    ['SELECT 3'],
  );
});

test('logged SQL never shows a PASSWORD literal', async () => {
  const { lines, meter, flush } = harness({ queries: 'all', slowQueryThresholdMs: 0 });
  meter.sent('primary', 'dml', ["ALTER ROLE app PASSWORD 'hunter2-secret''s'", "CREATE ROLE x LOGIN PASSWORD $pw$dollar-secret$pw$"], true);
  meter.answered('I', server);
  await flush();
  const query = lines[0]!.query as string;
  assert.ok(!query.includes('hunter2') && !query.includes('dollar-secret'), query);
  assert.match(query, /ALTER ROLE app PASSWORD '\[redacted\]'/);
});
