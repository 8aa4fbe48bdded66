// Transaction pooling under contention, with real clients: dozens of postgres.js, pg and raw
// protocol clients on a pool of 3, so that nearly every answer is finished while other clients
// wait for a server. The ambassador then hands freed servers over and writes finished answers
// in the event loop's check phase (pooler.ts HandOffs, txn-forwarder.ts payOwed), and an error
// the session says itself (57P01 at shutdown) must go out behind the answer it owes. What can
// go wrong there is the worst a pooler can do: an answer reaching the wrong client, arriving
// twice, out of order, or not at all. So every answer here carries its client's id and a
// per-client sequence number; errors are checked for their SQLSTATE and for skipping exactly
// what Postgres skips; raw clients compare every message; rows written in transactions are
// compared with the primary's table afterwards.
//
// Scenarios: a seeded mix of pipelines, errors, transactions and simple queries (with
// pool.cacheUnnamedStatements off and on); the same load while other clients vanish mid-request
// (the pool must end up clean); a graceful shutdown in the middle of a load of inserts (every
// committed insert was acknowledged to its client, and nothing follows the 57P01). Last, the
// smallest form of a bug the cacheUnnamedStatements load found: a ParseComplete the ambassador
// answers itself, for a request pipelined behind another, arrives late or not at all.
//
// The ambassadors run as child processes (the production build), so this process only carries
// the clients. The randomness is seeded: PA_CONTENTION_SEED replays a run's mix.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { CLIENT_PASSWORD, SpawnedAmbassadors, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { directConfig, dropTestDatabase, maxServersDuring, prepareTestDatabase, serverBackends, withClient, type ServerBackend } from '../support/pooling.ts';
import { bind, clientRandoms, codeOf, DESCRIBE_PORTAL, describeError, EXECUTE, Findings, FLUSH, NO_TYPES, summary, within } from '../support/battery.ts';
import { loginScram, type RawClient } from '../support/raw-client.ts';
import { getTopology, type Topology } from '../support/topology.ts';
import { encodeParse, encodeQuery, encodeSync } from '../../src/protocol/frontend.ts';

const DB = 'pa_txn_contention';
const POOL_SIZE = 3;
const SEED = Number(process.env.PA_CONTENTION_SEED ?? 20_251_125);
const clientRandom = clientRandoms(SEED);
/** application_name of this file's own direct connections, so server counts leave them out. */
const DIRECT_APP = 'pa-contention-direct';
/** How long a round of a client may wait for all its answers before they count as lost. */
const ROUND_DEADLINE_MS = 20_000;
/** A backstop: a test stuck past this fails (then after() stops the ambassadors, which ends its clients). */
const TEST_TIMEOUT_MS = 180_000;
/** Errors that say the session ended: Postgres's 57P01, and the drivers' words for a closed connection. */
const SESSION_ENDED = /^(57P01|CONNECTION_CLOSED|CONNECTION_ENDED|CONNECTION_DESTROYED|ECONNREFUSED|ECONNRESET|EPIPE)$|Connection terminated|not queryable/;

let topology: Topology;
let admin: pg.Client;
/** The ambassador of the first two tests; the others start their own. */
let shared: SpawnedAmbassador;
const spawned = new SpawnedAmbassadors();

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  await direct('create table pa_marks (run text not null, client int not null, seq int not null, primary key (run, client, seq))');
  shared = await startAmbassador();
});

