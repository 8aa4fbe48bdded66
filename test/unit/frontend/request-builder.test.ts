// RequestBuilder with whole messages handed over as ranges of a client chunk (as the transaction
// forwarder frames them): they go on as those ranges, not copies; an unnamed Parse kept for later
// replays is copied out of a large chunk so that the chunk is not kept alive with it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeErrorFields } from '../../../src/protocol/backend.ts';
import { decodeParse, decodeTarget, encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../../src/protocol/frontend.ts';
import { frameMessage } from '../../../src/protocol/writer.ts';
import { deallocates, dropsServerStatements, messageOf, RequestBuilder, restoreDeallocated, standAlone, textsOf, UNDECODED, type Item, type Request } from '../../../src/frontend/request-builder.ts';
import { CLOSED_STATEMENT, MISSING_STATEMENT, REFUSED_PARSE } from '../../../src/frontend/statements.ts';
import { SessionEffectsCache } from '../../../src/router/session-effects.ts';

/** Feeds every message of `chunk` as its range of the chunk, as the forwarder does (no payload). */
function feed(builder: RequestBuilder, chunk: Buffer): Request[] {
  const out: Request[] = [];
  for (let at = 0; at < chunk.length; ) {
    const end = at + 1 + chunk.readInt32BE(at + 1);
    let r = builder.add(chunk[at]!, null, chunk, at, end);
    if (r === 'wait') {
      // Named after every drop was answered (see the tests of 'wait').
      builder.dropsAnswered();
      r = builder.add(chunk[at]!, null, chunk, at, end);
    }
    if (r !== null && r !== 'terminate' && r !== 'wait') out.push(r);
    at = end;
  }
  return out;
}

const unnamedBind = frameMessage(FrontendType.Bind, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]));
const execute = frameMessage(FrontendType.Execute, Buffer.from([0, 0, 0, 0, 0]));
const query = frameMessage(FrontendType.Query, Buffer.from('SELECT 1\0'));

test('messages handed over whole go on as those ranges of the chunk, and count their sizes', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const chunk = Buffer.concat([encodeParse('', 'SELECT $1', Buffer.from([0, 0])), unnamedBind, execute, encodeSync(), query]);
  const [extended, simple] = feed(builder, chunk);
  let at = 0;
  for (const item of extended!.items) {
    assert.ok(item.kind === 'raw' || item.kind === 'bind');
    assert.ok(item.chunk === chunk && item.start === at, `${item.kind} at ${at} is a range of the chunk`);
    at = item.end;
  }
  assert.equal(extended!.bytes, at);
  const [q] = simple!.items as Extract<Item, { kind: 'raw' }>[];
  assert.deepEqual([q!.chunk === chunk, q!.start, q!.end], [true, at, chunk.length]);
  assert.equal(simple!.bytes, query.length);
  assert.equal(Object.isFrozen(simple!.effects), true, 'no effects: the shared empty list');
  // Its text, not decoded yet, is read from where the Query lies in the chunk.
  assert.equal(simple!.texts, UNDECODED);
  assert.deepEqual(textsOf(simple!), [query.subarray(5, query.length - 1).toString()]);
});

test('standAlone: a request sent behind an exchange left open gets that exchange\'s unnamed Parse to run alone; one running a portal bound there cannot', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const parse = encodeParse('', 'SELECT $1', Buffer.from([0, 0]));
  const flush = frameMessage(FrontendType.Flush, Buffer.alloc(0));
  const bindOf = (portal: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`${portal}\0\0\0\0\0\0\0\0`, 'latin1'));
  const executeOf = (portal: string): Buffer => frameMessage(FrontendType.Execute, Buffer.from(`${portal}\0\0\0\0\0`, 'latin1'));
  const describeOf = (name: string, kind: 'S' | 'P' = 'S'): Buffer => encodeTarget(FrontendType.Describe, kind, name);
  // postgres.js without prepared statements: Parse, Describe, Flush; then Bind, Execute, Sync.
  const [opened] = feed(builder, Buffer.concat([parse, describeOf(''), flush]));
  assert.equal(opened!.completes, false);
  const [behind] = feed(builder, Buffer.concat([unnamedBind, describeOf('', 'P'), execute, encodeSync()]));
  const bind = behind!.items[0] as Extract<Item, { kind: 'bind' }>;
  assert.deepEqual([bind.unnamedParse, bind.exchangeParse], [null, parse], 'on its lease, the Parse is there already');
  assert.equal(standAlone(behind!), true);
  assert.deepEqual([bind.unnamedParse, bind.exchangeParse], [parse, null], 'alone, the Parse goes in front');
  // A request that parses the unnamed statement itself needs nothing more.
  feed(builder, Buffer.concat([parse, flush]));
  const [own] = feed(builder, Buffer.concat([parse, unnamedBind, execute, encodeSync()]));
  assert.equal(standAlone(own!), true);
  assert.equal((own!.items[1] as Extract<Item, { kind: 'bind' }>).unnamedParse, null);
  // A portal bound in the open exchange lives only on that lease.
  feed(builder, Buffer.concat([parse, bindOf('p1'), flush]));
  const [runsPortal] = feed(builder, Buffer.concat([executeOf('p1'), encodeSync()]));
  assert.equal(standAlone(runsPortal!), false);
  const [describesPortal] = feed(builder, Buffer.concat([describeOf('p1', 'P'), executeOf('p1'), encodeSync()]));
  assert.equal(standAlone(describesPortal!), false);
  const [bindsItsOwn] = feed(builder, Buffer.concat([bindOf('p1'), executeOf('p1'), encodeSync()]));
  assert.equal(standAlone(bindsItsOwn!), true, 'a portal it binds itself');
});

