// decideRoute over real classifications (one read or write for a whole request, the session's
// route and read-only default), routeFromTargetSessionAttrs for every libpq value, and which
// texts shownDirective recognises as a SHOW the ambassador answers itself.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createClassifier, InMemoryFunctionCatalog, type Classification } from '../../../src/router/classifier.ts';
import {
  decideRoute,
  routeFromTargetSessionAttrs,
  shownDirective,
  type SessionRouting,
} from '../../../src/router/route-decision.ts';

const classifier = await createClassifier({ functions: new InMemoryFunctionCatalog({ volatile: ['add_order'] }) });

const AUTO: SessionRouting = { route: 'auto', readOnlyDefault: false };
const REPLICA: SessionRouting = { route: 'replica', readOnlyDefault: false };

function classified(...texts: string[]): Array<Readonly<Classification>> {
  return texts.map((sql) => classifier.classify(sql));
}

/** Statements that certainly write, with the reason the classifier gives each. */
const CERTAIN_WRITES: ReadonlyArray<[string, string]> = [
  ['insert into orders values (1)', 'dml'],
  ['update orders set paid = true', 'dml'],
  ['select * from orders for update', 'locking-clause'],
  ['with added as (insert into orders values (1) returning *) select * from added', 'writing-cte'],
  ["select nextval('orders_id_seq')", 'writing-function:nextval'],
];

test('every statement a read: the request is a read, with the first statement\'s reason', () => {
  assert.deepEqual(decideRoute(classified('select 1', 'select * from orders', 'show work_mem'), AUTO), { kind: 'read', reason: 'select' });
  assert.deepEqual(decideRoute(classified('show work_mem', 'select 1'), AUTO), { kind: 'read', reason: 'show' });
});

test('one write among reads sends the whole request to the primary with that write\'s reason', () => {
  for (const [write, reason] of CERTAIN_WRITES) {
    for (const texts of [[write], ['select 1', write], [write, 'select 1'], ['select 1', write, 'select 2']]) {
      assert.deepEqual(decideRoute(classified(...texts), AUTO), { kind: 'write', reason }, texts.join(' | '));
    }
  }
  assert.deepEqual(decideRoute(classified('select 1', 'select add_order()', 'insert into t values (1)'), AUTO), {
    kind: 'write',
    reason: 'volatile-function:add_order',
  }, 'the first write found names the reason');
});

test('session route primary makes everything a write, reads and empty requests included', () => {
  const primary: SessionRouting = { route: 'primary', readOnlyDefault: true };
  assert.deepEqual(decideRoute(classified('select 1'), primary), { kind: 'write', reason: 'session-route' });
  assert.deepEqual(decideRoute(classified('begin read only'), primary), { kind: 'write', reason: 'session-route' });
  assert.deepEqual(decideRoute([], primary), { kind: 'write', reason: 'session-route' });
});

test('session route replica overrides the unknown- and volatile-function verdicts only', () => {
  assert.deepEqual(decideRoute(classified('select mystery()'), AUTO), { kind: 'write', reason: 'unknown-function:mystery' });
  assert.deepEqual(decideRoute(classified('select mystery()'), REPLICA), { kind: 'read', reason: 'session-route' });
  assert.deepEqual(decideRoute(classified('select add_order()'), AUTO), { kind: 'write', reason: 'volatile-function:add_order' });
  assert.deepEqual(decideRoute(classified('select add_order()'), REPLICA), { kind: 'read', reason: 'session-route' });
  assert.deepEqual(decideRoute(classified('select 1', 'select add_order()'), REPLICA), { kind: 'read', reason: 'session-route' }, 'the override names the reason');
});

test('session route replica never sends a certain write to a replica', () => {
  for (const [write, reason] of CERTAIN_WRITES) {
    assert.deepEqual(decideRoute(classified(write), REPLICA), { kind: 'write', reason }, write);
    assert.deepEqual(decideRoute(classified('select mystery()', write), REPLICA), { kind: 'write', reason }, `mystery() then ${write}`);
  }
  assert.deepEqual(decideRoute(classified('set search_path = app'), REPLICA), { kind: 'write', reason: 'session-state' });
  assert.deepEqual(decideRoute(classified('select * from orders where not ('), REPLICA), { kind: 'write', reason: 'parse-error' });
  // A multi-statement text is overridden by neither the hint nor the session route.
  assert.deepEqual(decideRoute(classified('select mystery(); select 1'), REPLICA), { kind: 'write', reason: 'multi-statement-write' });
});