after(async () => {
  await spawned.stopAll();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

async function startAmbassador(pool: Record<string, unknown> = {}): Promise<SpawnedAmbassador> {
  return spawned.start(topology, {
    listen: { maxClientConnections: 1000, loginTimeout: '30s' },
    pool: { mode: 'transaction', size: POOL_SIZE, acquireTimeout: '30s', ...pool },
    // Far beyond what a drain takes here: the shutdown test asserts it was never reached.
    shutdown: { timeout: '30s' },
    logging: { level: 'info' },
  });
}

function direct<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<pg.QueryResult<T>> {
  return withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query<T>(sql, values));
}

/** The server connections in DB, but this file's direct ones and those in `except`. */
async function servers(except: ReadonlySet<number> = new Set()): Promise<ServerBackend[]> {
  return (await serverBackends(admin, DB)).filter((b) => b.application_name !== DIRECT_APP && !except.has(b.pid));
}

/** The (client, seq) pairs committed in pa_marks under `run`, as 'client:seq', sorted. */
async function committedMarks(run: string): Promise<string[]> {
  const { rows } = await direct<{ client: number; seq: number }>('select client, seq from pa_marks where run = $1 order by client, seq', [run]);
  return rows.map((r) => `${r.client}:${r.seq}`);
}

const tagOf = (id: number, seq: number): string => `${id}:${seq}`;

// ---- raw protocol ------------------------------------------------------------------------------

const VALUE_TEXT = 'select $1::int as me, $2::text as tag';

/** Parse (unnamed), Bind, Describe, Execute, Sync: a row of (id, tag) in extended protocol. */
function extendedValue(id: number, seq: number): Buffer[] {
  return [encodeParse('', VALUE_TEXT, NO_TYPES), bind('', [String(id), tagOf(id, seq)]), DESCRIBE_PORTAL, EXECUTE, encodeSync()];
}

/** Reads the answer of one exchange: `expected.length` messages; the first that differs ends it. */
async function readAnswer(raw: RawClient, expected: readonly string[]): Promise<string[]> {
  const got: string[] = [];
  for (const want of expected) {
    const message = summary(await raw.nextMessage(ROUND_DEADLINE_MS));
    got.push(message);
    if (message !== want) break;
  }
  return got;
}

// ---- the mixed load ----------------------------------------------------------------------------

/**
 * One piece of a client's work, numbered per client (`seq`). value / simple: a row carrying the
 * client's id and tag `${id}:${seq}` (extended / simple protocol); div-zero, bad-cast: an error
 * (22012, 22P02) in the middle of a pipeline; simple-error: three statements in one simple
 * query, the second failing; commit / rollback: a transaction that inserts (run, id, seq) into
 * pa_marks, then commits, or fails with 22012 and rolls back.
 */
type UnitKind = 'value' | 'simple' | 'div-zero' | 'bad-cast' | 'simple-error' | 'commit' | 'rollback';
interface Unit {
  kind: UnitKind;
  seq: number;
}

const UNIT_WEIGHTS: ReadonlyArray<readonly [UnitKind, number]> = [
  ['value', 40],
  ['simple', 14],
  ['div-zero', 10],
  ['bad-cast', 8],
  ['simple-error', 7],
  ['commit', 13],
  ['rollback', 8],
];
const WEIGHT_TOTAL = UNIT_WEIGHTS.reduce((sum, [, w]) => sum + w, 0);

function pickKind(x: number): UnitKind {
  let at = x * WEIGHT_TOTAL;
  for (const [kind, weight] of UNIT_WEIGHTS) {
    if (at < weight) return kind;
    at -= weight;
  }
  return 'value';
}

/** Rounds of 1-6 units, then a lone value: an answer duplicated or left over shows up there. */
function planRounds(random: () => number, rounds: number): Unit[][] {
  let seq = 0;
  const plan: Unit[][] = [];
  for (let r = 0; r < rounds; r++) {
    const size = 1 + Math.floor(random() * 6);
    plan.push(Array.from({ length: size }, () => ({ kind: pickKind(random()), seq: ++seq })));
  }
  plan.push([{ kind: 'value', seq: ++seq }]);
  return plan;
}

interface LoadContext {
  run: string;
  findings: Findings;
  /** Units whose outcome was found right. */
  right: number;
}

/** A client of the mixed load: runs one round (pipelined where its driver can) and checks every outcome. */
interface LoadClient {
  readonly who: string;
  round(units: readonly Unit[]): Promise<void>;
}

/**
 * How to close each client made so far: registered as soon as it exists, so that clients left
 * waiting for an answer (a test that failed) are closed too, and none keeps the file running.
 */
type Closers = Array<() => Promise<unknown>>;

/** Closes every client registered, each given a moment (the ambassador's stop ends the rest). */
async function closeAll(closers: Closers): Promise<void> {
  await Promise.all(closers.splice(0).map((close) => within(5_000, 'closing a client', close()).catch(() => {})));
}

/** Checks a unit's outcome: `want` (deep-equal), or for the failing kinds the error with its SQLSTATE. */
function checkOutcome(ctx: LoadContext, who: string, unit: Unit, got: PromiseSettledResult<unknown>, want: unknown): void {
  const code = unit.kind === 'bad-cast' ? '22P02' : unit.kind === 'div-zero' || unit.kind === 'simple-error' || unit.kind === 'rollback' ? '22012' : null;
  const name = `${unit.kind} #${unit.seq}`;
  if (code === null) {
    if (got.status === 'rejected') return ctx.findings.add(who, `${name} failed: ${describeError(got.reason)}`);
    try {
      assert.deepEqual(got.value, want);
    } catch {
      return ctx.findings.add(who, `${name}: got ${JSON.stringify(got.value)}, expected ${JSON.stringify(want)}`);
    }
  } else if (got.status === 'fulfilled') {
    return ctx.findings.add(who, `${name}: expected error ${code}, got ${JSON.stringify(got.value)}`);
  } else if (codeOf(got.reason) !== code) {
    return ctx.findings.add(who, `${name}: expected error ${code}, got ${describeError(got.reason)}`);
  }
  ctx.right++;
}

interface TxnRow {
  client?: number;
  seq?: number;
  me?: number;
  tag?: string;
  pid: number;
  xid: string;
}

/** Inside a transaction: both answers are this unit's, from one server and one transaction. */
function checkTransactionRows(ctx: LoadContext, who: string, id: number, unit: Unit, inserted: readonly TxnRow[], selected: readonly TxnRow[]): void {
  const [ins, sel] = [inserted[0], selected[0]];
  const name = `${unit.kind} #${unit.seq}`;
  if (inserted.length !== 1 || ins?.client !== id || ins.seq !== unit.seq) ctx.findings.add(who, `${name}: the insert answered ${JSON.stringify(inserted)}`);
  else if (selected.length !== 1 || sel?.me !== id || sel.tag !== tagOf(id, unit.seq)) ctx.findings.add(who, `${name}: the select answered ${JSON.stringify(selected)}`);
  else if (ins.pid !== sel.pid || ins.xid !== sel.xid) ctx.findings.add(who, `${name}: one transaction, two servers or transactions: ${JSON.stringify([ins, sel])}`);
}

const INSERT_RETURNING = 'insert into pa_marks values ($1, $2, $3) returning client, seq, pg_backend_pid() as pid, txid_current()::text as xid';
const SELECT_IN_TXN = 'select $1::int as me, $2::text as tag, pg_backend_pid() as pid, txid_current()::text as xid';

/** postgres.js, one connection: a round's units are issued at once, so they go pipelined. */
async function postgresJsClient(port: number, id: number, ctx: LoadContext, prepare: boolean, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (postgres.js, prepare: ${prepare})`;
  const sql = postgres({ host: '127.0.0.1', port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, prepare, idle_timeout: 0, connect_timeout: 30, fetch_types: false, onnotice: () => {} });
  closers.push(() => sql.end({ timeout: 1 }));
  const rows = async (q: PromiseLike<readonly unknown[]>): Promise<unknown[]> => [...(await q)];
  const transaction = (unit: Unit): Promise<unknown> =>
    sql.begin(async (tx) => {
      const [inserted, selected] = await Promise.all([
        rows(tx.unsafe(INSERT_RETURNING, [ctx.run, id, unit.seq])),
        rows(tx.unsafe(SELECT_IN_TXN, [id, tagOf(id, unit.seq)])),
      ]);
      checkTransactionRows(ctx, who, id, unit, inserted as TxnRow[], selected as TxnRow[]);
      if (unit.kind === 'rollback') await tx`select ${id}::int / ${0}::int as q`;
      return 'committed';
    });
  const issue = (unit: Unit): Promise<unknown> => {
    const tag = tagOf(id, unit.seq);
    switch (unit.kind) {
      case 'value':
        return rows(sql`select ${id}::int as me, ${tag}::text as tag`);
      case 'simple':
        return rows(sql.unsafe(`select ${id} as me, '${tag}' as tag`).simple());
      case 'div-zero':
        return rows(sql`select ${id}::int / ${0}::int as q`);
      case 'bad-cast':
        return rows(sql`select ${`x${tag}`}::text::int as me`);
      case 'simple-error':
        return rows(sql.unsafe(`select ${id} as me; select 1 / (${id} - ${id}); select 3`).simple());
      case 'commit':
      case 'rollback':
        return transaction(unit);
    }
  };
  await sql`select 1 as ready`;
  return {
    who,
    round: async (units) => {
      const settled = await within(ROUND_DEADLINE_MS, `${who}, units #${units.map((u) => u.seq).join(',')}`, Promise.allSettled(units.map(issue)));
      units.forEach((unit, i) => checkOutcome(ctx, who, unit, settled[i]!, unit.kind === 'commit' ? 'committed' : [{ me: id, tag: tagOf(id, unit.seq) }]));
    },
  };
}