test('an unnamed Parse kept for a later Bind is the slice of a small chunk, a copy out of a large one', () => {
  // What counts is the memory the chunk's bytes live in (its ArrayBuffer): a Node pool slab
  // (8 KiB on Node 20 and 22, 64 KiB on Node 24) is large, and so is a chunk of its own over
  // 4 KiB. So each chunk here has an ArrayBuffer of its own, and a copy is told by writing over
  // the chunk after the fact.
  for (const padding of [0, 8192]) {
    const builder = new RequestBuilder(new SessionEffectsCache());
    const filler = Buffer.concat(Array.from({ length: padding / 64 }, () => frameMessage(FrontendType.Query, Buffer.from(`SELECT '${'x'.repeat(52)}'\0`))));
    const parse = encodeParse('', 'SELECT $1', Buffer.from([0, 0]));
    const bytes = Buffer.concat([filler, parse, unnamedBind, execute, encodeSync()]);
    const chunk = Buffer.allocUnsafeSlow(bytes.length);
    bytes.copy(chunk);
    feed(builder, chunk);
    const [later] = feed(builder, Buffer.concat([unnamedBind, execute, encodeSync()]));
    const bind = later!.items[0] as Extract<Item, { kind: 'bind' }>;
    assert.deepEqual(bind.unnamedParse, parse, 'the Parse to replay');
    chunk.fill(0);
    assert.equal(bind.unnamedParse!.equals(parse), padding > 0, `chunk of ${chunk.length} bytes: ${padding > 0 ? 'a copy' : 'a slice'}`);
  }
});

test('an unnamed Parse that repeats the last one is not read again; any other Parse is', () => {
  const looked: string[] = [];
  const cache = new (class extends SessionEffectsCache {
    override get(sql: string) {
      looked.push(sql);
      return super.get(sql);
    }
  })();
  const builder = new RequestBuilder(cache);
  const exchange = (parse: Buffer): Request => feed(builder, Buffer.concat([parse, unnamedBind, execute, encodeSync()]))[0]!;
  const set = encodeParse('', 'SET search_path TO app', Buffer.from([0, 0]));
  const first = exchange(set);
  const again = exchange(Buffer.from(set));
  assert.deepEqual(looked, ['SET search_path TO app'], 'classified once');
  assert.equal(textsOf(again)![0], textsOf(first)![0]);
  assert.deepEqual(again.effects, first.effects);
  assert.ok(again.effects.length > 0, 'the SET still counts as a session effect');
  const parseOf = (r: Request): Buffer => messageOf(r.items[0] as Extract<Item, { kind: 'raw' }>);
  assert.deepEqual(parseOf(again), set);

  // Same length, other bytes; a named Parse of the same text; then the first text once more.
  exchange(encodeParse('', 'SET search_path TO xyz', Buffer.from([0, 0])));
  feed(builder, Buffer.concat([encodeParse('s1', 'SET search_path TO xyz', Buffer.from([0, 0])), encodeSync()]));
  exchange(set);
  assert.deepEqual(looked, ['SET search_path TO app', 'SET search_path TO xyz', 'SET search_path TO xyz', 'SET search_path TO app']);

  // A repeat handed over without its whole message goes on as the same bytes.
  const bare = builder.add(FrontendType.Parse, set.subarray(5), null);
  assert.equal(bare, null);
  const [framed] = feed(builder, Buffer.concat([unnamedBind, execute, encodeSync()]));
  assert.deepEqual(parseOf(framed!), set);
  assert.equal((framed!.items[1] as Extract<Item, { kind: 'bind' }>).unnamedParse, null, 'bound in the same exchange: nothing to replay');
  assert.equal(looked.length, 4);

  // An unreadable Parse (no parameter-type count) is never taken for the one before it, nor
  // for itself when it comes again: what it runs stays unknown.
  const unreadable = frameMessage(FrontendType.Parse, Buffer.from('\0SET search_path TO app\0'));
  for (let i = 0; i < 2; i++) {
    const [r] = feed(builder, Buffer.concat([unreadable, encodeSync()]));
    assert.equal(r!.texts, null);
  }
  const after = exchange(set);
  assert.equal(looked.length, 5, 'read again after an unreadable one');
  assert.equal(textsOf(after)![0], 'SET search_path TO app');
});

