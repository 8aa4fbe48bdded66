import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import { decodeParse, decodeTarget, encodeParse, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { frameMessage } from '../../../src/protocol/writer.ts';
import { preparationFor, type Preparation, type PreparationContext } from '../../../src/frontend/preparation.ts';
import { RequestBuilder, type Request } from '../../../src/frontend/request-builder.ts';
import { type ClientStatement, markStale, MISSING_STATEMENT, touchStatement } from '../../../src/frontend/statements.ts';
import { SessionEffectsCache } from '../../../src/router/session-effects.ts';

function server(statements: string[] = [], stateKey = ''): BackendConnection {
  const conn = { statements: new Map<string, number>(), staleStatements: new Set<string>(), statementShapes: new Map<string, string>(), stateKey } as unknown as BackendConnection;
  for (const name of statements) touchStatement(conn, name); // listed least recently used first
  return conn;
}

/** Feeds whole client messages to a RequestBuilder; returns every finished request. */
function requests(builder: RequestBuilder, ...messages: Buffer[]): Request[] {
  const out: Request[] = [];
  for (const m of messages) {
    const r = builder.add(m[0]!, m.subarray(5));
    if (r !== null && r !== 'terminate' && r !== 'wait') out.push(r);
  }
  return out;
}

function bind(statement: string): Buffer {
  const body = Buffer.concat([Buffer.from(`\0${statement}\0`), Buffer.from([0, 0, 0, 0, 0, 0])]);
  const out = Buffer.alloc(5 + body.length);
  out[0] = FrontendType.Bind;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

const noTypes = Buffer.from([0, 0]);
function context(overrides: Partial<PreparationContext> = {}): PreparationContext {
  return { stateKey: '', syncStatements: [], canSyncState: true, capacity: 10, ...overrides };
}

test('nothing to do: null', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, encodeParse('s1', 'select 1', noTypes), encodeSync());
  assert.equal(preparationFor(server(), request!, context()), null);
});

test('a statement prepared earlier is re-created where the client lands, closed first in case it is outdated', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [first] = requests(builder, encodeParse('s1', 'select 1', noTypes), encodeSync());
  const serverName = first!.items[0]!.kind === 'parse' ? first!.items[0]!.statement.serverName : '';
  const [second] = requests(builder, bind('s1'), encodeSync());
  const plan = preparationFor(server(), second!, context())!;
  assert.deepEqual(plan.created, [serverName]);
  assert.equal(plan.readies, 1);
  assert.deepEqual(plan.messages.map((m) => String.fromCharCode(m[0]!)), ['C', 'P', 'S']);
  assert.deepEqual(decodeTarget(plan.messages[0]!.subarray(5)), { kind: 'S', name: serverName });
  assert.equal(decodeParse(plan.messages[1]!.subarray(5)).name, serverName);
  assert.equal(preparationFor(server([serverName]), second!, context()), null, 'the server holds it');
});

test('settings are replayed only when they differ and may be replayed now', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, encodeSync());
  const ctx = context({ stateKey: 'k', syncStatements: ['set a = 1'] });
  const plan = preparationFor(server([], ''), request!, ctx)!;
  assert.equal(plan.syncsState, true);
  assert.equal(plan.readies, 1);
  assert.match(plan.messages[0]!.subarray(5).toString(), /^RESET ALL;\nset a = 1/);
  assert.equal(preparationFor(server([], 'k'), request!, ctx), null);
  assert.equal(preparationFor(server([], ''), request!, { ...ctx, canSyncState: false }), null);
});

test('a full cache makes room (least recently used first), keeping what the request needs', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, encodeParse('new', 'select 2', noTypes), encodeSync());
  const plan = preparationFor(server(['old1', 'old2', 'old3']), request!, context({ capacity: 3 }))!;
  assert.deepEqual(plan.evicted, ['old1']);
  assert.deepEqual(plan.messages.map((m) => String.fromCharCode(m[0]!)), ['C', 'S']);
});

test('a statement used again is the last to be closed', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, encodeParse('new', 'select 2', noTypes), encodeSync());
  const full = server(['old1', 'old2', 'old3']);
  touchStatement(full, 'old1');
  assert.deepEqual(preparationFor(full, request!, context({ capacity: 3 }))!.evicted, ['old2']);
  touchStatement(full, 'old2');
  assert.deepEqual(preparationFor(full, request!, context({ capacity: 2 }))!.evicted, ['old3', 'old1']);
  const five = server(['a', 'b', 'c', 'd', 'e']);
  for (const name of ['c', 'a', 'e']) touchStatement(five, name);
  // Oldest first: b, d, c, a, e.
  assert.deepEqual(preparationFor(five, request!, context({ capacity: 3 }))!.evicted, ['b', 'd', 'c']);
  assert.deepEqual(preparationFor(five, request!, context({ capacity: 1 }))!.evicted, ['b', 'd', 'c', 'a', 'e']);
});