/**
 * pg: no pipelining, one unit after the other. Values alternate between the unnamed statement
 * and the named statement 'me', whose text (three columns) differs from the raw clients' 'me'.
 */
async function pgClient(port: number, id: number, ctx: LoadContext, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (pg)`;
  const c = new pg.Client(viaAmbassador(port, { database: DB, connectionTimeoutMillis: 30_000 }) as pg.ClientConfig);
  c.on('error', (err) => ctx.findings.add(who, `connection error: ${describeError(err)}`));
  closers.push(() => c.end());
  await c.connect();
  const named = (unit: Unit): boolean => unit.kind === 'value' && unit.seq % 2 === 1;
  const transaction = async (unit: Unit): Promise<unknown> => {
    await c.query('begin');
    try {
      const inserted = await c.query<TxnRow>(INSERT_RETURNING, [ctx.run, id, unit.seq]);
      const selected = await c.query<TxnRow>(SELECT_IN_TXN, [id, tagOf(id, unit.seq)]);
      checkTransactionRows(ctx, who, id, unit, inserted.rows, selected.rows);
      if (unit.kind === 'rollback') await c.query('select $1::int / $2::int as q', [id, 0]);
      return (await c.query('commit')).command;
    } catch (err) {
      const rolledBack = await c.query('rollback');
      if (rolledBack.command !== 'ROLLBACK') ctx.findings.add(who, `${unit.kind} #${unit.seq}: rollback answered ${rolledBack.command}`);
      throw err;
    }
  };
  const issue = async (unit: Unit): Promise<unknown> => {
    const tag = tagOf(id, unit.seq);
    switch (unit.kind) {
      case 'value':
        if (named(unit)) return (await c.query({ name: 'me', text: `${VALUE_TEXT}, 'pg'::text as via`, values: [id, tag] })).rows;
        return (await c.query(VALUE_TEXT, [id, tag])).rows;
      case 'simple':
        return (await c.query(`select ${id} as me, '${tag}' as tag`)).rows;
      case 'div-zero':
        return c.query('select $1::int / $2::int as q', [id, 0]);
      case 'bad-cast':
        return c.query('select $1::int as me', [`x${tag}`]);
      case 'simple-error':
        return c.query(`select ${id} as me; select 1 / (${id} - ${id}); select 3`);
      case 'commit':
      case 'rollback':
        return transaction(unit);
    }
  };
  return {
    who,
    round: async (units) => {
      const settled: PromiseSettledResult<unknown>[] = [];
      for (const unit of units) {
        settled.push(await within(ROUND_DEADLINE_MS, `${who}, unit #${unit.seq}`, issue(unit).then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason }))));
      }
      units.forEach((unit, i) => {
        const row = named(unit) ? { me: id, tag: tagOf(id, unit.seq), via: 'pg' } : { me: id, tag: tagOf(id, unit.seq) };
        checkOutcome(ctx, who, unit, settled[i]!, unit.kind === 'commit' ? 'COMMIT' : [row]);
      });
    },
  };
}