test('Close of a statement: the client forgets its own, the server closes one the ambassador does not know', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const closeOf = (name: string): Buffer => encodeTarget(FrontendType.Close, 'S', name);
  const sent = (request: Request): Buffer => messageOf(request.items[0] as Extract<Item, { kind: 'raw' }>);
  feed(builder, Buffer.concat([encodeParse('mine', 'SELECT 1', Buffer.from([0, 0])), encodeSync()]));
  const [own, unknown, shared] = feed(builder, Buffer.concat([closeOf('mine'), encodeSync(), closeOf('made_with_sql'), encodeSync(), closeOf('pa_0123'), encodeSync()]));
  assert.deepEqual(decodeTarget(sent(own!).subarray(5)), { kind: 'S', name: CLOSED_STATEMENT }, 'a shared statement is never closed for one client');
  assert.deepEqual(decodeTarget(sent(unknown!).subarray(5)), { kind: 'S', name: 'made_with_sql' });
  assert.deepEqual(decodeTarget(sent(shared!).subarray(5)), { kind: 'S', name: CLOSED_STATEMENT }, 'nor one named as the ambassador names its own');
  const [bind] = feed(builder, Buffer.concat([frameMessage(FrontendType.Bind, Buffer.from('\0mine\0\0\0\0\0\0\0')), encodeSync()]));
  assert.equal((bind!.items[0] as Extract<Item, { kind: 'bind' }>).rename, null, 'after its Close the name is unknown: the server answers a Bind of it');
});

test('a Bind or Describe of a statement the client never prepared names one nothing has, never what another client left', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (name: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`\0${name}\0\0\0\0\0\0\0`));
  const describeOf = (name: string): Buffer => encodeTarget(FrontendType.Describe, 'S', name);
  const first = (request: Request | undefined): Item => request!.items[0]!;
  const [unnamed, describedUnnamed, shared, describedShared, sqlPrepared] = feed(
    builder,
    Buffer.concat([unnamedBind, encodeSync(), describeOf(''), encodeSync(), bindOf('pa_0123'), encodeSync(), describeOf('pa_0123'), encodeSync(), bindOf('made_with_sql'), encodeSync()]),
  );
  for (const request of [unnamed, shared]) {
    const bind = first(request) as Extract<Item, { kind: 'bind' }>;
    assert.equal(bind.serverName, MISSING_STATEMENT);
    assert.deepEqual(bind.rename, Buffer.from(`${MISSING_STATEMENT}\0`));
    assert.equal(bind.source, null, 'nothing to create on the server');
  }
  for (const request of [describedUnnamed, describedShared]) assert.deepEqual(first(request), { kind: 'describe', serverName: MISSING_STATEMENT, source: null, unnamedParse: null, exchangeParse: null });
  assert.equal((first(sqlPrepared) as Extract<Item, { kind: 'bind' }>).rename, null, "another unknown name may be the session's own (SQL PREPARE): the server's to answer");

  // Once the client parses its unnamed statement, a Bind and a Describe of it go as they came,
  // behind its Parse when it was sent in an earlier exchange (the server may be another).
  const parse = encodeParse('', 'SELECT 1', Buffer.from([0, 0]));
  feed(builder, Buffer.concat([parse, encodeSync()]));
  const [bound, described] = feed(builder, Buffer.concat([unnamedBind, encodeSync(), describeOf(''), encodeSync()]));
  assert.equal((first(bound) as Extract<Item, { kind: 'bind' }>).rename, null);
  assert.deepEqual((first(bound) as Extract<Item, { kind: 'bind' }>).unnamedParse, parse);
  assert.deepEqual(first(described), { kind: 'describe', serverName: '', source: null, unnamedParse: parse, exchangeParse: null });
  const [together] = feed(builder, Buffer.concat([parse, describeOf(''), encodeSync()]));
  assert.deepEqual(together!.items[1], { kind: 'describe', serverName: '', source: null, unnamedParse: null, exchangeParse: parse }, 'parsed in the same exchange: nothing to replay (but its Parse, should it run alone)');
  // A simple Query drops it, as in Postgres.
  const [, afterQuery] = feed(builder, Buffer.concat([query, unnamedBind, encodeSync()]));
  assert.equal((first(afterQuery) as Extract<Item, { kind: 'bind' }>).serverName, MISSING_STATEMENT);
  feed(builder, Buffer.concat([parse, encodeSync()]));
  // Closed, it is gone: a later Bind is not answered by replaying its Parse.
  const [closed, afterClose] = feed(builder, Buffer.concat([encodeTarget(FrontendType.Close, 'S', ''), encodeSync(), unnamedBind, encodeSync()]));
  assert.equal(first(closed).kind, 'raw', 'the Close goes on: it closes the client’s own');
  assert.equal((first(afterClose) as Extract<Item, { kind: 'bind' }>).serverName, MISSING_STATEMENT);
  assert.equal((first(afterClose) as Extract<Item, { kind: 'bind' }>).unnamedParse, null);
  // A Parse the ambassador cannot read may still create it on the server: its Bind goes on too.
  const other = new RequestBuilder(new SessionEffectsCache());
  feed(other, Buffer.concat([frameMessage(FrontendType.Parse, Buffer.from('\0SELECT 1')), encodeSync()]));
  assert.equal((first(feed(other, Buffer.concat([unnamedBind, encodeSync()]))[0]) as Extract<Item, { kind: 'bind' }>).rename, null);
});

test('a simple Query with a bare SET ambassador.route = primary goes on, and is read, with the value quoted', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const sent = frameMessage(FrontendType.Query, Buffer.from('SET ambassador.route = primary; SELECT 1\0'));
  const [request] = feed(builder, sent);
  const quoted = "SET ambassador.route = 'primary'; SELECT 1";
  assert.deepEqual(request!.texts, [quoted]);
  const [item] = request!.items as Extract<Item, { kind: 'raw' }>[];
  assert.deepEqual(messageOf(item!), frameMessage(FrontendType.Query, Buffer.from(`${quoted}\0`)));
  assert.deepEqual(request!.effects, [{ kind: 'set', name: 'ambassador.route', statement: "SET ambassador.route = 'primary'" }], 'replayed as the server can take it');
});


