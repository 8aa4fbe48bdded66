// ClientRouting with a real classifier over requests assembled by a real RequestBuilder: what a
// simple or extended request needs, splitting off, a replica's refusal taught to the classifier,
// read-your-writes positions, the read-only session default, and the directives the ambassador
// answers itself (decoded from the bytes it returns) or applies from forwarded texts.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClientRouting, mayBeDirective, type ClientRoutingOptions } from '../../../src/frontend/client-routing.ts';
import { RequestBuilder, textsOf, UNDECODED, type Request, type RequestBuilderOptions } from '../../../src/frontend/request-builder.ts';
import { BackendType, decodeDataRow, decodeErrorFields, decodeReadyForQuery, type TransactionStatus } from '../../../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { MessageWriter, PayloadReader } from '../../../src/protocol/writer.ts';
import { formatLsn, parseLsn } from '../../../src/pool/host-choice.ts';
import { createClassifier, InMemoryFunctionCatalog, type Classifier } from '../../../src/router/classifier.ts';
import { plainQueryBytes, plainStatement, SessionEffectsCache } from '../../../src/router/session-effects.ts';

const NO_TYPES = Buffer.from([0, 0]);
const catalog = new InMemoryFunctionCatalog({ volatile: ['add_order'], readOnly: ['price_of'] });

// ---- client messages (whole frames; the builder takes the type byte and the payload) ----

function parse(name: string, sql: string): Buffer {
  return encodeParse(name, sql, NO_TYPES);
}

/** Bind with no parameters and no result formats. */
function bind(portal: string, statement: string): Buffer {
  return new MessageWriter().cstring(portal).cstring(statement).int16(0).int16(0).int16(0).finish(FrontendType.Bind);
}

function execute(portal: string): Buffer {
  return new MessageWriter().cstring(portal).int32(0).finish(FrontendType.Execute);
}

function flush(): Buffer {
  return new MessageWriter().finish(FrontendType.Flush);
}

/** FunctionCall of `oid` with no arguments, text result. */
function functionCall(oid: number): Buffer {
  return new MessageWriter().int32(oid).int16(0).int16(0).int16(0).finish(FrontendType.FunctionCall);
}

/** One client's request stream; with `router`, its builder knows the ambassador's own statements (as the forwarder's does). */
class Client {
  private readonly builder: RequestBuilder;

  constructor(router: ClientRouting | null = null, options: RequestBuilderOptions = {}) {
    this.builder = new RequestBuilder(new SessionEffectsCache(), router === null ? undefined : (sql) => router.statementCommand(sql), options);
  }

  /** Feeds messages; returns the one request they complete. */
  request(...messages: Buffer[]): Request {
    const done: Request[] = [];
    for (const message of messages) {
      const result = this.builder.add(message[0]!, message.subarray(5));
      if (result !== null && result !== 'terminate' && result !== 'wait') done.push(result);
    }
    assert.equal(done.length, 1, 'test: the messages make exactly one request');
    return done[0]!;
  }

  query(sql: string): Request {
    return this.request(encodeQuery(sql));
  }
}

const classifier = await createClassifier({ functions: catalog });

/** A fresh classifier (learned writes are per classifier). */
async function freshClassifier(): Promise<Classifier> {
  return createClassifier({ functions: catalog });
}

function routing(options: Partial<ClientRoutingOptions> = {}): ClientRouting {
  return new ClientRouting({ classifier, readYourWrites: 'lsn', route: 'auto', readOnlyDefault: false, ...options });
}

// ---- the ambassador's answers, decoded ----

type Answer =
  | { type: 'T'; columns: string[] }
  | { type: 'D'; values: Array<string | null> }
  | { type: 'C'; tag: string }
  | { type: 'Z'; status: TransactionStatus }
  | { type: 'E'; code: string }
  /** ParseComplete, BindComplete, CloseComplete, NoData; ParameterDescription with its count. */
  | { type: '1' | '2' | '3' | 'n' }
  | { type: 't'; parameters: number };

function decodeAnswer(bytes: Buffer): Answer[] {
  const out: Answer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const type = bytes[offset]!;
    const length = bytes.readInt32BE(offset + 1);
    const payload = bytes.subarray(offset + 5, offset + 1 + length);
    assert.equal(payload.length, length - 4, 'test: a whole message');
    offset += 1 + length;
    const reader = new PayloadReader(payload);
    if (type === BackendType.RowDescription) {
      const count = reader.int16();
      const columns: string[] = [];
      for (let i = 0; i < count; i++) {
        columns.push(reader.cstring());
        reader.bytes(18); // table oid, column, type oid, size, modifier, format
      }
      assert.equal(reader.remaining, 0, 'RowDescription fully read');
      out.push({ type: 'T', columns });
    } else if (type === BackendType.DataRow) {
      out.push({ type: 'D', values: decodeDataRow(payload) });
    } else if (type === BackendType.CommandComplete) {
      out.push({ type: 'C', tag: reader.cstring() });
      assert.equal(reader.remaining, 0);
    } else if (type === BackendType.ReadyForQuery) {
      out.push({ type: 'Z', status: decodeReadyForQuery(payload) });
    } else if (type === BackendType.ErrorResponse) {
      out.push({ type: 'E', code: decodeErrorFields(payload).get('C') ?? '' });
    } else if (type === BackendType.ParameterDescription) {
      const parameters = reader.int16();
      assert.equal(reader.remaining, 4 * parameters);
      out.push({ type: 't', parameters });
    } else if (type === BackendType.ParseComplete || type === BackendType.BindComplete || type === BackendType.CloseComplete || type === BackendType.NoData) {
      assert.equal(payload.length, 0);
      out.push({ type: String.fromCharCode(type) as '1' | '2' | '3' | 'n' });
    } else {
      assert.fail(`unexpected message type ${String.fromCharCode(type)}`);
    }
  }
  return out;
}