/** A raw unit: the messages it sends and every message it must get back. */
function rawUnit(id: number, run: string, unit: Unit): { send: Buffer[]; expect: string[] } {
  const tag = tagOf(id, unit.seq);
  const row = `D(${id}|${tag})`;
  const extended = ['1', '2', 'T(me,tag)', row, 'C(SELECT 1)'];
  switch (unit.kind) {
    case 'value':
      // Odd: the named statement 'me' prepared at login (its Parse answered then).
      if (unit.seq % 2 === 1) return { send: [bind('me', [String(id), tag]), DESCRIBE_PORTAL, EXECUTE, encodeSync()], expect: ['2', 'T(me,tag)', row, 'C(SELECT 1)', 'Z(I)'] };
      return { send: extendedValue(id, unit.seq), expect: [...extended, 'Z(I)'] };
    case 'simple':
      return { send: [encodeQuery(`select ${id} as me, '${tag}' as tag`)], expect: ['T(me,tag)', row, 'C(SELECT 1)', 'Z(I)'] };
    case 'div-zero':
      return { send: [encodeQuery(`select 1 / (${id} - ${id}) as q`)], expect: ['E(ERROR 22012)', 'Z(I)'] };
    case 'bad-cast':
      // The Bind fails; Postgres skips the rest up to Sync (the second statement never runs).
      return {
        send: [encodeParse('', 'select $1::int as me', NO_TYPES), bind('', [`x${tag}`]), EXECUTE, ...extendedValue(id, unit.seq)],
        expect: ['1', 'E(ERROR 22P02)', 'Z(I)'],
      };
    case 'simple-error':
      return { send: [encodeQuery(`select ${id} as me, '${tag}' as tag; select 1 / (${id} - ${id}); select 3`)], expect: ['T(me,tag)', row, 'C(SELECT 1)', 'E(ERROR 22012)', 'Z(I)'] };
    case 'commit':
    case 'rollback': {
      const send = [encodeQuery('begin'), encodeQuery(`insert into pa_marks values ('${run}', ${id}, ${unit.seq}) returning client, seq`), ...extendedValue(id, unit.seq)];
      const expect = ['C(BEGIN)', 'Z(T)', 'T(client,seq)', `D(${id}|${unit.seq})`, 'C(INSERT 0 1)', 'Z(T)', ...extended, 'Z(T)'];
      if (unit.kind === 'rollback') {
        // The failed statement, then one refused as the transaction is aborted, then COMMIT says
        // ROLLBACK. (A simple query: an extended one's Parse of a text its server holds is answered
        // by the ambassador, with pool.cacheUnnamedStatements, and only the Bind is refused.)
        send.push(encodeQuery(`select 1 / (${id} - ${id}) as q`), encodeQuery(`select ${id} as me`));
        expect.push('E(ERROR 22012)', 'Z(E)', 'E(ERROR 25P02)', 'Z(E)');
      }
      send.push(encodeQuery('commit'));
      expect.push(unit.kind === 'rollback' ? 'C(ROLLBACK)' : 'C(COMMIT)', 'Z(I)');
      return { send, expect };
    }
  }
}

/** A raw protocol client: a whole round goes in one write; every message that comes back is compared. */
async function rawClient(port: number, id: number, ctx: LoadContext, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (raw)`;
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  closers.push(async () => raw.destroy());
  raw.write([encodeParse('me', VALUE_TEXT, NO_TYPES), encodeSync()]);
  const prepared = await readAnswer(raw, ['1', 'Z(I)']);
  if (prepared.join(' ') !== '1 Z(I)') ctx.findings.add(who, `Parse of 'me' answered ${prepared.join(' ')}`);
  return {
    who,
    round: async (units) => {
      const exchanges = units.map((unit) => ({ unit, ...rawUnit(id, ctx.run, unit) }));
      raw.write(exchanges.flatMap((e) => e.send));
      for (const { unit, expect } of exchanges) {
        const got = await readAnswer(raw, expect);
        if (got.join(' ') !== expect.join(' ')) {
          // The stream is out of step from here: the client stops.
          throw new Error(`${unit.kind} #${unit.seq}: got [${got.join(' ')}], expected [${expect.join(' ')}]`);
        }
        ctx.right++;
      }
    },
  };
}

interface LoadMix {
  postgresJs: number;
  pg: number;
  raw: number;
  rounds: number;
}

interface LoadResult {
  ctx: LoadContext;
  units: number;
  /** The transactions that committed, as 'client:seq' (sorted as committedMarks sorts them). */
  commits: string[];
}

/**
 * Connects every client first, then runs them all at once, each through its seeded rounds.
 * A client whose round failed outright (no answer in time, a raw stream out of step) stops.
 */