test('pool.cacheUnnamedStatements: an unnamed statement is shared by what it is, parsed on a server once, hashed once per text', () => {
  const builder = new RequestBuilder(new SessionEffectsCache(), undefined, { cacheUnnamed: true });
  const parse = encodeParse('', 'SELECT $1', Buffer.from([0, 0]));
  const portalDescribe = encodeTarget(FrontendType.Describe, 'P', '');
  const run = (): Request => feed(builder, Buffer.concat([parse, unnamedBind, portalDescribe, execute, encodeSync()]))[0]!;
  const first = run();
  const [p, b] = first.items as [Extract<Item, { kind: 'parse' }>, Extract<Item, { kind: 'bind' }>];
  assert.equal(p.kind, 'parse');
  assert.equal(p.unnamed, true);
  assert.match(p.statement.serverName, /^pa_[0-9a-f]{24}$/);
  assert.deepEqual(decodeParse(p.statement.parse.subarray(5)), { name: p.statement.serverName, query: 'SELECT $1', paramTypes: Buffer.from([0, 0]) });
  assert.equal(b.kind, 'bind');
  assert.equal(b.serverName, p.statement.serverName, 'the Bind of the unnamed statement is renamed');
  assert.deepEqual(b.rename, Buffer.from(`${p.statement.serverName}\0`));
  assert.equal(first.retryable, true, 'a cached-plan error is retried: the client parsed the text just now');
  const again = run();
  assert.equal((again.items[0] as Extract<Item, { kind: 'parse' }>).statement, p.statement, 'the same bytes: the same statement, not hashed again');
  assert.equal(b.source, p.statement, 're-created from it on a server that lacks it');

  // A Bind in a later request, with no Parse, is renamed too; the named statement of the same text shares it.
  const [later] = feed(builder, Buffer.concat([unnamedBind, execute, encodeSync()]));
  assert.equal((later!.items[0] as Extract<Item, { kind: 'bind' }>).serverName, p.statement.serverName);
  assert.equal((later!.items[0] as Extract<Item, { kind: 'bind' }>).source, p.statement);
  assert.equal(later!.retryable, false, 'it does not describe its portal again: the client may rely on an old description');
  const [named] = feed(builder, Buffer.concat([encodeParse('s1', 'SELECT $1', Buffer.from([0, 0])), encodeSync()]));
  assert.equal((named!.items[0] as Extract<Item, { kind: 'parse' }>).statement.serverName, p.statement.serverName);
  assert.equal((named!.items[0] as Extract<Item, { kind: 'parse' }>).unnamed, false);

  // Off (the default), the same messages go as they came.
  const plain = feed(new RequestBuilder(new SessionEffectsCache()), Buffer.concat([parse, unnamedBind, portalDescribe, execute, encodeSync()]))[0]!;
  assert.deepEqual(plain.items.map((i) => i.kind), ['raw', 'bind', 'raw', 'raw', 'raw']);
  assert.equal((plain.items[1] as Extract<Item, { kind: 'bind' }>).rename, null);
  assert.equal(plain.retryable, false);
});

test('pool.cacheUnnamedStatements: Describe and Close of the unnamed statement; a Bind after its Close fails on the server', () => {
  const builder = new RequestBuilder(new SessionEffectsCache(), undefined, { cacheUnnamed: true });
  const [created] = feed(builder, Buffer.concat([encodeParse('', 'SELECT 1', Buffer.from([0, 0])), encodeTarget(FrontendType.Describe, 'S', ''), encodeSync()]));
  const { statement } = created!.items[0] as Extract<Item, { kind: 'parse' }>;
  const serverName = statement.serverName;
  assert.deepEqual(created!.items[1], { kind: 'describe', serverName, source: statement, unnamedParse: null, exchangeParse: null }, 'described under its server name');
  const [closed] = feed(builder, Buffer.concat([encodeTarget(FrontendType.Close, 'S', ''), encodeSync()]));
  assert.deepEqual(decodeTarget(messageOf(closed!.items[0] as Extract<Item, { kind: 'raw' }>).subarray(5)), { kind: 'S', name: CLOSED_STATEMENT }, 'shared: never closed for one client');
  const [bind] = feed(builder, Buffer.concat([unnamedBind, execute, encodeSync()]));
  const item = bind!.items[0] as Extract<Item, { kind: 'bind' }>;
  assert.equal(item.serverName, MISSING_STATEMENT, 'the server answers 26000, as Postgres does after the Close');
  assert.equal(item.unnamedParse, null, 'nothing replayed');
  // The same Parse again creates it again (the kept bytes were forgotten with it).
  const [back] = feed(builder, Buffer.concat([encodeParse('', 'SELECT 1', Buffer.from([0, 0])), unnamedBind, execute, encodeSync()]));
  assert.equal((back!.items[1] as Extract<Item, { kind: 'bind' }>).serverName, serverName);
});