/** Runs a simple Query as the forwarder would when the ambassador answers it locally. */
function answerLocally(client: ClientRouting, sql: string, status: TransactionStatus = 'I'): Answer[] {
  const request = new Client().query(sql);
  const command = client.localCommand(request, status);
  assert.ok(command, `${sql} is answered locally`);
  return decodeAnswer(client.answer(command, status));
}

function show(client: ClientRouting, name: 'route' | 'min_lsn' | 'retry', status: TransactionStatus = 'I'): string | null {
  const [description, row, complete, ready, ...rest] = answerLocally(client, `SHOW ambassador.${name}`, status);
  assert.deepEqual(description, { type: 'T', columns: [`ambassador.${name}`] });
  assert.deepEqual(complete, { type: 'C', tag: 'SHOW' });
  assert.deepEqual(ready, { type: 'Z', status });
  assert.deepEqual(rest, []);
  assert.ok(row?.type === 'D' && row.values.length === 1, 'one DataRow of one column');
  return row.values[0]!;
}

// ---- decide ----

test('simple Query: the text decides', () => {
  const client = new Client();
  const router = routing();
  assert.deepEqual(router.decide(client.query('select * from orders')), { kind: 'read', reason: 'select' });
  assert.deepEqual(router.decide(client.query('insert into orders values (1)')), { kind: 'write', reason: 'dml' });
  assert.deepEqual(router.decide(client.query('select add_order()')), { kind: 'write', reason: 'volatile-function:add_order' });
  assert.deepEqual(router.decide(client.query('select price_of(1)')), { kind: 'read', reason: 'select' });
  assert.deepEqual(router.decide(client.query('select 1; delete from orders')), { kind: 'write', reason: 'multi-statement-write' });
});

test('extended: Parse texts count, and an Execute runs its named statement\'s text', () => {
  const client = new Client();
  const router = routing();
  assert.deepEqual(router.decide(client.request(parse('q_read', 'select * from orders where id = $1'), encodeSync())), { kind: 'read', reason: 'select' });
  const prepareWrite = client.request(parse('q_write', 'update orders set paid = true where id = $1'), encodeTarget(FrontendType.Describe, 'S', 'q_write'), encodeSync());
  assert.deepEqual(router.decide(prepareWrite), { kind: 'write', reason: 'dml' }, 'prepared, not yet run: goes where it will run');

  assert.deepEqual(router.decide(client.request(bind('', 'q_read'), execute(''), encodeSync())), { kind: 'read', reason: 'select' });
  assert.deepEqual(router.decide(client.request(bind('', 'q_write'), execute(''), encodeSync())), { kind: 'write', reason: 'dml' });
  assert.deepEqual(
    router.decide(client.request(bind('p1', 'q_read'), execute('p1'), bind('p2', 'q_write'), execute('p2'), encodeSync())),
    { kind: 'write', reason: 'dml' },
    'a pipeline with one write',
  );
  assert.deepEqual(router.decide(client.request(parse('', 'select 1'), bind('', ''), execute(''), encodeSync())), { kind: 'read', reason: 'select' });
  assert.deepEqual(router.decide(client.request(parse('', 'select 1'), bind('', ''), execute(''), flush())), { kind: 'read', reason: 'select' }, 'a Flush ends a request too');
  assert.deepEqual(router.decide(client.request(parse('', 'insert into t values (1)'), bind('', ''), execute(''), encodeSync())), { kind: 'write', reason: 'dml' });
  assert.deepEqual(router.decide(client.request(encodeSync())), { kind: 'read', reason: 'no-statement' }, 'a lone Sync runs nothing');
});

test('a FunctionCall, or an Execute of a portal nobody bound, is an unknown statement: a write', () => {
  const client = new Client();
  const router = routing();
  assert.deepEqual(router.decide(client.request(functionCall(1598))), { kind: 'write', reason: 'unknown-statement' });
  assert.deepEqual(router.decide(client.request(execute('nowhere'), encodeSync())), { kind: 'write', reason: 'unknown-statement' });
  assert.deepEqual(
    router.decide(client.request(bind('p', 'never_prepared'), execute('p'), encodeSync())),
    { kind: 'write', reason: 'unknown-statement' },
    'a Bind of an unknown statement leaves its portal unknown',
  );
  assert.deepEqual(router.decide(client.request(parse('s', 'select 1'), execute('nowhere'), encodeSync())), { kind: 'write', reason: 'unknown-statement' });
});