async function runLoad(port: number, run: string, mix: LoadMix): Promise<LoadResult> {
  const ctx: LoadContext = { run, findings: new Findings(`seed ${SEED} (PA_CONTENTION_SEED)`), right: 0 };
  const total = mix.postgresJs + mix.pg + mix.raw;
  const closers: Closers = [];
  let units = 0;
  const commits: Array<[number, number]> = [];
  try {
    const connect = (id: number): Promise<LoadClient> => {
      if (id < mix.postgresJs) return postgresJsClient(port, id, ctx, id % 2 === 0, closers);
      if (id < mix.postgresJs + mix.pg) return pgClient(port, id, ctx, closers);
      return rawClient(port, id, ctx, closers);
    };
    const connecting = Promise.all(
      Array.from({ length: total }, (_, id) =>
        connect(id).catch((err: unknown) => {
          throw new Error(`seed ${SEED}: client ${id} could not connect and prepare: ${describeError(err)}`);
        }),
      ),
    );
    const clients = await within(ROUND_DEADLINE_MS, `seed ${SEED}: connecting ${total} clients`, connecting);
    await Promise.all(
      clients.map(async (client, id) => {
        for (const round of planRounds(clientRandom(run, id), mix.rounds)) {
          units += round.length;
          for (const unit of round) if (unit.kind === 'commit') commits.push([id, unit.seq]);
          try {
            await client.round(round);
          } catch (err) {
            ctx.findings.add(client.who, `round #${round.map((u) => u.seq).join(',')} gave up: ${(err as Error).message}`);
            return;
          }
        }
      }),
    );
  } finally {
    await closeAll(closers);
  }
  commits.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return { ctx, units, commits: commits.map(([c, s]) => `${c}:${s}`) };
}

/** The load's verdict: every outcome right, every commit (and nothing else) in the table. */
async function assertLoadRight(result: LoadResult): Promise<void> {
  const { ctx, units, commits } = result;
  assert.equal(ctx.findings.count, 0, ctx.findings.report());
  assert.equal(ctx.right, units, `seed ${SEED}: ${units} units, ${ctx.right} outcomes found right`);
  assert.deepEqual(await committedMarks(ctx.run), commits, `seed ${SEED}: pa_marks of run ${ctx.run} differ from the transactions that committed`);
}