test('pool.cacheUnnamedStatements: each request carries the statements it binds, however many texts the client parsed after it', () => {
  const builder = new RequestBuilder(new SessionEffectsCache(), undefined, { cacheUnnamed: true });
  const chunk = Buffer.concat(Array.from({ length: 200 }, (_, i) => [encodeParse('', `SELECT ${i}`, Buffer.from([0, 0])), encodeSync(), unnamedBind, execute, encodeSync()]).flat());
  const built = feed(builder, chunk);
  assert.equal(built.length, 400);
  for (let i = 0; i < 200; i++) {
    const bind = built[2 * i + 1]!.items[0] as Extract<Item, { kind: 'bind' }>;
    assert.equal(bind.source?.query, `SELECT ${i}`, `request ${2 * i + 1}`);
    assert.equal(bind.serverName, bind.source!.serverName);
  }
});

test('a plain simple Query keeps its text undecoded until asked for; one behind other messages of its request is decoded with them', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const sql = 'SELECT abalance FROM pgbench_accounts WHERE aid = 7';
  const [alone] = feed(builder, Buffer.concat([encodeQuery(sql)]));
  assert.equal(alone!.texts, UNDECODED);
  assert.deepEqual(alone!.effects, []);
  const texts = textsOf(alone!);
  assert.deepEqual(texts, [sql]);
  assert.equal(textsOf(alone!), texts, 'decoded once, then kept');
  // Behind a Parse of the same request (no Sync in between): both texts, decoded.
  const [behind] = feed(builder, Buffer.concat([encodeParse('', 'SELECT 2', Buffer.from([0, 0])), encodeQuery(sql)]));
  assert.deepEqual(behind!.texts, ['SELECT 2', sql]);
  // Not plain: decoded now, its effects read.
  const [set] = feed(builder, encodeQuery('SET search_path TO app'));
  assert.deepEqual(set!.texts, ['SET search_path TO app']);
  assert.equal(set!.effects.length, 1);
});

test('each request gets its own items and texts, one, two or many, and none of the one before', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const parse = (sql: string): Buffer => encodeParse('', sql, Buffer.from([0, 0]));
  const [one, two, three, none, unknown] = feed(
    builder,
    Buffer.concat([
      encodeQuery('SET search_path TO app'),
      parse('SELECT 1'),
      unnamedBind,
      execute,
      encodeSync(),
      parse('SELECT 2'),
      unnamedBind,
      execute,
      parse('SELECT 3'),
      encodeSync(),
      encodeSync(),
      frameMessage(FrontendType.FunctionCall, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])),
    ]),
  );
  assert.deepEqual(one!.texts, ['SET search_path TO app']);
  assert.deepEqual(one!.items.map((item) => item.kind), ['raw']);
  assert.deepEqual(two!.texts, ['SELECT 1', 'SELECT 1'], 'the Parse, then the Execute of what it parsed');
  assert.deepEqual(two!.items.map((item) => item.kind), ['raw', 'bind', 'raw', 'raw']);
  assert.deepEqual(three!.texts, ['SELECT 2', 'SELECT 2', 'SELECT 3']);
  assert.equal(three!.items.length, 5);
  assert.deepEqual(none!.texts, [], 'a lone Sync runs no text');
  assert.deepEqual(none!.items.map((item) => item.kind), ['raw']);
  assert.equal(unknown!.texts, null, 'a FunctionCall runs what cannot be known');
  // What one request holds is not another's (a request without texts has the shared empty list).
  const arrays = [one, two, three].flatMap((request) => [request!.items, request!.texts]).concat([none!.items]);
  assert.equal(new Set(arrays).size, arrays.length, 'no array is shared between requests');
  const [after] = feed(builder, encodeQuery('SET search_path TO other'));
  assert.deepEqual(after!.texts, ['SET search_path TO other']);
  assert.deepEqual(none!.texts, [], 'the empty texts of a request stay empty');
});

test('a long pipeline before its Sync is one request of every message, and the requests after it hold only their own', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const pairs = Array.from({ length: 100 }, () => [unnamedBind, execute]).flat();
  const [long, short, shorter] = feed(builder, Buffer.concat([encodeParse('', 'SELECT 1', Buffer.from([0, 0])), ...pairs, encodeSync(), unnamedBind, execute, encodeSync(), query]));
  assert.equal(long!.items.length, 202, 'the Parse, 100 Binds and Executes, the Sync');
  assert.deepEqual(long!.items.slice(0, 3).map((item) => item.kind), ['raw', 'bind', 'raw']);
  assert.equal((long!.items[201] as Extract<Item, { kind: 'raw' }>).type, FrontendType.Sync);
  assert.deepEqual(short!.items.map((item) => item.kind), ['bind', 'raw', 'raw']);
  assert.deepEqual(shorter!.items.map((item) => item.kind), ['raw']);
  assert.equal(builder.pending, false);
  // Half a request is pending; what came before it is not part of it.
  assert.deepEqual(feed(builder, Buffer.concat([unnamedBind, execute])), []);
  assert.equal(builder.pending, true);
  const [finished] = feed(builder, encodeSync());
  assert.deepEqual(finished!.items.map((item) => item.kind), ['bind', 'raw', 'raw']);
  assert.equal(new Set([long!.items, short!.items, shorter!.items, finished!.items]).size, 4, 'no array is shared');
});