test('a Bind of a name the client never prepared needs nothing from the server, and is not renamed', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, bind('made_with_sql_prepare'), encodeSync());
  const item = request!.items[0]!;
  assert.equal(item.kind === 'bind' && item.rename, null);
  assert.equal(request!.retryable, false, 'the ambassador could not re-create it');
  assert.equal(preparationFor(server(), request!, context()), null);
});

test('a Bind or Describe the server answers 26000 (a statement the client never prepared) needs nothing from it', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, bind(''), encodeTarget(FrontendType.Describe, 'S', 'pa_0123'), encodeSync());
  assert.deepEqual(request!.items.map((i) => i.kind === 'bind' || i.kind === 'describe' ? i.serverName : i.kind), [MISSING_STATEMENT, MISSING_STATEMENT, 'raw']);
  assert.equal(preparationFor(server(), request!, context()), null, 'nothing to create, none of the 256 places taken');
});

test('the unnamed statement parsed in an earlier exchange is parsed again, once, before a Bind and a Describe of it', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const parse = encodeParse('', 'select 1', noTypes);
  requests(builder, parse, encodeSync());
  const [request] = requests(builder, encodeTarget(FrontendType.Describe, 'S', ''), bind(''), encodeSync());
  const plan = preparationFor(server(), request!, context())!;
  assert.deepEqual(plan.messages, [parse, encodeSync()]);
  assert.equal(plan.readies, 1);
  assert.equal(preparationFor(server(), request!, context({ unnamedReplayed: true })), null, 'not again on the server that replayed it');
});

test('making room never closes a statement the same request executes', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [first] = requests(builder, encodeParse('x', 'select 1', noTypes), encodeSync());
  const x = first!.items[0]!.kind === 'parse' ? first!.items[0]!.statement.serverName : '';
  // The server is full with x; the request executes x and prepares y.
  const [request] = requests(builder, bind('x'), encodeParse('y', 'select 2', noTypes), encodeSync());
  assert.equal(preparationFor(server([x]), request!, context({ capacity: 1 })), null, 'nothing may be closed: it goes as it is');
  const plan = preparationFor(server(['z', x]), request!, context({ capacity: 2 }))!;
  assert.deepEqual(plan.evicted, ['z']);
});

test('statements left outdated by DDL still take their places until closed, and are the first closed to make room', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [request] = requests(builder, encodeParse('new', 'select 2', noTypes), encodeSync());
  const full = server(['old1', 'old2', 'outdated1', 'outdated2']);
  markStale(full, 'outdated1');
  markStale(full, 'outdated2');
  const plan = preparationFor(full, request!, context({ capacity: 4 }))!;
  assert.deepEqual(plan.evicted, ['outdated1'], 'the server holds 4: one place is made, by closing an outdated one');
  assert.deepEqual(preparationFor(full, request!, context({ capacity: 3 }))!.evicted, ['outdated1', 'outdated2']);
  assert.deepEqual(preparationFor(full, request!, context({ capacity: 2 }))!.evicted, ['outdated1', 'outdated2', 'old1']);
  assert.equal(preparationFor(full, request!, context({ capacity: 5 })), null, 'room enough');

  // An outdated statement made again takes back its own place: nothing else is closed for it.
  const [first] = requests(builder, encodeParse('x', 'select 3', noTypes), encodeSync());
  const x = first!.items[0]!.kind === 'parse' ? first!.items[0]!.statement.serverName : '';
  const withX = server(['old1', x]);
  markStale(withX, x);
  const [again] = requests(builder, bind('x'), encodeSync());
  const remade = preparationFor(withX, again!, context({ capacity: 2 }))!;
  assert.deepEqual(remade.evicted, []);
  assert.deepEqual(remade.refreshed, [x]);
});

// ---- result shapes (result-shapes.ts) ----

/** Prepares `name` (its text `text`) and returns the client statement, shown `shape` when one is given. */
function prepared(builder: RequestBuilder, name: string, text: string, shape: string | null): ClientStatement {
  const [request] = requests(builder, encodeParse(name, text, noTypes), encodeSync());
  const item = request!.items[0]!;
  assert.ok(item.kind === 'parse');
  item.statement.shape = shape;
  return item.statement;
}