/** Waits for a server longer than 1 ms so far (the ambassador's histogram): proof the load was contended. */
async function longWaits(a: SpawnedAmbassador): Promise<number> {
  const address = /"admin":"[^"]*:(\d+)"/.exec(a.output());
  assert.ok(address, `no admin address in the ambassador's output: ${a.output().slice(0, 2000)}`);
  const text = await (await fetch(`http://127.0.0.1:${address[1]}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const value = (pattern: RegExp): number => {
    const match = pattern.exec(text);
    assert.ok(match, `${pattern} not in /metrics`);
    return Number(match[1]);
  };
  return value(/^pg_ambassador_pool_wait_seconds_count(?:\{\})? (\S+)$/m) - value(/^pg_ambassador_pool_wait_seconds_bucket\{le="0\.001"\} (\S+)$/m);
}

/** Runs `work`; returns its result and how many waits for a server over 1 ms it caused. */
async function countingWaits<T>(a: SpawnedAmbassador, work: () => Promise<T>): Promise<{ result: T; waits: number }> {
  const before = await longWaits(a);
  const result = await work();
  return { result, waits: (await longWaits(a)) - before };
}

/** The premise of a load test: it kept clients waiting for the pool (checked after its verdict). */
function assertContended(waits: number): void {
  assert.ok(waits >= MIN_LONG_WAITS, `only ${waits} waits for a server over 1 ms: the load was not contended enough to test anything`);
}

const MIX: LoadMix = { postgresJs: 30, pg: 20, raw: 30, rounds: 12 };
const TOTAL_CLIENTS = MIX.postgresJs + MIX.pg + MIX.raw;
/** Of the thousands of transactions, this many waiting is contention by any measure (far more do). */
const MIN_LONG_WAITS = 200;

// ---- clients that vanish -----------------------------------------------------------------------

/**
 * How a victim leaves: with its requests still queued for a server; with the first answered and
 * the rest queued or running; idle inside a transaction; with a statement running inside one;
 * in the middle of a large result; in the middle of a message; inside an extended-protocol
 * exchange left open without Sync. Inserts are tagged run 'victims': none may be committed.
 */
const VICTIM_KINDS = ['queued', 'after-first-answer', 'idle-in-transaction', 'running-in-transaction', 'mid-result', 'half-message', 'unsynced'] as const;
type VictimKind = (typeof VICTIM_KINDS)[number];

async function victim(port: number, id: number, kind: VictimKind): Promise<void> {
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  try {
    const sleepers = [1, 2, 3].map((n) => encodeQuery(`select pg_sleep(0.002), ${id} as victim, ${n} as n`));
    switch (kind) {
      case 'queued':
        raw.write(sleepers);
        return;
      case 'after-first-answer':
        raw.write(sleepers);
        await raw.readUntil('Z', ROUND_DEADLINE_MS);
        return;
      case 'idle-in-transaction':
      case 'running-in-transaction': {
        raw.write(encodeQuery(`begin; insert into pa_marks values ('victims', ${id}, 0)`));
        const answer = (await raw.readUntil('Z', ROUND_DEADLINE_MS)).map(summary);
        assert.deepEqual(answer, ['C(BEGIN)', 'C(INSERT 0 1)', 'Z(T)'], `victim ${id}`);
        if (kind === 'running-in-transaction') raw.write(encodeQuery('select pg_sleep(0.05)'));
        return;
      }
      case 'mid-result':
        raw.write(encodeQuery(`select g, repeat('x', 100) from generate_series(1, 50000) g`));
        await raw.readUntil('D', ROUND_DEADLINE_MS);
        return;
      case 'half-message':
        raw.write(encodeQuery(`select ${id} as victim`).subarray(0, 7));
        return;
      case 'unsynced':
        raw.write([encodeParse('', VALUE_TEXT, NO_TYPES), bind('', [String(id), 'victim']), EXECUTE, FLUSH]);
        await raw.readUntil('C', ROUND_DEADLINE_MS);
        return;
    }
  } finally {
    raw.destroy();
  }
}

/** Victims, `loops` at a time, one kind after the other, until `done()`; returns the kinds run. */
async function victims(port: number, loops: number, done: () => boolean, findings: Findings): Promise<VictimKind[]> {
  const ran: VictimKind[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (!done()) {
        const id = 10_000 + next;
        const kind = VICTIM_KINDS[next++ % VICTIM_KINDS.length]!;
        try {
          await victim(port, id, kind);
          ran.push(kind);
        } catch (err) {
          findings.add(`victim ${id} (${kind})`, (err as Error).message);
        }
      }
    }),
  );
  return ran;
}

/** Polls until the ambassador's servers in DB are at most the pool's size and all idle (not in a transaction, not running). */
async function poolSettles(timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await servers();
    if (seen.length <= POOL_SIZE && seen.every((b) => b.state === 'idle')) return;
    assert.ok(Date.now() < deadline, `the servers in ${DB} did not settle within ${timeoutMs} ms: ${JSON.stringify(seen.map((b) => [b.pid, b.state, b.query.slice(0, 60)]))}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---- graceful shutdown under load --------------------------------------------------------------

interface ShutdownClient {
  who: string;
  id: number;
  /** Inserts acknowledged, in the order acknowledged. */
  acknowledged: number[];
  /** How its session ended (an error code or the drivers' words), once it has. */
  ended: string | null;
}

interface ShutdownLoad {
  clients: ShutdownClient[];
  findings: Findings;
  acknowledged(): number;
  /** Resolves when every client's session has ended (or its deadline passed). */
  finished: Promise<void>;
}

const insertMark = (run: string, id: number, seq: number): string => `insert into pa_marks values ('${run}', ${id}, ${seq}) returning client, seq`;

/**
 * One client inserting (run, id, seq) in pipelines of 1-4 until its session ends. Outcomes of a
 * pipeline: acknowledged inserts with the client's own (client, seq), then session-ended errors
 * only; an insert acknowledged after one that failed, or any other error, is a finding.
 */
function settlePipeline(client: ShutdownClient, findings: Findings, seqs: readonly number[], settled: ReadonlyArray<PromiseSettledResult<unknown>>): void {
  seqs.forEach((seq, i) => {
    const got = settled[i]!;
    if (got.status === 'fulfilled') {
      const want = [{ client: client.id, seq }];
      try {
        assert.deepEqual(got.value, want);
      } catch {
        return findings.add(client.who, `insert #${seq} answered ${JSON.stringify(got.value)}, expected ${JSON.stringify(want)}`);
      }
      if (client.ended !== null) return findings.add(client.who, `insert #${seq} acknowledged after the session ended (${client.ended})`);
      client.acknowledged.push(seq);
    } else {
      const code = codeOf(got.reason);
      if (!SESSION_ENDED.test(code) && !SESSION_ENDED.test((got.reason as Error).message)) return findings.add(client.who, `insert #${seq} failed: ${describeError(got.reason)}`);
      client.ended ??= code;
    }
  });
}

async function shutdownPostgresJs(port: number, client: ShutdownClient, run: string, findings: Findings, closers: Closers): Promise<() => Promise<void>> {
  const sql = postgres({ host: '127.0.0.1', port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, idle_timeout: 0, connect_timeout: 30, fetch_types: false, onnotice: () => {} });
  closers.push(() => sql.end({ timeout: 1 }));
  await sql`select 1 as ready`;
  return async () => {
    const random = clientRandom(run, client.id);
    try {
      for (let seq = 1; client.ended === null; ) {
        const seqs = Array.from({ length: 1 + Math.floor(random() * 4) }, () => seq++);
        const settled = await within(ROUND_DEADLINE_MS, client.who, Promise.allSettled(seqs.map(async (s) => [...(await sql.unsafe(insertMark(run, client.id, s)))])));
        settlePipeline(client, findings, seqs, settled);
      }
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  };
}

async function shutdownPg(port: number, client: ShutdownClient, run: string, findings: Findings, closers: Closers): Promise<() => Promise<void>> {
  const c = new pg.Client(viaAmbassador(port, { database: DB, connectionTimeoutMillis: 30_000 }) as pg.ClientConfig);
  // The 57P01 of a session that ends between queries comes as an 'error' event.
  c.on('error', (err) => {
    if (!SESSION_ENDED.test(codeOf(err)) && !SESSION_ENDED.test(err.message)) findings.add(client.who, `connection error: ${describeError(err)}`);
  });
  closers.push(() => c.end());
  await c.connect();
  return async () => {
    try {
      for (let seq = 1; client.ended === null; seq++) {
        const got = await within(ROUND_DEADLINE_MS, client.who, c.query(insertMark(run, client.id, seq)).then((r) => ({ status: 'fulfilled' as const, value: r.rows }), (reason: unknown) => ({ status: 'rejected' as const, reason })));
        settlePipeline(client, findings, [seq], [got]);
      }
    } finally {
      await c.end().catch(() => {});
    }
  };
}

/** Raw: every answer whole and its own, then exactly one FATAL 57P01, then the close, and nothing else. */
async function shutdownRaw(port: number, client: ShutdownClient, run: string, findings: Findings, closers: Closers): Promise<() => Promise<void>> {
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  closers.push(async () => raw.destroy());
  return async () => {
    const random = clientRandom(run, client.id);
    try {
      for (let seq = 1; client.ended === null; ) {
        const seqs = Array.from({ length: 1 + Math.floor(random() * 4) }, () => seq++);
        raw.write(seqs.map((s) => encodeQuery(insertMark(run, client.id, s))));
        for (const s of seqs) {
          const expect = ['T(client,seq)', `D(${client.id}|${s})`, 'C(INSERT 0 1)', 'Z(I)'];
          const first = summary(await raw.nextMessage(ROUND_DEADLINE_MS));
          if (first === 'E(FATAL 57P01)') {
            client.ended = '57P01';
            const rest = (await raw.readToClose(ROUND_DEADLINE_MS)).map(summary);
            if (rest.length > 0) findings.add(client.who, `after FATAL 57P01 came [${rest.join(' ')}]`);
            break;
          }
          const got = first === expect[0] ? [first, ...(await readAnswer(raw, expect.slice(1)))] : [first];
          if (got.join(' ') !== expect.join(' ')) throw new Error(`insert #${s}: got [${got.join(' ')}], expected [${expect.join(' ')}]`);
          client.acknowledged.push(s);
        }
      }
    } catch (err) {
      findings.add(client.who, (err as Error).message);
      client.ended ??= 'broken';
    } finally {
      raw.destroy();
    }
  };
}

/** Connects postgres.js, pg and raw clients, then starts them all inserting. */
async function startShutdownLoad(port: number, run: string, mix: { postgresJs: number; pg: number; raw: number }, closers: Closers): Promise<ShutdownLoad> {
  const findings = new Findings(`seed ${SEED} (PA_CONTENTION_SEED)`);
  const total = mix.postgresJs + mix.pg + mix.raw;
  const clients: ShutdownClient[] = [];
  const connecting = Promise.all(
    Array.from({ length: total }, (_, id) => {
      const kind = id < mix.postgresJs ? 'postgres.js' : id < mix.postgresJs + mix.pg ? 'pg' : 'raw';
      const client: ShutdownClient = { who: `client ${id} (${kind})`, id, acknowledged: [], ended: null };
      clients.push(client);
      const start = kind === 'postgres.js' ? shutdownPostgresJs : kind === 'pg' ? shutdownPg : shutdownRaw;
      return start(port, client, run, findings, closers).catch((err: unknown) => {
        throw new Error(`seed ${SEED}: ${client.who} could not connect: ${describeError(err)}`);
      });
    }),
  );
  const loops = await within(ROUND_DEADLINE_MS, `seed ${SEED}: connecting ${total} clients`, connecting);
  const finished = Promise.all(
    loops.map((loop, id) =>
      loop().catch((err: unknown) => {
        findings.add(clients[id]!.who, (err as Error).message);
        clients[id]!.ended ??= 'broken';
      }),
    ),
  ).then(() => {});
  return { clients, findings, acknowledged: () => clients.reduce((n, c) => n + c.acknowledged.length, 0), finished };
}

// ---- the tests ---------------------------------------------------------------------------------

describe(`${TOTAL_CLIENTS} clients on a pool of ${POOL_SIZE} (seed ${SEED})`, () => {
  test('a seeded mix of pipelines, errors, transactions and simple queries: every answer is the client’s own, in order, once', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { result, maxServers, busiest } = await maxServersDuring(servers, () => countingWaits(shared, () => runLoad(shared.port, 'mixed', MIX)));
    await assertLoadRight(result.result);
    assert.ok(maxServers <= POOL_SIZE, `the primary saw ${maxServers} server connections: ${busiest}`);
    assertContended(result.waits);
  });

  test('clients vanishing while queued, running, in a transaction or mid-message: the others get their own answers, and the pool ends clean', { timeout: TEST_TIMEOUT_MS }, async () => {
    const findings = new Findings(`seed ${SEED} (PA_CONTENTION_SEED)`);
    let loadDone = false;
    const load = runLoad(shared.port, 'with-victims', MIX).finally(() => (loadDone = true));
    const { result, waits } = await countingWaits(shared, () => Promise.all([load, victims(shared.port, 10, () => loadDone, findings)]));
    const [loaded, ran] = result;
    await assertLoadRight(loaded);
    assert.equal(findings.count, 0, findings.report());
    assertContended(waits);
    for (const kind of VICTIM_KINDS) assert.ok(ran.includes(kind), `no '${kind}' victim ran during the load (${ran.length} in all)`);

    // A fresh client gets its own answer; the servers end idle, at most the pool's size of them.
    const fresh = withClient(viaAmbassador(shared.port, { database: DB }) as pg.ClientConfig, (c) => c.query(VALUE_TEXT, [77, 'fresh']));
    assert.deepEqual((await within(ROUND_DEADLINE_MS, 'a fresh client after the victims', fresh)).rows, [{ me: 77, tag: 'fresh' }]);
    await poolSettles();
    assert.deepEqual(await committedMarks('victims'), [], 'a transaction of a client that vanished was committed');
    assert.equal(shared.process.exitCode, null, `the ambassador exited: ${shared.output().slice(-2000)}`);
  });

  test('with pool.cacheUnnamedStatements: the same mix, every answer the client’s own', { timeout: TEST_TIMEOUT_MS }, async () => {
    const before = new Set((await servers()).map((b) => b.pid));
    const cached = await startAmbassador({ cacheUnnamedStatements: true });
    try {
      const { result, maxServers, busiest } = await maxServersDuring(() => servers(before), () => countingWaits(cached, () => runLoad(cached.port, 'cached', MIX)));
      await assertLoadRight(result.result);
      assert.ok(maxServers <= POOL_SIZE, `the primary saw ${maxServers} server connections of this ambassador: ${busiest}`);
      assertContended(result.waits);
    } finally {
      await spawned.stop(cached);
    }
  });

  test('graceful shutdown (SIGINT) in the middle of pipelined inserts: every committed insert was acknowledged to its client, then 57P01, then nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const draining = await startAmbassador();
    const run = 'shutdown';
    const closers: Closers = [];
    let load: ShutdownLoad;
    let code: number | null;
    try {
      load = await startShutdownLoad(draining.port, run, { postgresJs: 25, pg: 15, raw: 30 }, closers);
      // Stop once the load is well under way (and contended), whatever the machine's speed.
      const deadline = Date.now() + 30_000;
      while (load.acknowledged() < 1000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      const beforeSignal = load.acknowledged();
      assert.ok(beforeSignal >= 1000, `only ${beforeSignal} inserts acknowledged in 30 s; ${load.findings.report()}`);
      assertContended(await longWaits(draining));
      code = await within(60_000, 'the ambassador to exit after SIGINT', draining.signal('SIGINT'));
      await within(ROUND_DEADLINE_MS * 2, 'the clients of the stopped ambassador', load.finished);
    } finally {
      await closeAll(closers);
      await spawned.stop(draining);
    }
    assert.equal(code, 0, `exit code after SIGINT: ${draining.output().slice(-3000)}`);
    assert.doesNotMatch(draining.output(), /shutdown timeout reached/, 'sessions were terminated, not drained: answers may be lost legitimately');
    assert.equal(load.findings.count, 0, load.findings.report());

    const committed = new Map<number, number[]>();
    for (const mark of await committedMarks(run)) {
      const [client, seq] = mark.split(':').map(Number) as [number, number];
      committed.set(client, [...(committed.get(client) ?? []), seq]);
    }
    for (const client of load.clients) {
      assert.notEqual(client.ended, null, `${client.who}: its session never ended`);
      const acknowledged = client.acknowledged;
      assert.deepEqual(acknowledged, acknowledged.map((_, i) => i + 1), `seed ${SEED}: ${client.who} acknowledged out of order or with gaps`);
      assert.deepEqual(committed.get(client.id) ?? [], acknowledged, `seed ${SEED}: ${client.who}: the inserts committed differ from those acknowledged (ended by ${client.ended})`);
    }
  });
});

// Found by the cacheUnnamedStatements load above (raw clients pipeline a Parse of a text the
// server already holds); named statements show it as well, with no contention at all.
describe('a ParseComplete the ambassador answers itself, for a request pipelined behind another', () => {
  test('comes before the server’s BindComplete, and is not lost when the Bind fails', { timeout: TEST_TIMEOUT_MS }, async () => {
    const single = await startAmbassador({ size: 1 });
    const raw = await loginScram(single.port, 'app', CLIENT_PASSWORD, { database: DB });
    const text = 'select $1::int as n';
    const run = (name: string, param: string): Buffer[] => [encodeParse(name, text, NO_TYPES), bind(name, [param]), DESCRIBE_PORTAL, EXECUTE, encodeSync()];
    const answer = async (): Promise<string> => (await raw.readUntil('Z', ROUND_DEADLINE_MS).catch((err: Error) => [{ type: `(${err.message})`, payload: Buffer.alloc(0) }])).map(summary).join(' ');
    try {
      // The one server now holds the text: the same text under other names is not parsed again there.
      raw.write(run('s1', '1'));
      assert.equal(await answer(), '1 2 T(n) D(1) C(SELECT 1) Z(I)');
      raw.write([encodeQuery('select 2 as two'), ...run('s2', '2')]);
      assert.equal(await answer(), 'T(two) D(2) C(SELECT 1) Z(I)');
      assert.equal(await answer(), '1 2 T(n) D(2) C(SELECT 1) Z(I)', 'ParseComplete, then BindComplete');
      raw.write([encodeQuery('select 3 as three'), ...run('s3', 'x')]);
      assert.equal(await answer(), 'T(three) D(3) C(SELECT 1) Z(I)');
      // Postgres skips the rest up to Sync after the failed Bind; the Parse before it was answered.
      const failed = [await raw.nextMessage(ROUND_DEADLINE_MS), await raw.nextMessage(ROUND_DEADLINE_MS)].map(summary);
      assert.deepEqual(failed, ['1', 'E(ERROR 22P02)'], 'the ParseComplete of the held statement');
    } finally {
      raw.destroy();
      await spawned.stop(single);
    }
  });
});