test('a Parse of a name the client holds is refused: it goes on as a Parse every server refuses, with the client’s 42P05, and the name keeps its statement', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (name: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`\0${name}\0\0\0\0\0\0\0`));
  const [first] = feed(builder, Buffer.concat([encodeParse('s1', 'SELECT 1', Buffer.from([0, 0])), encodeSync()]));
  const held = (first!.items[0] as Extract<Item, { kind: 'parse' }>).statement;
  const [again] = feed(builder, Buffer.concat([encodeParse('s1', 'SELECT 2', Buffer.from([0, 0])), bindOf('s1'), encodeSync()]));
  const [refused, bound] = again!.items as [Extract<Item, { kind: 'raw' }>, Extract<Item, { kind: 'bind' }>];
  assert.deepEqual(messageOf(refused), REFUSED_PARSE);
  assert.equal(refused.entry?.kind, 'parse');
  const refusal = refused.entry?.kind === 'parse' ? refused.entry.refusal! : Buffer.alloc(0);
  assert.deepEqual(Object.fromEntries(decodeErrorFields(refusal.subarray(5))), { S: 'ERROR', V: 'ERROR', C: '42P05', M: 'prepared statement "s1" already exists' });
  assert.equal(bound.source, held, 'the name keeps its statement');
  assert.deepEqual(again!.texts, [], 'the refused text is not routed on');
  // Closed first, or an unnamed Parse: accepted.
  const [closedThenParsed, unnamed] = feed(
    builder,
    Buffer.concat([encodeTarget(FrontendType.Close, 'S', 's1'), encodeParse('s1', 'SELECT 2', Buffer.from([0, 0])), encodeSync(), encodeParse('', 'SELECT 3', Buffer.from([0, 0])), encodeParse('', 'SELECT 4', Buffer.from([0, 0])), encodeSync()]),
  );
  assert.equal(closedThenParsed!.items[1]!.kind, 'parse');
  assert.deepEqual(unnamed!.items.map((item) => item.kind), ['raw', 'raw', 'raw']);
  assert.deepEqual(unnamed!.texts, ['SELECT 3', 'SELECT 4']);

  // What follows the refusal up to the end of the request is skipped by the server: it changes no name.
  feed(builder, Buffer.concat([encodeParse('s3', 'SELECT 3', Buffer.from([0, 0])), encodeSync()]));
  feed(builder, Buffer.concat([encodeParse('s1', 'SELECT 5', Buffer.from([0, 0])), encodeParse('s4', 'SELECT 4', Buffer.from([0, 0])), encodeTarget(FrontendType.Close, 'S', 's3'), encodeSync()]));
  const [later] = feed(builder, Buffer.concat([bindOf('s3'), bindOf('s4'), encodeSync()]));
  const [s3, s4] = later!.items as Extract<Item, { kind: 'bind' }>[];
  assert.notEqual(s3!.source, null, 's3 still held: its Close was skipped');
  assert.equal(s4!.source, null, 's4 never made: its Parse was skipped');
});

test('a name whose Parse failed, or was in a request answered with an error without running, can be parsed again', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const parse = (name: string, sql: string): Buffer => encodeParse(name, sql, Buffer.from([0, 0]));
  const [failed] = feed(builder, Buffer.concat([parse('s1', 'SELECT 1'), parse('s2', 'SELECT 1'), encodeSync()]));
  const [s1, s2] = failed!.items as Extract<Item, { kind: 'parse' }>[];
  builder.parseFailed(s1!.statement);
  const [after] = feed(builder, Buffer.concat([parse('s1', 'SELECT 1'), parse('s2', 'SELECT 1'), encodeSync()]));
  assert.deepEqual(after!.items.map((item) => item.kind), ['parse', 'raw', 'raw'], 's1 is free again, s2 still held (another statement of the same text)');
  assert.notEqual(s1!.statement, s2!.statement);
  const [dropped] = feed(builder, Buffer.concat([parse('s3', 'SELECT 3'), encodeSync()]));
  builder.unanswered(dropped!);
  assert.equal(feed(builder, Buffer.concat([parse('s3', 'SELECT 3'), encodeSync()]))[0]!.items[0]!.kind, 'parse');
});

test('DEALLOCATE of a statement the client prepared, alone, is answered here and forgets the name; otherwise it goes to the server and the name stays', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (name: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`\0${name}\0\0\0\0\0\0\0`));
  const boundName = (request: Request): string | null => (request.items[0] as Extract<Item, { kind: 'bind' }>).serverName;
  const prepare = (...names: string[]): void => void feed(builder, Buffer.concat([...names.map((name) => encodeParse(name, `SELECT '${name}'`, Buffer.from([0, 0]))), encodeSync()]));
  prepare('s1', 's2', 'S3');
  const [simple] = feed(builder, encodeQuery('DEALLOCATE s1'));
  assert.deepEqual(simple!.local?.map((step) => step.kind), ['execute', 'sync']);
  assert.equal(deallocates(simple!.local!), true);
  assert.equal(boundName(feed(builder, Buffer.concat([bindOf('s1'), encodeSync()]))[0]!), 's1', 'forgotten: the server answers 26000');
  // Extended, as postgres.js sends it, with PREPARE.
  const steps = feed(builder, Buffer.concat([encodeParse('', 'deallocate prepare s2', Buffer.from([0, 0])), bindOf(''), encodeTarget(FrontendType.Describe, 'P', ''), execute, encodeSync()]))[0]!.local;
  assert.deepEqual(steps?.map((step) => step.kind), ['parse', 'bind', 'describe', 'execute', 'sync']);
  assert.equal(boundName(feed(builder, Buffer.concat([bindOf('s2'), encodeSync()]))[0]!), 's2');
  // A server runs it after all (a failed transaction): the name is the client's again.
  restoreDeallocated(steps!);
  assert.match(boundName(feed(builder, Buffer.concat([bindOf('s2'), encodeSync()]))[0]!)!, /^pa_/);
  // Not alone, not the client's (an unquoted name is folded), or a name made with SQL PREPARE: the server's.
  for (const sql of ['select 1; deallocate s2', 'deallocate S3', 'deallocate made_with_sql']) assert.equal(feed(builder, encodeQuery(sql))[0]!.local, null, sql);
  const [mixed] = feed(builder, Buffer.concat([encodeParse('', 'deallocate s2', Buffer.from([0, 0])), bindOf(''), execute, encodeParse('', 'SELECT 1', Buffer.from([0, 0])), bindOf(''), execute, encodeSync()]));
  assert.equal(mixed!.local, null);
  assert.match(boundName(feed(builder, Buffer.concat([bindOf('s2'), encodeSync()]))[0]!)!, /^pa_/, 'still held');
  assert.equal(feed(builder, encodeQuery('deallocate "S3"'))[0]!.local?.length, 2, 'quoted: the name as it is');
});