test('splitting off: every request is a write, reason split-off', () => {
  const client = new Client();
  const router = routing({ classifier: null, route: 'replica' });
  assert.equal(router.splitting, false);
  assert.equal(router.capturesWrites, false);
  for (const request of [client.query('select 1'), client.query('begin read only'), client.request(parse('', 'select 1'), encodeSync())]) {
    const decision = router.decide(request);
    assert.deepEqual(decision, { kind: 'write', reason: 'split-off' });
    assert.deepEqual(router.routeRequest(decision), { kind: 'write' });
  }
  assert.equal(routing().capturesWrites, true);
  assert.equal(routing({ readYourWrites: 'off' }).capturesWrites, false);
});

test('forceWrite sends the request to the primary and teaches the classifier its texts', async () => {
  const learner = await freshClassifier();
  const client = new Client();
  const router = routing({ classifier: learner });
  const refused = client.query('select * from audit_log');
  assert.equal(router.decide(refused).kind, 'read');
  router.forceWrite(refused);
  assert.deepEqual(router.decide(refused), { kind: 'write', reason: 'replica-refused' });
  assert.deepEqual(router.decide(client.query('select * from audit_log')), { kind: 'write', reason: 'learned-write' });
  assert.deepEqual(router.decide(client.query('select * from orders')), { kind: 'read', reason: 'select' }, 'other texts are unaffected');

  const extended = client.request(parse('', 'select count(*) from audit_view'), bind('', ''), execute(''), encodeSync());
  router.forceWrite(extended);
  assert.deepEqual(router.decide(client.query('select count(*) from audit_view')), { kind: 'write', reason: 'learned-write' });
  assert.equal(classifier.classify('select * from audit_log').route, 'read', 'learned by this client\'s classifier only');
});

// ---- read-your-writes and the session default ----

test('routeRequest carries minLsn only for reads, and only once one is set', () => {
  const router = routing();
  const read = { kind: 'read', reason: 'select' } as const;
  const write = { kind: 'write', reason: 'dml' } as const;
  assert.deepEqual(router.routeRequest(read), { kind: 'read' });
  assert.equal('minLsn' in router.routeRequest(read), false);
  router.noteCommit(parseLsn('0/16B3748'));
  assert.deepEqual(router.routeRequest(read), { kind: 'read', minLsn: 0x16b3748n });
  assert.deepEqual(router.routeRequest(write), { kind: 'write' });
});

test('noteCommit keeps the highest position', () => {
  const router = routing();
  assert.equal(router.minLsn, 0n);
  router.noteCommit(0x3000100n);
  router.noteCommit(0x3000000n);
  assert.equal(router.minLsn, 0x3000100n);
  router.noteCommit(0x1_00000000n);
  assert.equal(router.minLsn, 0x1_00000000n);
});

test('default_transaction_read_only on makes a plain BEGIN a read; off makes it a write again', () => {
  const client = new Client();
  const router = routing();
  assert.deepEqual(router.decide(client.query('begin')), { kind: 'write', reason: 'transaction-control' });
  router.noteParameter('default_transaction_read_only', 'on');
  assert.equal(router.readOnlyDefault, true);
  assert.deepEqual(router.decide(client.query('begin')), { kind: 'read', reason: 'read-only-session' });
  assert.deepEqual(router.decide(client.query('begin read write')), { kind: 'write', reason: 'transaction-control' });
  router.noteParameter('in_hot_standby', 'off');
  assert.equal(router.readOnlyDefault, true, 'other parameters change nothing');
  router.noteParameter('default_transaction_read_only', 'off');
  assert.deepEqual(router.decide(client.query('begin')), { kind: 'write', reason: 'transaction-control' });
});

// ---- directives answered locally ----