test('plain BEGIN is a read only when the session defaults to read-only', () => {
  const readOnly: SessionRouting = { route: 'auto', readOnlyDefault: true };
  assert.deepEqual(decideRoute(classified('begin'), AUTO), { kind: 'write', reason: 'transaction-control' });
  assert.deepEqual(decideRoute(classified('begin'), readOnly), { kind: 'read', reason: 'read-only-session' });
  assert.deepEqual(decideRoute(classified('start transaction'), readOnly), { kind: 'read', reason: 'read-only-session' });
  assert.deepEqual(decideRoute(classified('begin', 'select 1'), readOnly), { kind: 'read', reason: 'read-only-session' });
  assert.deepEqual(decideRoute(classified('begin', 'insert into t values (1)'), readOnly), { kind: 'write', reason: 'dml' });
  const insertThenBegin = classified('insert into t values (1); begin');
  assert.equal(insertThenBegin[0]!.transaction, 'begin', 'the text leaves a transaction open');
  assert.deepEqual(decideRoute(insertThenBegin, readOnly), { kind: 'write', reason: 'multi-statement-write' }, 'only a BEGIN alone');
});

test('BEGIN READ WRITE is never a read, whatever the session', () => {
  for (const session of [AUTO, REPLICA, { route: 'auto', readOnlyDefault: true }, { route: 'replica', readOnlyDefault: true }] as const) {
    assert.deepEqual(decideRoute(classified('BEGIN READ WRITE'), session), { kind: 'write', reason: 'transaction-control' }, JSON.stringify(session));
    assert.deepEqual(decideRoute(classified('start transaction read write'), session), { kind: 'write', reason: 'transaction-control' });
  }
  assert.deepEqual(decideRoute(classified('begin read only'), AUTO), { kind: 'read', reason: 'transaction-control' });
});

test('an empty request is a read with reason no-statement', () => {
  assert.deepEqual(decideRoute([], AUTO), { kind: 'read', reason: 'no-statement' });
  assert.deepEqual(decideRoute([], REPLICA), { kind: 'read', reason: 'no-statement' });
});

test("a statement's own /* ambassador:route=primary */ hint wins over session route replica", () => {
  // README: "A leading comment /* ambassador:route=primary */ sends a statement to the primary",
  // whatever the session's route says.
  const hinted = classified('/* ambassador:route=primary */ select add_order()');
  assert.equal(hinted[0]!.hint, 'primary');
  assert.deepEqual(decideRoute(hinted, REPLICA), { kind: 'write', reason: 'volatile-function:add_order' });
});

test('a read-only session default does not override /* ambassador:route=primary */ on a plain BEGIN', () => {
  const hinted = classified('/* ambassador:route=primary */ begin');
  assert.equal(hinted[0]!.hint, 'primary');
  assert.equal(decideRoute(hinted, { route: 'auto', readOnlyDefault: true }).kind, 'write');
});

test('target_session_attrs: every libpq value, any case, and an invalid one', () => {
  const expected: Record<string, string> = {
    any: 'auto',
    'read-write': 'primary',
    primary: 'primary',
    'read-only': 'replica',
    standby: 'replica',
    'prefer-standby': 'replica',
  };
  for (const [value, route] of Object.entries(expected)) {
    assert.equal(routeFromTargetSessionAttrs(value), route, value);
    assert.equal(routeFromTargetSessionAttrs(value.toUpperCase()), route, value.toUpperCase());
  }
  assert.equal(routeFromTargetSessionAttrs(undefined), 'auto');
  for (const invalid of ['readwrite', 'prefer-primary', 'master', ' any', '']) {
    assert.equal(routeFromTargetSessionAttrs(invalid), 'invalid', JSON.stringify(invalid));
  }
});

test('shownDirective: SHOW ambassador.route / min_lsn in any case, spacing and trailing semicolon', () => {
  const route = ['SHOW ambassador.route', 'show ambassador.route', 'Show Ambassador.ROUTE', '  show\n\tambassador.route  ', 'show ambassador.route;', 'show ambassador.route ; '];
  for (const sql of route) assert.equal(shownDirective(sql), 'ambassador.route', JSON.stringify(sql));
  const minLsn = ['SHOW ambassador.min_lsn', 'show AMBASSADOR.MIN_LSN;', '\nshow   ambassador.min_lsn\n'];
  for (const sql of minLsn) assert.equal(shownDirective(sql), 'ambassador.min_lsn', JSON.stringify(sql));
});

test('shownDirective: near-misses are not the ambassador\'s to answer', () => {
  const misses = [
    'SHOW ambassador.other',
    'SHOW ambassador.routes',
    'SHOW ambassador.route_x',
    'SHOW ambassador . route',
    'SHOW ambassadorroute',
    'SHOW route',
    'SHOW ambassador.route; SELECT 1',
    'SELECT 1; SHOW ambassador.route',
    'SHOW ambassador.route;;',
    'SET ambassador.route = primary',
    'showambassador.route',
    '',
  ];
  for (const sql of misses) assert.equal(shownDirective(sql), null, JSON.stringify(sql));
});