test('DEALLOCATE ALL and DISCARD ALL forget every named statement of the client, and mark where the server’s go; DISCARD PLANS, or DISCARD ALL among other statements, do not', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (name: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`\0${name}\0\0\0\0\0\0\0`));
  const held = (name: string): boolean => (feed(builder, Buffer.concat([bindOf(name), encodeSync()]))[0]!.items[0] as Extract<Item, { kind: 'bind' }>).source !== null;
  const prepare = (): void => void feed(builder, Buffer.concat([encodeParse('s1', 'SELECT 1', Buffer.from([0, 0])), encodeParse('', 'SELECT 2', Buffer.from([0, 0])), encodeSync()]));
  for (const sql of ['discard plans', 'select 1; discard all']) {
    prepare();
    const [request] = feed(builder, encodeQuery(sql));
    assert.equal(request!.items.some(dropsServerStatements), false, sql);
    assert.equal(held('s1'), true, sql);
    feed(builder, Buffer.concat([encodeTarget(FrontendType.Close, 'S', 's1'), encodeSync()]));
  }
  for (const sql of ['deallocate all', 'DISCARD ALL', 'select 1; deallocate all']) {
    prepare();
    const [request] = feed(builder, encodeQuery(sql));
    assert.equal(dropsServerStatements(request!.items[0]!), true, sql);
    assert.equal(held('s1'), false, sql);
  }
  // Extended: at its Execute, where the server's go; the unnamed statement stays (here the DEALLOCATE ALL itself).
  prepare();
  const [extended] = feed(builder, Buffer.concat([encodeParse('', 'deallocate all', Buffer.from([0, 0])), bindOf(''), execute, encodeParse('s2', 'SELECT 3', Buffer.from([0, 0])), encodeSync()]));
  assert.deepEqual(extended!.items.map(dropsServerStatements), [false, false, true, false, false]);
  assert.equal(held('s1'), false);
  assert.equal(held('s2'), true, 'parsed after it');
  assert.equal((feed(builder, Buffer.concat([unnamedBind, encodeSync()]))[0]!.items[0] as Extract<Item, { kind: 'bind' }>).serverName, null, 'the unnamed statement stays');
});

test('what names a statement a drop forgot, once the drop’s exchange ended, waits for its answer: nothing of it is taken', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (name: string): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`\0${name}\0\0\0\0\0\0\0`));
  const parseOf = (name: string): Buffer => encodeParse(name, 'SELECT 1', Buffer.from([0, 0]));
  const add = (message: Buffer) => builder.add(message[0]!, message.subarray(5));
  feed(builder, Buffer.concat([parseOf('s1'), parseOf('s2'), encodeSync()]));
  // In the exchange of the drop: a refused drop makes the server skip the rest of it, so nothing waits.
  const [extended] = feed(builder, Buffer.concat([encodeParse('', 'deallocate all', Buffer.from([0, 0])), unnamedBind, execute, bindOf('s1'), execute, encodeSync()]));
  assert.equal((extended!.items[3] as Extract<Item, { kind: 'bind' }>).source, null, 'forgotten at once');
  builder.dropsAnswered();
  feed(builder, Buffer.concat([parseOf('s1'), parseOf('s2'), encodeSync()]));
  const [drop] = feed(builder, encodeQuery('deallocate all'));
  for (const message of [bindOf('s1'), parseOf('s1'), encodeTarget(FrontendType.Describe, 'S', 's2'), encodeTarget(FrontendType.Close, 'S', 's2'), encodeQuery('DEALLOCATE s1')]) {
    assert.equal(add(message), 'wait', `type ${String.fromCharCode(message[0]!)}`);
    assert.equal(builder.pending, false, 'nothing of it was taken');
  }
  // Names the drop did not forget go on: the unnamed statement, one never prepared, a portal.
  assert.notEqual(add(encodeQuery('DEALLOCATE never')), 'wait');
  for (const message of [unnamedBind, bindOf('never'), parseOf('s3'), encodeTarget(FrontendType.Describe, 'P', 's1')]) assert.equal(add(message), null);
  const taken = add(encodeSync());
  assert.ok(taken !== null && taken !== 'wait' && taken !== 'terminate');
  assert.equal(taken.items.length, 5, 'all four, and the Sync');
  // Refused: the names come back, and naming them waits for nothing.
  drop!.items.find(dropsServerStatements)!.entry.drop.undo();
  assert.equal(add(bindOf('s1')), null);
  const kept = add(encodeSync());
  assert.ok(kept !== null && kept !== 'wait' && kept !== 'terminate');
  assert.notEqual((kept.items[0] as Extract<Item, { kind: 'bind' }>).source, null, 'bound to the statement the client holds again');
  // Answered, here as run: the names are gone for good.
  const [again] = feed(builder, encodeQuery('discard all'));
  again!.items.find(dropsServerStatements)!.entry.drop.ran = true;
  assert.equal(add(bindOf('s2')), 'wait');
  builder.dropsAnswered();
  assert.equal(add(bindOf('s2')), null);
  const gone = add(encodeSync());
  assert.ok(gone !== null && gone !== 'wait' && gone !== 'terminate');
  assert.equal((gone.items[0] as Extract<Item, { kind: 'bind' }>).source, null, 'sent as the name it is: the server answers 26000');
});