const describeOf = (name: string, kind: 'S' | 'P' = 'S'): Buffer => encodeTarget(FrontendType.Describe, kind, name);
const execute = frameMessage(FrontendType.Execute, Buffer.from([0, 0, 0, 0, 0]));
const letters = (plan: Preparation | null): string => (plan === null ? 'null' : plan.messages.map((m) => String.fromCharCode(m[0]!)).join(''));

test('a Bind that relies on the shape the client was shown: made again with a Describe after it, on a server that lacks it', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', '1\0a\x0023\0-1');
  const [request] = requests(builder, bind('s1'), execute, encodeSync());
  const plan = preparationFor(server(), request!, context())!;
  assert.equal(letters(plan), 'CPDS', 'closed in case it is outdated, made, described, synced');
  assert.deepEqual(decodeTarget(plan.messages[2]!.subarray(5)), { kind: 'S', name: s1.serverName });
  assert.deepEqual(plan.described, [s1.serverName]);
  assert.deepEqual(plan.created, [s1.serverName]);
  assert.equal(plan.acknowledgements, 3, 'inside an exchange the Describe is answered too (RowDescription or NoData)');
  assert.equal(letters(preparationFor(server(), request!, context({ inExchange: true, canSyncState: false }))), 'CPDH', 'with Flush inside an exchange');
});

test('held where its shape is not known, or is another: made anew (closed first) and described; the shape it was shown: the Bind goes as it is', () => {
  // Made anew, not only described: held there since before DDL, a Describe of it fails with
  // 0A000 where a new one would not, and a shape noted there before the DDL is not the one now.
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', 'shown');
  const [request] = requests(builder, bind('s1'), execute, encodeSync());
  const held = server([s1.serverName]);
  for (const shape of [undefined, 'another']) {
    if (shape !== undefined) held.statementShapes.set(s1.serverName, shape);
    const plan = preparationFor(held, request!, context())!;
    assert.equal(letters(plan), 'CPDS', `known: ${shape}`);
    assert.deepEqual([plan.created, plan.evicted, plan.refreshed, plan.described], [[s1.serverName], [], [s1.serverName], [s1.serverName]]);
  }
  held.statementShapes.set(s1.serverName, 'shown');
  assert.equal(preparationFor(held, request!, context()), null);
});

test('a statement made anew while held keeps its place: nothing else is closed to make room for it', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', 'shown');
  const [request] = requests(builder, bind('s1'), execute, encodeSync());
  const full = server([s1.serverName, 'pa_other']);
  const plan = preparationFor(full, request!, { ...context(), capacity: 2 })!;
  assert.deepEqual(plan.evicted, [], 'at capacity, yet the statement made anew takes the place it had');
});

test('nothing is described for a Bind whose portal the request describes, nor for a statement the client was shown no shape of', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', 'shown');
  prepared(builder, 's2', 'select * from u', null);
  const [describing] = requests(builder, bind('s1'), describeOf('', 'P'), execute, encodeSync());
  assert.equal(letters(preparationFor(server(), describing!, context())), 'CPS');
  assert.equal(preparationFor(server([s1.serverName]), describing!, context()), null);
  const [unshown] = requests(builder, bind('s2'), execute, encodeSync());
  assert.equal(letters(preparationFor(server(), unshown!, context())), 'CPS');
});

test('an outdated statement is made nowhere for a Bind that relies on it (it fails at send); one whose portal is described is made', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', 'shown');
  s1.outdated = true;
  const [relying] = requests(builder, bind('s1'), execute, encodeSync());
  assert.equal(preparationFor(server(), relying!, context()), null);
  const [describing] = requests(builder, bind('s1'), describeOf('', 'P'), execute, encodeSync());
  assert.equal(letters(preparationFor(server(), describing!, context())), 'CPS');
});

test('one Describe per statement, however many Binds rely on it; none for one the request parses itself', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const s1 = prepared(builder, 's1', 'select * from t', 'shown');
  const [twice] = requests(builder, bind('s1'), execute, bind('s1'), execute, encodeSync());
  assert.deepEqual(preparationFor(server(), twice!, context())!.described, [s1.serverName]);
  // Its Describe first (answered in the request, after the preparation): still made and described in one preparation.
  const [describedFirst] = requests(builder, describeOf('s1'), bind('s1'), execute, encodeSync());
  assert.equal(letters(preparationFor(server(), describedFirst!, context())), 'CPDS');
  const [parsed] = requests(builder, encodeParse('s2', 'select * from t', noTypes), bind('s1'), execute, encodeSync());
  assert.equal(preparationFor(server(), parsed!, context()), null, 'made by the request’s own Parse: left to it');
});
