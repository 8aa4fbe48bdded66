// Logs through a real client (issue 7): each login and disconnection is a line carrying the
// session's id; with logging.queries all, every statement is logged with its text, duration,
// route, host and session id, the W3C traceparent of a sqlcommenter comment, and never a bound
// parameter's value; with slow and a high threshold, fast statements are not logged.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ambassadorsFor, viaAmbassador } from '../support/ambassador.ts';
import { withClient } from '../support/pooling.ts';
import { eventually, getTopology, type Topology } from '../support/topology.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const PARAMETER = 'parameter-value-never-logged-7e2d';

let topology: Topology;
const ambassadors = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
});
after(() => ambassadors.stopAll());

test('logins, disconnections and every query are logged with the session id and traceparent, never parameters', async () => {
  const amb = await ambassadors.start({ pool: { mode: 'transaction' }, logging: { level: 'info', queries: 'all' } });
  await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
    await c.query(`SELECT $1::text AS v /*traceparent='${TRACEPARENT}'*/`, [PARAMETER]);
    await c.query('SELECT 2');
  });
  const lines = amb.logs();
  const login = lines.find((line) => line.msg === 'client logged in');
  assert.ok(login, 'a login line');
  const session = login.session;
  assert.equal(typeof session, 'number');
  const closed = await eventually(async () => amb.logs().find((line) => line.msg === 'client disconnected' && line.session === session), {
    what: 'a disconnection line for the session',
  });
  const all = amb.logs();
  assert.equal(typeof closed.durationMs, 'number');
  const queries = all.filter((line) => line.msg === 'query' && line.session === session);
  assert.equal(queries.length, 2, JSON.stringify(queries));
  assert.equal(queries[0]!.traceparent, TRACEPARENT);
  assert.match(queries[0]!.query as string, /^SELECT \$1::text AS v/);
  assert.equal(queries[0]!.host, `${topology.primary.host}:${topology.primary.port}`);
  assert.equal(queries[0]!.route, 'primary');
  assert.equal(queries[1]!.query, 'SELECT 2');
  assert.equal(queries[1]!.traceparent, undefined);
  assert.ok(!amb.logText().includes(PARAMETER), 'a bound parameter reached the logs');
});

test('logging.queries slow logs nothing below the threshold', async () => {
  const amb = await ambassadors.start({ logging: { level: 'info', queries: 'slow', slowQueryThreshold: '10s' } });
  await withClient(viaAmbassador(amb.port) as pg.ClientConfig, async (c) => {
    await c.query('SELECT 1');
  });
  assert.ok(amb.logs().some((line) => line.msg === 'client logged in'));
  assert.equal(amb.logs().filter((line) => line.msg === 'slow query' || line.msg === 'query').length, 0);
});