test('a Bind relies on the client’s description of its statement unless a Describe of its portal follows in the request', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const bindOf = (statement: string, portal = ''): Buffer => frameMessage(FrontendType.Bind, Buffer.from(`${portal}\0${statement}\0\0\0\0\0\0\0`, 'latin1'));
  const describePortal = (portal: string): Buffer => encodeTarget(FrontendType.Describe, 'P', portal);
  const relies = (request: Request): boolean[] => request.items.flatMap((i) => (i.kind === 'bind' ? [i.relies] : []));
  feed(builder, Buffer.concat([encodeParse('s1', 'SELECT $1', Buffer.from([0, 0])), encodeParse('', 'SELECT 2', Buffer.from([0, 0])), encodeSync()]));
  // postgres.js: Bind, Execute, Sync. pg and libpq: Bind, Describe P, Execute, Sync.
  const [plain, described] = feed(builder, Buffer.concat([bindOf('s1'), execute, encodeSync(), bindOf('s1'), describePortal(''), execute, encodeSync()]));
  assert.deepEqual([relies(plain!), relies(described!)], [[true], [false]]);
  // The Describe counts for the last Bind of its portal only; a named portal is told apart from the unnamed one.
  const [two] = feed(builder, Buffer.concat([bindOf('s1'), execute, bindOf('s1'), describePortal(''), execute, bindOf('s1', 'c1'), describePortal(''), bindOf('s1', 'c2'), describePortal('c2'), encodeSync()]));
  assert.deepEqual(relies(two!), [true, false, true, false]);
  // The unnamed statement, and a name the client never prepared, are parsed (or refused) on the spot: nothing relies.
  const [unnamed] = feed(builder, Buffer.concat([bindOf(''), execute, bindOf('made_with_sql_prepare'), execute, encodeSync()]));
  assert.deepEqual(relies(unnamed!), [false, false]);
});

test('a Describe of a portal bound from a statement whose shape is not noted yet carries that statement in its plan entry; after, the shared entry', () => {
  const builder = new RequestBuilder(new SessionEffectsCache());
  const [prepared] = feed(builder, Buffer.concat([encodeParse('s1', 'SELECT $1', Buffer.from([0, 0])), encodeSync()]));
  const statement = (prepared!.items[0] as Extract<Item, { kind: 'parse' }>).statement;
  const bindS1 = frameMessage(FrontendType.Bind, Buffer.from('\0s1\0\0\0\0\0\0\0', 'latin1'));
  const entryOf = (request: Request): unknown => (request.items[1] as Extract<Item, { kind: 'raw' }>).entry;
  const [first] = feed(builder, Buffer.concat([bindS1, encodeTarget(FrontendType.Describe, 'P', ''), execute, encodeSync()]));
  assert.deepEqual(entryOf(first!), { kind: 'describe-portal', shows: statement });
  assert.equal(first!.retryable, true, 'it describes its portal again: a cached-plan error is retried');
  statement.shape = 'noted';
  const [later] = feed(builder, Buffer.concat([bindS1, encodeTarget(FrontendType.Describe, 'P', ''), execute, encodeSync()]));
  assert.ok(Object.isFrozen(entryOf(later!)), 'the shared entry: nothing made per request');
  assert.equal(later!.retryable, true);
});

test('pool.cacheUnnamedStatements: a Describe of a portal of the unnamed statement carries no statement to note the shape of (never checked)', () => {
  const builder = new RequestBuilder(new SessionEffectsCache(), undefined, { cacheUnnamed: true });
  const describePortal = encodeTarget(FrontendType.Describe, 'P', '');
  for (const text of ['SELECT 1', 'SELECT 2']) {
    const [request] = feed(builder, Buffer.concat([encodeParse('', text, Buffer.from([0, 0])), unnamedBind, describePortal, execute, encodeSync()]));
    const describe = request!.items.find((i) => i.kind === 'raw' && i.type === FrontendType.Describe) as Extract<Item, { kind: 'raw' }>;
    assert.ok(request!.items.some((i) => i.kind === 'bind' && i.source !== null), `${text}: the Bind is of the shared unnamed statement`);
    assert.deepEqual(describe.entry, { kind: 'describe-portal' }, `${text}: the shared entry, no shape to read`);
  }
});