test('SET ambassador.route = primary (unquoted), = \'replica\', RESET: answered here, applied', () => {
  const client = new Client();
  const router = routing();
  assert.deepEqual(answerLocally(router, 'SET ambassador.route = primary', 'I'), [{ type: 'C', tag: 'SET' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.route, 'primary');
  assert.deepEqual(router.decide(client.query('select 1')), { kind: 'write', reason: 'session-route' });
  assert.equal(show(router, 'route'), 'primary');

  assert.deepEqual(answerLocally(router, "set ambassador.route to 'replica'", 'T'), [{ type: 'C', tag: 'SET' }, { type: 'Z', status: 'T' }]);
  assert.equal(router.route, 'replica');
  assert.deepEqual(router.decide(client.query('select mystery()')), { kind: 'read', reason: 'session-route' });
  assert.deepEqual(router.decide(client.query('insert into t values (1)')), { kind: 'write', reason: 'dml' });

  assert.deepEqual(answerLocally(router, 'RESET ambassador.route'), [{ type: 'C', tag: 'RESET' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.route, 'auto');
  assert.equal(show(router, 'route', 'T'), 'auto');
});

test('SET ambassador.min_lsn keeps the higher of it and the captured position; RESET clears', () => {
  const router = routing();
  assert.equal(show(router, 'min_lsn'), '0/0');
  const command = router.localCommand(new Client().query("SET ambassador.min_lsn = '0/16B3748'"), 'I');
  assert.deepEqual(command, { kind: 'set', directive: { minLsn: '0/16B3748' }, tag: 'SET' });
  assert.deepEqual(decodeAnswer(router.answer(command!, 'I')), [{ type: 'C', tag: 'SET' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.minLsn, 0x16b3748n);
  assert.equal(show(router, 'min_lsn'), '0/16B3748');

  router.noteCommit(parseLsn('0/20000000'));
  answerLocally(router, "SET ambassador.min_lsn = '0/16b3748'");
  assert.equal(show(router, 'min_lsn'), '0/20000000', 'an older token does not lower the position');
  answerLocally(router, "SET ambassador.min_lsn = '1/0'");
  assert.equal(router.minLsn, 0x1_00000000n);
  assert.equal(formatLsn(router.minLsn), show(router, 'min_lsn'));

  assert.deepEqual(answerLocally(router, 'RESET ambassador.min_lsn', 'T'), [{ type: 'C', tag: 'RESET' }, { type: 'Z', status: 'T' }]);
  assert.equal(router.minLsn, 0n);
  assert.deepEqual(router.routeRequest({ kind: 'read', reason: 'select' }), { kind: 'read' });
});

test('not answered locally: a failed transaction, a builder that does not know the directives, other statements', () => {
  const client = new Client();
  const router = routing();
  assert.equal(router.localCommand(client.query('SHOW ambassador.route'), 'E'), null);
  assert.equal(router.localCommand(client.query('SET ambassador.route = replica'), 'E'), null);
  assert.notEqual(router.localCommand(client.query('SHOW ambassador.route'), 'T'), null);

  assert.equal(router.localCommand(client.request(parse('', 'SHOW ambassador.route'), encodeSync()), 'I'), null, 'a builder that does not know the directives');

  for (const sql of [
    'SET search_path = app',
    'SHOW work_mem',
    'SHOW ambassador.other',
    'SET ambassador.route = replica; SELECT 1',
    'SELECT 1',
  ]) {
    assert.equal(router.localCommand(client.query(sql), 'I'), null, sql);
  }
  assert.equal(router.route, 'auto', 'nothing applied');
});

// ---- directives in the extended protocol ----

function describe(kind: 'S' | 'P', name: string): Buffer {
  return encodeTarget(FrontendType.Describe, kind, name);
}

function close(kind: 'S' | 'P', name: string): Buffer {
  return encodeTarget(FrontendType.Close, kind, name);
}

/** Answers an extended-protocol request as the forwarder would when the ambassador answers it itself. */
function answerSteps(router: ClientRouting, request: Request, status: TransactionStatus = 'I'): Answer[] {
  const command = router.localCommand(request, status);
  assert.equal(command?.kind, 'steps', 'answered locally');
  return decodeAnswer(router.answer(command!, status));
}

test('postgres.js: a named directive prepared, described and run in one request, then run again, answered here', () => {
  const router = routing();
  const client = new Client(router);
  const first = client.request(parse('s1', 'SET ambassador.route = primary'), describe('S', 's1'), bind('', 's1'), execute(''), encodeSync());
  assert.equal(router.route, 'auto', 'nothing applied before the request is answered');
  assert.deepEqual(answerSteps(router, first), [{ type: '1' }, { type: 't', parameters: 0 }, { type: 'n' }, { type: '2' }, { type: 'C', tag: 'SET' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.route, 'primary');

  answerLocally(router, 'SET ambassador.route = auto');
  assert.deepEqual(answerSteps(router, client.request(bind('', 's1'), execute(''), encodeSync()), 'T'), [{ type: '2' }, { type: 'C', tag: 'SET' }, { type: 'Z', status: 'T' }]);
  assert.equal(router.route, 'primary', 'run again from its Bind');
});

test('SHOW in the extended protocol: described as one text column, its value read when it executes', () => {
  const router = routing();
  const client = new Client(router);
  router.noteCommit(0x16b3748n);
  const request = client.request(parse('', 'SHOW ambassador.min_lsn'), describe('S', ''), bind('', ''), describe('P', ''), execute(''), encodeSync());
  const column = { type: 'T', columns: ['ambassador.min_lsn'] };
  assert.deepEqual(answerSteps(router, request), [
    { type: '1' },
    { type: 't', parameters: 0 },
    column,
    { type: '2' },
    column,
    { type: 'D', values: ['0/16B3748'] },
    { type: 'C', tag: 'SHOW' },
    { type: 'Z', status: 'I' },
  ]);
  const reset = client.request(parse('r', 'RESET ambassador.min_lsn'), bind('p', 'r'), execute('p'), close('P', 'p'), close('S', 'r'), encodeSync());
  assert.deepEqual(answerSteps(router, reset), [{ type: '1' }, { type: '2' }, { type: 'C', tag: 'RESET' }, { type: '3' }, { type: '3' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.minLsn, 0n);
  // The unnamed statement is still the SHOW; the closed one is gone (the server would answer 26000).
  assert.deepEqual(answerSteps(router, client.request(bind('', ''), execute(''), encodeSync())), [{ type: '2' }, { type: 'D', values: ['0/0'] }, { type: 'C', tag: 'SHOW' }, { type: 'Z', status: 'I' }]);
  assert.equal(router.localCommand(client.request(bind('', 'r'), execute(''), encodeSync()), 'I'), null);
});

test('an invalid directive in the extended protocol: 22023 at its Parse, the rest skipped to Sync, the statement not created', () => {
  const router = routing();
  const client = new Client(router);
  const request = client.request(parse('bad', "SET ambassador.route = 'sideways'"), describe('S', 'bad'), bind('', 'bad'), execute(''), encodeSync());
  assert.deepEqual(answerSteps(router, request, 'T'), [{ type: 'E', code: '22023' }, { type: 'Z', status: 'T' }]);
  assert.equal(router.route, 'auto');
  const bindBad = client.request(bind('', 'bad'), execute(''), encodeSync());
  assert.equal(router.localCommand(bindBad, 'I'), null, 'a Bind of it goes on to the server');
  const [first] = bindBad.items;
  assert.ok(first?.kind === 'bind' && first.rename === null, 'as a name the ambassador does not hold (the server answers 26000)');
});

test('a refused Parse: what follows it up to Sync changes nothing; the unnamed statement is gone', () => {
  const router = routing();
  const client = new Client(router);
  answerSteps(router, client.request(parse('good', 'SHOW ambassador.route'), encodeSync()));
  answerSteps(router, client.request(parse('', 'SHOW ambassador.retry'), encodeSync()));
  const refused = client.request(parse('bad', "SET ambassador.route = 'x'"), close('S', 'good'), parse('', 'SHOW ambassador.min_lsn'), bind('p', 'good'), encodeSync());
  assert.deepEqual(answerSteps(router, refused), [{ type: 'E', code: '22023' }, { type: 'Z', status: 'I' }]);
  assert.deepEqual(answerSteps(router, client.request(bind('p', ''), execute('p'), encodeSync())), [{ type: '2' }, { type: 'D', values: ['on'] }, { type: 'C', tag: 'SHOW' }, { type: 'Z', status: 'I' }], 'the unnamed statement is still the one before');
  assert.deepEqual(answerSteps(router, client.request(bind('', 'good'), execute(''), encodeSync())), [{ type: '2' }, { type: 'D', values: ['auto'] }, { type: 'C', tag: 'SHOW' }, { type: 'Z', status: 'I' }], 'the skipped Close closed nothing');

  answerSteps(router, client.request(parse('', "SET ambassador.route = 'x'"), encodeSync()));
  assert.equal(router.localCommand(client.request(bind('', ''), execute(''), encodeSync()), 'I'), null, 'no unnamed statement left: the server answers');
});

test('an invalid value is refused here whatever came before; in a request that ends without Sync it goes to the server and exists there', () => {
  const router = routing();
  const client = new Client(router);
  const invalid = parse('', "SET ambassador.route = 'x'");
  assert.equal(router.localCommand(client.request(parse('', 'SELECT 1'), bind('', ''), execute(''), invalid, encodeSync()), 'I'), null);
  assert.deepEqual(answerSteps(router, client.request(invalid, bind('', ''), execute(''), encodeSync())), [{ type: 'E', code: '22023' }, { type: 'Z', status: 'I' }], 'the same bytes again, alone');

  assert.equal(router.localCommand(client.request(parse('odd', "SET ambassador.route = 'x'"), flush()), 'I'), null);
  const bindOdd = client.request(bind('', 'odd'), execute(''), encodeSync());
  assert.equal(router.localCommand(bindOdd, 'I'), null);
  const [first] = bindOdd.items;
  assert.ok(first?.kind === 'bind' && first.rename !== null, 'bound as the server statement the Parse created');
});

test('not answered here: a lone Sync, a request while an exchange is open, parameters, binary results', () => {
  const router = routing();
  const client = new Client(router);
  assert.equal(router.localCommand(client.request(encodeSync()), 'I'), null, 'a lone Sync may close an exchange open on the server');
  const alone = client.request(parse('s', 'SHOW ambassador.route'), bind('', 's'), execute(''), encodeSync());
  assert.equal(router.localCommand(alone, 'I', true), null, 'after a Flush, the Sync is the server exchange\'s');
  assert.equal(router.localCommand(alone, 'I', false)?.kind, 'steps');

  const withParameter = new MessageWriter().cstring('').cstring('s').int16(0).int16(1).int32(1).bytes(Buffer.from('x')).int16(0).finish(FrontendType.Bind);
  const binaryResults = new MessageWriter().cstring('').cstring('s').int16(0).int16(0).int16(1).int16(1).finish(FrontendType.Bind);
  const textResults = new MessageWriter().cstring('').cstring('s').int16(0).int16(0).int16(1).int16(0).finish(FrontendType.Bind);
  assert.equal(router.localCommand(client.request(withParameter, execute(''), encodeSync()), 'I'), null);
  assert.equal(router.localCommand(client.request(binaryResults, execute(''), encodeSync()), 'I'), null);
  assert.equal(router.localCommand(client.request(textResults, execute(''), encodeSync()), 'I')?.kind, 'steps');
  const typed = encodeParse('', 'SHOW ambassador.route', Buffer.from([0, 1, 0, 0, 0, 25]));
  assert.equal(router.localCommand(client.request(typed, bind('', ''), execute(''), encodeSync()), 'I'), null, 'declared parameter types');
});

test('extended-protocol directives go to the server with anything else in the request, without Sync, or in a failed transaction', () => {
  const router = routing();
  const client = new Client(router);
  const mixed = [
    client.request(parse('', 'SET ambassador.route = primary'), bind('', ''), execute(''), parse('', 'SELECT 1'), bind('', ''), execute(''), encodeSync()),
    client.request(parse('', 'SELECT 1'), bind('', ''), execute(''), parse('', 'SHOW ambassador.route'), bind('', ''), execute(''), encodeSync()),
    client.request(parse('', 'SHOW ambassador.route'), bind('', ''), execute(''), flush()),
  ];
  for (const request of mixed) assert.equal(router.localCommand(request, 'I'), null);
  // An invalid value there is the server's placeholder setting: the statement exists, renamed as any other.
  assert.equal(router.localCommand(client.request(parse('', 'SELECT 1'), parse('odd', "SET ambassador.route = 'sideways'"), encodeSync()), 'I'), null);
  const bindOdd = client.request(bind('', 'odd'), execute(''), encodeSync());
  assert.equal(router.localCommand(bindOdd, 'I'), null);
  const [first] = bindOdd.items;
  assert.ok(first?.kind === 'bind' && first.rename !== null, 'a Bind of the server statement the client prepared');
  const alone = client.request(parse('', 'SHOW ambassador.route'), bind('', ''), execute(''), encodeSync());
  assert.equal(router.localCommand(alone, 'E'), null);
  assert.equal(router.localCommand(alone, 'I')?.kind, 'steps');
  assert.equal(router.localCommand(client.request(parse('', 'SHOW work_mem'), bind('', ''), execute(''), encodeSync()), 'I'), null);
  assert.equal(router.route, 'auto', 'nothing applied');
});

test('an invalid value for an ambassador setting is refused here with 22023, and nothing changes', () => {
  const router = routing();
  for (const sql of ["SET ambassador.route = 'sideways'", "SET ambassador.min_lsn = 'yesterday'", 'SET ambassador.unknown = 1']) {
    for (const status of ['I', 'T'] as const) {
      const [error, ready, ...rest] = answerLocally(router, sql, status);
      assert.deepEqual(error, { type: 'E', code: '22023' }, sql);
      assert.deepEqual(ready, { type: 'Z', status }, sql);
      assert.deepEqual(rest, []);
    }
  }
  assert.equal(router.route, 'auto');
  assert.equal(router.minLsn, 0n);
});

test('directives open with any spaces the patterns read, in any case; texts with other first words are not directives', () => {
  const client = routing();
  assert.equal(show(client, 'route'), 'auto');
  assert.deepEqual(answerLocally(client, '\t\n sEt ambassador.route = replica'), [{ type: 'C', tag: 'SET' }, { type: 'Z', status: 'I' }]);
  assert.equal(client.route, 'replica');
  assert.deepEqual(answerLocally(client, ' ReSeT ambassador.route'), [{ type: 'C', tag: 'RESET' }, { type: 'Z', status: 'I' }]);
  assert.equal(client.route, 'auto');
  // A space outside ASCII is a space to the SHOW pattern (\s): still answered here.
  assert.equal(client.statementCommand('\u00a0SHOW ambassador.retry')?.kind, 'show');
  assert.equal(client.statementCommand('\u3000show ambassador.route')?.kind, 'show');
  for (const sql of ['settings ambassador.route', 'set1 ambassador.route = primary', 'SELECT ambassador.route', 'shows ambassador.route', '', ' ', '(SET ambassador.route = primary)']) {
    assert.equal(client.statementCommand(sql), null, sql);
  }
});

test('mayBeDirective: false only where neither directive pattern can match', () => {
  // What SHOW_DIRECTIVE and DIRECTIVE_NAMES accept at the start of a text.
  const patterns = [/^\s*show\s+ambassador\./i, /^\s*(set|reset)\b[\s\S]*\bambassador\./i];
  const pieces = [' ', '\t', '\n', '\u00a0', '\u2028', 's', 'S', 'e', 't', 'T', 'r', 'h', 'o', 'w', 'W', '1', '_', '-', '/*', 'set', 'SHOW', 'reset', ' ambassador.route', '=on'];
  let seed = 7;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed >>> 16) % n;
  };
  let directives = 0;
  for (let i = 0; i < 20_000; i++) {
    let sql = '';
    for (let n = 1 + next(7); n > 0; n--) sql += pieces[next(pieces.length)];
    const matches = patterns.some((pattern) => pattern.test(sql));
    if (matches) directives++;
    if (matches) assert.equal(mayBeDirective(sql), true, JSON.stringify(sql));
  }
  assert.ok(directives > 100, `test: enough directives generated (${directives})`);
  for (const sql of ['select 1', 'SELECT abalance FROM pgbench_accounts WHERE aid = 1;', 'settings', 'sets', 'resets', 'showing', 'begin', '--set\nset x', '/* set */ set x']) {
    assert.equal(mayBeDirective(sql), false, sql);
  }
  for (const sql of ['set', 'SET x = 1', ' \r\f\vShow x', 'RESET ALL', 'set1', 'set_config', '\u00a0select']) {
    assert.equal(mayBeDirective(sql), true, sql);
  }
});

test('a plain simple Query goes undecoded; what it would have been decoded for agrees', async () => {
  const { CORPUS: EFFECTS } = await import('../router/session-effects-corpus.ts');
  const { CORPUS: CLASSIFIED } = await import('../router/classifier-corpus.ts');
  const router = routing();
  const decoded = new ClientRouting({ classifier, readYourWrites: 'lsn', route: 'auto', readOnlyDefault: false });
  const texts = [
    ...EFFECTS.map((c) => c.sql),
    ...CLASSIFIED.map((c) => c.sql),
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
    'UPDATE pgbench_accounts SET abalance = abalance + -2113 WHERE aid = 48213;',
    'SHOW ambassador.route', 'show ambassador.retry;', 'SET ambassador.route = primary', 'reset ambassador.min_lsn', 'set_x = 1', 'setx', 'Show_x',
    'SELECT 1 AS temp_x', 'SELECT 1 AS TEMP', 'SELECT x FROM advisory', 'SELECT set_config', 'SELECT SET_CONFIG', 'SELECT 1;;', 'SELECT 1; ', 'SELECT 1 ;\n',
    'SELECT café', 'SELECT 1\u0001', 'SELECT \u007f1', '\u00a0SELECT 1', '/* c */ SELECT 1', '-- c\nSELECT 1', ' \t\nselect 1', '',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2113, CURRENT_TIMESTAMP);',
    'SELECT now()', 'SELECT count(*) FROM t WHERE a IN (1, (2)) -- c', 'SELECT (1 -- )\n', 'SELECT (1 -- (\n)', 'SELECT 1 -- (\n', 'SELECT (1', 'SELECT 1)', 'SELECT (1));',
    'SELECT (1) ;  ', 'SELECT pg_advisory_lock(1)', 'SELECT f(temp)', 'SELECT (1)-(-2)', 'SELECT (x) --',
  ];
  // Every byte that ends UNREMARKABLE's run, last in the text (where only a semicolon may be).
  const endings = [';', ';  \n', '; select 1', ' -- c', ')', '(', "'", '"', '$', '/', '\\'];
  const variants = texts.flatMap((sql) => [sql, sql.toUpperCase(), sql.toLowerCase(), `_${sql}`, ...endings.map((end) => `${sql}${end}`)]);
  let plain = 0;
  for (const sql of variants) {
    const request = new Client(router).query(sql);
    if (request.texts !== UNDECODED) continue;
    plain++;
    assert.equal(plainQueryBytes(Buffer.from(sql), 0, Buffer.byteLength(sql)), true, sql);
    assert.deepEqual(plainStatement(sql), { effects: [], statements: 1, uncertain: false }, sql);
    assert.deepEqual(request.effects, [], sql);
    assert.equal(router.statementCommand(sql), null, sql);
    assert.equal(router.localCommand(request, 'I'), null, sql);
    assert.equal(router.mayRetry(request), true, sql);
    // The same request with its text decoded is routed, answered and retried alike.
    const twin: Request = { ...request, texts: [sql], route: null };
    assert.deepEqual(textsOf(request), [sql], sql);
    assert.deepEqual(decoded.decide(twin), router.decide(request), sql);
    assert.equal(decoded.mayRetry(twin), true, sql);
  }
  assert.ok(plain >= 150, `test: enough plain texts (${plain} of ${variants.length})`);
  for (const sql of [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;', 'UPDATE pgbench_accounts SET abalance = abalance + -2113 WHERE aid = 48213;', 'select 1',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2113, CURRENT_TIMESTAMP);', 'SELECT now()', 'SELECT (1)-(-2) ;',
  ]) {
    assert.equal(new Client(router).query(sql).texts, UNDECODED, sql);
  }
  for (const sql of [
    'SHOW ambassador.route', 'Reset ambassador.route', 'SELECT 1 AS Temp', 'SELECT 1;;', 'SELECT café', "SELECT 'x'", '/* c */ SELECT 1', 'BEGIN', 'SET x = 1',
    'SELECT (1 -- )\n', 'SELECT (1', 'SELECT 1)', 'SELECT (1));', 'SELECT pg_advisory_lock(1)', 'SELECT (x) -- c',
  ]) {
    assert.notEqual(new Client(router).query(sql).texts, UNDECODED, sql);
  }
});

test('applyDirectives applies the directives in forwarded texts', () => {
  const client = new Client();
  const router = routing();
  router.applyDirectives(client.query('select 1'));
  assert.deepEqual([router.route, router.minLsn], ['auto', 0n]);

  router.applyDirectives(client.query('SET ambassador.route = replica; SELECT 1'));
  assert.equal(router.route, 'replica');
  router.applyDirectives(client.request(parse('', "SET ambassador.min_lsn = '0/3000000'"), bind('', ''), execute(''), encodeSync()));
  assert.equal(router.minLsn, 0x3000000n);
  router.applyDirectives(client.request(parse('', 'RESET ambassador.route'), bind('', ''), execute(''), encodeSync()));
  assert.equal(router.route, 'auto');
  router.applyDirectives(client.query('SET ambassador.route = sideways'));
  assert.equal(router.route, 'auto', 'an invalid value changes nothing');
  router.applyDirectives(client.request(functionCall(1598)));
  assert.deepEqual([router.route, router.minLsn], ['auto', 0x3000000n]);
});

// ---- ambassador.retry ----

test('SET ambassador.retry = off / on / RESET: answered here, shown, and mayRetry follows', () => {
  const client = new Client();
  const router = routing();
  const read = client.query('select * from t');
  assert.equal(show(router, 'retry'), 'on');
  assert.equal(router.mayRetry(read), true);
  assert.deepEqual(answerLocally(router, 'SET ambassador.retry = off'), [{ type: 'C', tag: 'SET' }, { type: 'Z', status: 'I' }]);
  assert.equal(show(router, 'retry'), 'off');
  assert.equal(router.mayRetry(read), false);
  answerLocally(router, "set ambassador.retry to 'on'");
  assert.equal(router.mayRetry(read), true);
  answerLocally(router, 'SET ambassador.retry = false');
  assert.equal(show(router, 'retry', 'T'), 'off');
  answerLocally(router, 'RESET ambassador.retry');
  assert.equal(show(router, 'retry'), 'on');
  const [error] = answerLocally(router, 'SET ambassador.retry = sometimes');
  assert.deepEqual(error, { type: 'E', code: '22023' });
  assert.equal(router.retry, true, 'an invalid value changes nothing');
});

test('a leading /* ambassador:retry=off */ comment keeps that request from being retried', () => {
  const client = new Client();
  const router = routing();
  assert.equal(router.mayRetry(client.query('/* ambassador:retry=off */ select 1')), false);
  assert.equal(router.mayRetry(client.query('-- ambassador:retry=off\nselect 1')), false);
  assert.equal(router.mayRetry(client.request(parse('', '/* ambassador:retry=off */ select 1'), bind('', ''), execute(''), encodeSync())), false);
  assert.equal(router.mayRetry(client.query("select '/* ambassador:retry=off */'")), true, 'only leading comments count');
  assert.equal(router.mayRetry(client.query('select 1')), true);
  // Through a Parse (its text always decoded): whitespace, then the comment. Only Postgres's
  // whitespace counts: a no-break space or a byte order mark is no whitespace to its lexer.
  const parsed = (sql: string): Request => client.request(parse('', sql), bind('', ''), execute(''), encodeSync());
  for (const lead of [' ', '\n\t', '\f\v\r']) assert.equal(router.mayRetry(parsed(`${lead}/* ambassador:retry=off */ select 1`)), false, JSON.stringify(lead));
  for (const sql of ['\u00a0/* ambassador:retry=off */ select 1', '\ufeff-- ambassador:retry=off\nselect 1', 'select 1', '(select 1)', '0', 'é /* ambassador:retry=off */', '']) {
    assert.equal(router.mayRetry(parsed(sql)), true, JSON.stringify(sql));
  }
});

test('with splitting off, SET ambassador.retry reaches the server and still takes effect here', () => {
  const client = new Client();
  const router = routing({ classifier: null });
  assert.equal(router.localCommand(client.query('SET ambassador.retry = off'), 'I'), null, 'forwarded, as Postgres accepts the placeholder');
  router.applyDirectives(client.query('SET ambassador.retry = off'));
  assert.equal(router.retry, false);
  assert.equal(show(router, 'retry'), 'off', 'SHOW is answered here with splitting off too');
  router.applyDirectives(client.query("SET ambassador.retry TO 'on'"));
  assert.equal(router.retry, true);
  router.applyDirectives(client.query('SET ambassador.retry = off'));
  router.applyDirectives(client.query('RESET ambassador.retry'));
  assert.equal(router.retry, true);
  router.applyDirectives(client.query('SET ambassador.route = replica'));
  assert.equal(router.route, 'auto', 'routing directives need the parser');
});

test('pool.cacheUnnamedStatements: directives stay unnamed and answered here; a refusal leaves the shared unnamed statement', () => {
  const router = routing();
  const client = new Client(router, { cacheUnnamed: true });
  const select = client.request(parse('', 'SELECT 1'), encodeSync());
  const [shared] = select.items;
  assert.ok(shared?.kind === 'parse' && shared.unnamed, 'an ordinary text is shared');
  const refused = client.request(parse('bad', "SET ambassador.route = 'x'"), parse('', 'SHOW ambassador.route'), encodeSync());
  assert.deepEqual(answerSteps(router, refused), [{ type: 'E', code: '22023' }, { type: 'Z', status: 'I' }]);
  const bound = client.request(bind('', ''), execute(''), encodeSync());
  assert.equal(router.localCommand(bound, 'I'), null);
  const [first] = bound.items;
  assert.ok(first?.kind === 'bind' && first.serverName === shared.statement.serverName, 'still the SELECT, under its server name');

  const show = client.request(parse('', 'SHOW ambassador.route'), bind('', ''), execute(''), encodeSync());
  assert.deepEqual(answerSteps(router, show), [{ type: '1' }, { type: '2' }, { type: 'D', values: ['auto'] }, { type: 'C', tag: 'SHOW' }, { type: 'Z', status: 'I' }]);
  assert.deepEqual(answerSteps(router, client.request(bind('', ''), execute(''), encodeSync())), [{ type: '2' }, { type: 'D', values: ['auto'] }, { type: 'C', tag: 'SHOW' }, { type: 'Z', status: 'I' }], 'bound again: still the directive');
});
