// Prepared statements that churn under transaction pooling, with real clients on a pool of 3.
// The ambassador renames every client's statement to a shared server name (statements.ts),
// keeps at most 256 of them per server connection, closing the least recently used to make
// room (preparation.ts), re-creates a statement on a server that lacks it before the request
// that uses it, and answers ParseComplete itself for a Parse of a statement the server holds.
// All of that is bookkeeping of what each server holds; a mistake in it shows up as a 26000
// (a statement the ambassador believes held is not), a 42P05 (one it believes gone is still
// there), or, worst, an answer of another text. So every answer here is checked: each carries
// the number of its text and a value made of its client's id and a per-client sequence number.
//
// Scenarios, each seeded (PA_STATEMENT_CHURN_SEED replays a run):
// - eviction under contention: postgres.js (prepare on), pg (named queries) and raw protocol
//   clients cycle through random subsets of 480 texts, far beyond the 256 a server keeps, and
//   reuse their names; afterwards each of the 3 servers holds at most 256, all the ambassador's;
// - names closed (protocol Close), dropped (DEALLOCATE ALL, DISCARD ALL) and prepared again with
//   other texts, while other clients run those texts under their own names;
// - the eviction load while server connections are terminated at random: each answer right, or
//   an error that says the server was lost (57P01, 08xxx), and statements keep working after;
// - pool.cacheUnnamedStatements: unnamed and named statements of the same texts, evicting.
// Then the smallest forms of the bugs these loads and a reading of the code found, each a
// regression test whose comment says where and why it failed.
//
// The load ambassadors run as child processes (the production build), so this process only
// carries the clients; the small reproductions use in-process ambassadors with a pool of one.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { ambassadorsFor, CLIENT_PASSWORD, SpawnedAmbassadors, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { ambassadorClient, directConfig, dropTestDatabase, prepareTestDatabase, serverBackends, withClient, type ServerBackend } from '../support/pooling.ts';
import { bind, clientRandoms, codeOf, DESCRIBE_PORTAL, describeError, EXECUTE, Findings, FLUSH, NO_TYPES, summary, within } from '../support/battery.ts';
import { loginScram, type RawClient } from '../support/raw-client.ts';
import { getTopology, type Topology } from '../support/topology.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../src/protocol/frontend.ts';

const DB = 'pa_stmt_churn';
const POOL_SIZE = 3;
const SEED = Number(process.env.PA_STATEMENT_CHURN_SEED ?? 20_251_203);
const clientRandom = clientRandoms(SEED);
/** application_name of this file's direct connections, so server counts and the killer leave them out. */
const DIRECT_APP = 'pa-stmt-churn-direct';
/** Statements a server connection keeps (PREPARED_STATEMENTS_PER_SERVER in src/app-build.ts). */
const SERVER_CAPACITY = 256;
/** Distinct texts of the eviction loads: far more than one server keeps. */
const TEXT_COUNT = 480;
/** How long a round of a client may wait for all its answers before they count as lost. */
const ROUND_DEADLINE_MS = 15_000;
/** A backstop: a test stuck past this fails (after() then stops the ambassadors, which ends its clients). */
const TEST_TIMEOUT_MS = 60_000;
/** SQLSTATEs that say a request's server was lost (lost-transaction.ts: the server's FATAL code, or 08006; 08001 when no server could be had). */
const LOST = /^(57P01|08[0-9A-Z]{3})$/;

let topology: Topology;
let admin: pg.Client;
const spawned = new SpawnedAmbassadors();
const inProcess = ambassadorsFor(() => topology);

before(async () => {
  topology = await getTopology();
  admin = await prepareTestDatabase(topology, DB);
  await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('create table pa_rows (n int)'));
});

after(async () => {
  await spawned.stopAll();
  await inProcess.stopAll();
  await admin?.end().catch(() => {});
  await dropTestDatabase(topology, DB).catch(() => {});
});

async function startAmbassador(pool: Record<string, unknown> = {}): Promise<SpawnedAmbassador> {
  return spawned.start(topology, {
    listen: { maxClientConnections: 1000, loginTimeout: '30s' },
    pool: { mode: 'transaction', size: POOL_SIZE, acquireTimeout: '30s', ...pool },
    logging: { level: 'info' },
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** `count` distinct numbers of [from, to), in random order. */
function subset(random: () => number, from: number, to: number, count: number): number[] {
  const all = Array.from({ length: to - from }, (_, i) => from + i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count);
}

// ---- texts and answers -------------------------------------------------------------------------

/** Text number k: its answer names k and adds k to the value, so another text's answer shows. */
const statementText = (k: number): string => `select $1::int + ${k} as v, '${k}'::text as k`;
/** A value no other client or unit of this client sends. */
const valueOf = (id: number, seq: number): number => id * 100_000 + seq;
const rowOf = (k: number, value: number): { v: number; k: string } => ({ v: value + k, k: String(k) });

// ---- raw protocol ------------------------------------------------------------------------------

const SYNC = encodeSync();
const parse = (name: string, text: string): Buffer => encodeParse(name, text, NO_TYPES);
const closeStatement = (name: string): Buffer => encodeTarget(FrontendType.Close, 'S', name);
const describeStatement = (name: string): Buffer => encodeTarget(FrontendType.Describe, 'S', name);

/** One exchange's answer up to ReadyForQuery, as summaries (a missing answer as its own entry, which never matches). */
async function answerOf(raw: RawClient, timeoutMs = ROUND_DEADLINE_MS): Promise<string[]> {
  try {
    return (await raw.answer(timeoutMs)).map(summary);
  } catch (err) {
    return [`(${(err as Error).message})`];
  }
}

/** The messages of a row of text k for value `value` (RowDescription, DataRow, CommandComplete). */
const rowMessages = (k: number, value: number): string[] => [`D(${value + k}|${k})`, 'C(SELECT 1)'];

/**
 * Whether `got` is `want`, or (when losses are tolerated) the beginning of `want`, then an
 * ERROR saying the server was lost, then ReadyForQuery: never a wrong row.
 */
function judge(got: readonly string[], want: readonly string[], tolerateLoss: boolean): 'right' | 'lost' | 'wrong' {
  if (got.join(' ') === want.join(' ')) return 'right';
  if (!tolerateLoss) return 'wrong';
  const at = got.findIndex((m) => m.startsWith('E('));
  if (at < 0 || !LOST.test(/^E\(ERROR (\w+)\)$/.exec(got[at]!)?.[1] ?? '')) return 'wrong';
  if (got.slice(0, at).some((m, i) => m !== want[i])) return 'wrong';
  return got.length === at + 2 && got[at + 1] === 'Z(I)' ? 'lost' : 'wrong';
}

// ---- the loads ---------------------------------------------------------------------------------

interface LoadContext {
  scenario: string;
  findings: Findings;
  /** Units run, units found right, units answered with a tolerated loss. */
  units: number;
  right: number;
  lost: number;
  /** Answers may be errors saying the server was lost (servers are being terminated). */
  tolerateLoss: boolean;
  /** Raw exchanges answered right, by kind (for a load's premise: each kind ran). */
  kinds: Map<string, number>;
}

function newContext(scenario: string, tolerateLoss = false): LoadContext {
  return { scenario, findings: new Findings(`seed ${SEED} (PA_STATEMENT_CHURN_SEED)`), units: 0, right: 0, lost: 0, tolerateLoss, kinds: new Map() };
}

/** A client of a load: runs one round of its seeded work (pipelined where it can) and checks every answer. */
interface LoadClient {
  readonly who: string;
  round(): Promise<void>;
}

/** How to close each client made so far, registered as soon as it exists. */
type Closers = Array<() => Promise<unknown>>;

async function closeAll(closers: Closers): Promise<void> {
  await Promise.all(closers.splice(0).map((close) => within(5_000, 'closing a client', close()).catch(() => {})));
}

/** Counts a driver's outcome: `want` (deep-equal), or a tolerated loss. */
function checkRows(ctx: LoadContext, who: string, what: string, got: PromiseSettledResult<unknown>, want: unknown): void {
  ctx.units++;
  if (got.status === 'rejected') {
    if (ctx.tolerateLoss && LOST.test(codeOf(got.reason))) {
      ctx.lost++;
      return;
    }
    return ctx.findings.add(who, `${what} failed: ${describeError(got.reason)}`);
  }
  try {
    assert.deepEqual(got.value, want);
    ctx.right++;
  } catch {
    ctx.findings.add(who, `${what}: got ${JSON.stringify(got.value)}, expected ${JSON.stringify(want)}`);
  }
}

const settle = <T>(work: Promise<T>): Promise<PromiseSettledResult<T>> =>
  work.then(
    (value) => ({ status: 'fulfilled' as const, value }),
    (reason: unknown) => ({ status: 'rejected' as const, reason }),
  );

interface ClientOptions {
  /** The texts this client runs (numbers for statementText). */
  texts: readonly number[];
  /** Units per round: 1 to this many. */
  maxUnits: number;
}

/**
 * postgres.js on one connection: a round's queries are issued at once, so they go pipelined
 * (up to a text it has not described yet: Parse, Describe, Flush, and the rest once described).
 * With prepare on, it names each text's statement itself, describes it once, and then only binds
 * it (Bind, Execute, Sync: it decodes rows by the columns it described); with prepare off, it
 * parses and describes the unnamed statement every time (shared under pool.cacheUnnamedStatements).
 */
async function postgresJsClient(port: number, id: number, ctx: LoadContext, options: ClientOptions & { prepare: boolean }, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (postgres.js, prepare: ${options.prepare})`;
  const sql = postgres({ host: '127.0.0.1', port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, prepare: options.prepare, idle_timeout: 0, connect_timeout: 30, fetch_types: false, onnotice: () => {} });
  closers.push(() => sql.end({ timeout: 1 }));
  await sql`select 1 as ready`;
  const random = clientRandom(ctx.scenario, id);
  let seq = 0;
  // unsafe() does not prepare unless asked: with prepare, each text is a named statement.
  const issue = (k: number, unit: number): Promise<PromiseSettledResult<unknown[]>> =>
    settle(sql.unsafe(statementText(k), [valueOf(id, unit)], { prepare: options.prepare }).then((rows) => [...rows]));
  // A loss can come after a query's rows (as Postgres itself sends FATAL mid-result), and
  // postgres.js then puts the next query's rows after as many holes (ROW_INDEX_AFTER_ERROR). Only
  // that result, the first after a loss, is read without its leading holes.
  let lostBefore = false;
  return {
    who,
    round: async () => {
      const units = Array.from({ length: 1 + Math.floor(random() * options.maxUnits) }, () => ({ k: pick(random, options.texts), seq: ++seq }));
      const settled = await within(
        ROUND_DEADLINE_MS,
        `${who}, units #${units.map((u) => u.seq).join(',')}`,
        Promise.all(units.map((u) => issue(u.k, u.seq))),
      );
      units.forEach((u, i) => {
        let got = settled[i]!;
        if (got.status === 'fulfilled' && lostBefore) got = { status: 'fulfilled', value: withoutLeadingHoles(got.value) };
        lostBefore = got.status === 'rejected' ? lostBefore || LOST.test(codeOf(got.reason)) : false;
        checkRows(ctx, who, `text ${u.k} #${u.seq}`, got, [rowOf(u.k, valueOf(id, u.seq))]);
      });
    },
  };
}

/** `rows` without the empty places postgres.js left before them (undefined once spread: no row is). */
function withoutLeadingHoles(rows: unknown[]): unknown[] {
  let first = 0;
  while (first < rows.length && rows[first] === undefined) first++;
  return rows.slice(first);
}

/**
 * pg: one query after the other. `named` of the units run as named statements (`g<k>`: pg parses
 * a name once per connection, then only binds it), the others unnamed. With `transactions`, some
 * units are transactions of two named statements.
 */
async function pgClient(port: number, id: number, ctx: LoadContext, options: ClientOptions & { named: number; transactions: boolean }, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (pg)`;
  const c = new pg.Client(viaAmbassador(port, { database: DB, connectionTimeoutMillis: 30_000 }) as pg.ClientConfig);
  c.on('error', (err) => ctx.findings.add(who, `connection error: ${describeError(err)}`));
  closers.push(() => c.end());
  await c.connect();
  const random = clientRandom(ctx.scenario, id);
  let seq = 0;
  const run = async (k: number, value: number, named: boolean): Promise<unknown> =>
    (await (named ? c.query({ name: `g${k}`, text: statementText(k), values: [value] }) : c.query(statementText(k), [value]))).rows;
  const command = (got: PromiseSettledResult<pg.QueryResult>): PromiseSettledResult<unknown> => (got.status === 'fulfilled' ? { status: 'fulfilled', value: got.value.command } : got);
  /** BEGIN, two named statements (created on the transaction's server when it lacks them, closing others there), COMMIT. */
  const transaction = async (): Promise<void> => {
    const units = [pick(random, options.texts), pick(random, options.texts)].map((k) => ({ k, seq: ++seq }));
    const began = await settle(c.query('begin'));
    checkRows(ctx, who, `begin before #${units[0]!.seq}`, command(began), 'BEGIN');
    let failed = began.status === 'rejected';
    for (const { k, seq: unit } of units) {
      if (failed) break;
      const got = await settle(run(k, valueOf(id, unit), true));
      checkRows(ctx, who, `text ${k} #${unit} in a transaction`, got, [rowOf(k, valueOf(id, unit))]);
      failed = got.status === 'rejected';
    }
    const end = await settle(c.query(failed ? 'rollback' : 'commit'));
    checkRows(ctx, who, `${failed ? 'rollback' : 'commit'} after #${units[1]!.seq}`, command(end), failed ? 'ROLLBACK' : 'COMMIT');
  };
  return {
    who,
    round: async () => {
      const count = 1 + Math.floor(random() * options.maxUnits);
      const work = async (): Promise<void> => {
        for (let i = 0; i < count; i++) {
          if (options.transactions && random() < 0.15) {
            await transaction();
            continue;
          }
          const k = pick(random, options.texts);
          const unit = ++seq;
          const named = random() < options.named;
          checkRows(ctx, who, `text ${k} #${unit}${named ? ' (named)' : ''}`, await settle(run(k, valueOf(id, unit), named)), [rowOf(k, valueOf(id, unit))]);
        }
      };
      await within(ROUND_DEADLINE_MS, `${who}, a round of ${count}`, work());
    },
  };
}

/** A raw exchange: the messages it sends, every message it must get back, and what to note once it is right. */
interface RawExchange {
  what: string;
  /** What it does, counted in LoadContext.kinds once answered right. */
  kind?: string;
  send: Buffer[];
  expect: string[];
  /** Called with the outcome (not for a wrong one). */
  then?: (outcome: 'right' | 'lost') => void;
}

/** Writes a round's exchanges in one write, then reads and judges each answer; a wrong one stops the client (its stream may be out of step). */
async function runExchanges(raw: RawClient, ctx: LoadContext, exchanges: readonly RawExchange[]): Promise<void> {
  raw.write(exchanges.flatMap((e) => e.send));
  for (const exchange of exchanges) {
    ctx.units++;
    const got = await answerOf(raw);
    const outcome = judge(got, exchange.expect, ctx.tolerateLoss);
    if (outcome === 'wrong') throw new Error(`${exchange.what}: got [${got.join(' ')}], expected [${exchange.expect.join(' ')}]`);
    if (outcome === 'right') {
      ctx.right++;
      if (exchange.kind !== undefined) ctx.kinds.set(exchange.kind, (ctx.kinds.get(exchange.kind) ?? 0) + 1);
    } else ctx.lost++;
    exchange.then?.(outcome);
  }
}

/**
 * A raw protocol client with its own statement names (`r<k>`). A name it has not prepared is
 * parsed in the exchange that runs it, or alone (Parse, Sync), or parsed and described before
 * its Bind; a name it holds is bound again (its portal or the statement described). After a loss
 * it cannot know whether its Parse was made: it closes the name and parses it again. With
 * `unnamed`, that share of units is the unnamed statement instead (Parse, Bind, Describe, Execute).
 */
async function rawClient(port: number, id: number, ctx: LoadContext, options: ClientOptions & { unnamed: number }, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (raw)`;
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  closers.push(async () => raw.destroy());
  const random = clientRandom(ctx.scenario, id);
  const state = new Map<number, 'prepared' | 'uncertain'>();
  let seq = 0;
  const exchange = (k: number): RawExchange => {
    const value = valueOf(id, ++seq);
    const name = `r${k}`;
    const params = [String(value)];
    const row = rowMessages(k, value);
    const what = `text ${k} #${seq}`;
    const noteLoss = (outcome: 'right' | 'lost'): void => {
      if (outcome === 'lost') state.set(k, 'uncertain');
    };
    if (random() < options.unnamed) {
      return { what: `${what} (unnamed)`, send: [parse('', statementText(k)), bind('', params), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['1', '2', 'T(v,k)', ...row, 'Z(I)'] };
    }
    const held = state.get(k);
    const choice = random();
    if (held === 'uncertain') {
      return {
        what: `${what} (closed and parsed again)`,
        send: [closeStatement(name), parse(name, statementText(k)), bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC],
        expect: ['3', '1', '2', 'T(v,k)', ...row, 'Z(I)'],
        then: (outcome) => state.set(k, outcome === 'right' ? 'prepared' : 'uncertain'),
      };
    }
    if (held === undefined) {
      const then = (outcome: 'right' | 'lost'): void => void state.set(k, outcome === 'right' ? 'prepared' : 'uncertain');
      // Prepared from here on: an exchange of the same round (sent before this one's answer)
      // binds it, as a second Parse of the name would be refused (42P05), as in Postgres.
      state.set(k, 'prepared');
      if (choice < 0.15) {
        // Prepared only: answered without a server when the client holds no lease.
        seq--;
        return { what: `${what} (Parse, Sync)`, send: [parse(name, statementText(k)), SYNC], expect: ['1', 'Z(I)'], then };
      }
      if (choice < 0.3) {
        return { what: `${what} (parsed and described)`, send: [parse(name, statementText(k)), describeStatement(name), bind(name, params), EXECUTE, SYNC], expect: ['1', 't', 'T(v,k)', '2', ...row, 'Z(I)'], then };
      }
      return { what: `${what} (parsed)`, send: [parse(name, statementText(k)), bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['1', '2', 'T(v,k)', ...row, 'Z(I)'], then };
    }
    if (choice < 0.2) {
      return { what: `${what} (described)`, send: [describeStatement(name), bind(name, params), EXECUTE, SYNC], expect: ['t', 'T(v,k)', '2', ...row, 'Z(I)'], then: noteLoss };
    }
    return { what: `${what} (bound)`, send: [bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['2', 'T(v,k)', ...row, 'Z(I)'], then: noteLoss };
  };
  return {
    who,
    round: async () => {
      const exchanges = Array.from({ length: 1 + Math.floor(random() * options.maxUnits) }, () => exchange(pick(random, options.texts)));
      await within(ROUND_DEADLINE_MS, `${who}, a round of ${exchanges.length}`, runExchanges(raw, ctx, exchanges));
    },
  };
}

/**
 * A raw client that renames: six names (`s0`..`s5`), each bound to a text that changes. It
 * closes a name and prepares it again with another text in one exchange, or closes it alone
 * (a Bind of it then gets 26000, as from Postgres), prepares a closed or dropped name again
 * without closing it, and drops all its statements with DEALLOCATE ALL or DISCARD ALL. The same
 * name must then mean the new text, on whichever server the client lands.
 */
async function renamingClient(port: number, id: number, ctx: LoadContext, options: ClientOptions, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (raw, renaming)`;
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  closers.push(async () => raw.destroy());
  const random = clientRandom(ctx.scenario, id);
  /** Each name's text; 'closed' after a protocol Close, 'dropped' after DEALLOCATE ALL / DISCARD ALL, absent before its first Parse. */
  const names = new Map<string, number | 'closed' | 'dropped'>();
  let seq = 0;
  const exchange = (): RawExchange => {
    const name = `s${Math.floor(random() * 6)}`;
    const held = names.get(name);
    const k = pick(random, options.texts);
    const value = valueOf(id, ++seq);
    const params = [String(value)];
    const row = rowMessages(k, value);
    const what = `${name} #${seq}`;
    const choice = random();
    if (choice < 0.03) {
      const statement = random() < 0.5 ? 'deallocate all' : 'discard all';
      for (const n of names.keys()) names.set(n, 'dropped');
      return { what: `${statement} #${seq}`, kind: statement, send: [encodeQuery(statement)], expect: [`C(${statement.toUpperCase()})`, 'Z(I)'] };
    }
    if (typeof held === 'number' && choice < 0.6) {
      const heldRow = rowMessages(held, value);
      return { what: `${what}: text ${held} bound`, kind: 'bound', send: [bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['2', 'T(v,k)', ...heldRow, 'Z(I)'] };
    }
    if (held === 'closed' && choice < 0.3) {
      return { what: `${what}: bound after its Close`, kind: 'bound after its Close', send: [bind(name, params), EXECUTE, SYNC], expect: ['E(ERROR 26000)', 'Z(I)'] };
    }
    if (typeof held === 'number' && choice < 0.7) {
      names.set(name, 'closed');
      return { what: `${what}: closed`, kind: 'closed', send: [closeStatement(name), SYNC], expect: ['3', 'Z(I)'] };
    }
    names.set(name, k);
    if (typeof held === 'number' || random() < 0.5) {
      return {
        what: `${what}: closed and prepared again as text ${k}`,
        kind: 'closed and prepared again',
        send: [closeStatement(name), parse(name, statementText(k)), bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC],
        expect: ['3', '1', '2', 'T(v,k)', ...row, 'Z(I)'],
      };
    }
    return { what: `${what}: prepared as text ${k}`, kind: held === undefined ? 'prepared' : `prepared again after ${held === 'closed' ? 'Close' : 'a drop'}`, send: [parse(name, statementText(k)), bind(name, params), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['1', '2', 'T(v,k)', ...row, 'Z(I)'] };
  };
  return {
    who,
    round: async () => {
      const exchanges = Array.from({ length: 1 + Math.floor(random() * options.maxUnits) }, exchange);
      await within(ROUND_DEADLINE_MS, `${who}, a round of ${exchanges.length}`, runExchanges(raw, ctx, exchanges));
    },
  };
}

/** connected: all clients are connected (the rounds begin); between: the rounds are done, the last round not begun. */
interface LoadHooks {
  connected?: () => void;
  between?: () => Promise<void>;
}

type Connect = (port: number, id: number, ctx: LoadContext, closers: Closers) => Promise<LoadClient>;

/**
 * Connects every client (connect(id) says which kind), then runs them all at once, `rounds`
 * rounds each, and one more round each after hooks.between (the killer stopping, for instance).
 * A client whose round failed outright (no answer in time, a raw stream out of step) stops.
 */
async function runLoad(port: number, ctx: LoadContext, clients: number, rounds: number, connect: Connect, hooks: LoadHooks = {}): Promise<{ afterwards: LoadContext }> {
  const closers: Closers = [];
  const afterwards = newContext(`${ctx.scenario}/afterwards`);
  afterwards.findings = ctx.findings;
  try {
    const connecting = Promise.all(
      Array.from({ length: clients }, (_, id) =>
        connect(port, id, ctx, closers).catch((err: unknown) => {
          throw new Error(`seed ${SEED}: client ${id} could not connect: ${describeError(err)}`);
        }),
      ),
    );
    const loaded = await within(ROUND_DEADLINE_MS, `seed ${SEED}: connecting ${clients} clients`, connecting);
    hooks.connected?.();
    const running = loaded.map(async (client) => {
      for (let r = 0; r < rounds; r++) {
        try {
          await client.round();
        } catch (err) {
          ctx.findings.add(client.who, `round ${r + 1} gave up: ${(err as Error).message}`);
          return false;
        }
      }
      return true;
    });
    const alive = await Promise.all(running);
    await hooks.between?.();
    // The last round counts apart: nothing may be lost any more.
    const tolerate = ctx.tolerateLoss;
    ctx.tolerateLoss = false;
    const before = { units: ctx.units, right: ctx.right };
    await Promise.all(
      loaded.map(async (client, i) => {
        if (!alive[i]) return;
        try {
          await client.round();
        } catch (err) {
          ctx.findings.add(client.who, `the last round gave up: ${(err as Error).message}`);
        }
      }),
    );
    ctx.tolerateLoss = tolerate;
    afterwards.units = ctx.units - before.units;
    afterwards.right = ctx.right - before.right;
  } finally {
    await closeAll(closers);
  }
  return { afterwards };
}

function assertLoadRight(ctx: LoadContext, minUnits: number): void {
  assert.equal(ctx.findings.count, 0, ctx.findings.report());
  assert.equal(ctx.right + ctx.lost, ctx.units, `seed ${SEED}: ${ctx.units} units, ${ctx.right} right, ${ctx.lost} lost`);
  assert.ok(ctx.units >= minUnits, `seed ${SEED}: only ${ctx.units} units ran (expected at least ${minUnits})`);
}

// ---- the servers -------------------------------------------------------------------------------

/** The ambassador's server connections in DB (this file's direct ones left out). */
async function servers(): Promise<ServerBackend[]> {
  return (await serverBackends(admin, DB)).filter((b) => b.application_name !== DIRECT_APP);
}

/** Polls until the servers in DB are at most the pool's size and all idle. */
async function poolSettles(timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await servers();
    if (seen.length <= POOL_SIZE && seen.every((b) => b.state === 'idle')) return;
    assert.ok(Date.now() < deadline, `the servers in ${DB} did not settle within ${timeoutMs} ms: ${JSON.stringify(seen.map((b) => [b.pid, b.state, b.query.slice(0, 60)]))}`);
    await sleep(50);
  }
}

interface HeldStatements {
  pid: number;
  /** Protocol-level statements the server holds. */
  held: number;
  /** Statements not of the ambassador's naming (pa_...) or made with SQL PREPARE. */
  foreign: number;
}

/**
 * What each of the pool's servers holds, read through the ambassador: POOL_SIZE clients open a
 * transaction each (so each holds a server of its own), then read pg_prepared_statements.
 */
async function heldPerServer(port: number): Promise<HeldStatements[]> {
  const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => ambassadorClient(port, DB)));
  try {
    for (const c of clients) await c.query('begin');
    const read = await Promise.all(
      clients.map((c) => c.query<HeldStatements>(`select pg_backend_pid() as pid, count(*)::int as held, (count(*) filter (where from_sql or name !~ '^pa_'))::int as foreign from pg_prepared_statements`)),
    );
    for (const c of clients) await c.query('commit');
    return read.map((r) => r.rows[0]!);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

/** Every server holds at most SERVER_CAPACITY statements, all the ambassador's; returns the largest count. */
async function assertStatementsBounded(port: number): Promise<number> {
  const held = await heldPerServer(port);
  assert.equal(new Set(held.map((h) => h.pid)).size, POOL_SIZE, `expected ${POOL_SIZE} distinct servers: ${JSON.stringify(held)}`);
  for (const h of held) {
    assert.ok(h.held <= SERVER_CAPACITY, `server ${h.pid} holds ${h.held} statements, more than ${SERVER_CAPACITY}`);
    assert.equal(h.foreign, 0, `server ${h.pid} holds statements not of the ambassador's naming: ${JSON.stringify(h)}`);
  }
  return Math.max(...held.map((h) => h.held));
}

/** A fresh raw client runs 40 texts, each under a new name, in one pipeline: each answer is right. */
async function assertFreshClientServed(port: number): Promise<void> {
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  try {
    const ctx = newContext('fresh');
    const exchanges: RawExchange[] = Array.from({ length: 40 }, (_, i) => {
      const k = (i * 37) % TEXT_COUNT;
      return { what: `text ${k}`, send: [parse(`fresh${i}`, statementText(k)), bind(`fresh${i}`, [String(i)]), DESCRIBE_PORTAL, EXECUTE, SYNC], expect: ['1', '2', 'T(v,k)', ...rowMessages(k, i), 'Z(I)'] };
    });
    await within(ROUND_DEADLINE_MS, 'a fresh client', runExchanges(raw, ctx, exchanges));
    assert.equal(ctx.right, 40);
  } finally {
    raw.destroy();
  }
}

/**
 * Terminates one random server connection of the ambassador in DB every 50-200 ms (seeded)
 * until stopped; returns how many it terminated.
 */
interface Killer {
  /** Stops once it has terminated at least `atLeast` server connections (a fast load may end before that); resolves to how many it terminated. */
  stop(atLeast?: number): Promise<number>;
}

function startKiller(random: () => number): Killer {
  let running = true;
  let killed = 0;
  let atLeast = 0;
  const loop = (async () => {
    const direct = new pg.Client(directConfig(topology, 'postgres', { user: topology.superuser.user, password: topology.superuser.password, application_name: DIRECT_APP }));
    direct.on('error', () => {});
    await direct.connect();
    try {
      while (running || killed < atLeast) {
        await sleep(50 + random() * 150);
        if (!running && killed >= atLeast) break;
        const { rows } = await direct.query<{ pid: number }>(
          `select pid from pg_stat_activity where datname = $1 and usename = 'app' and application_name <> $2 and backend_type = 'client backend' order by pid`,
          [DB, DIRECT_APP],
        );
        if (rows.length === 0) continue;
        const { rows: done } = await direct.query<{ done: boolean }>('select pg_terminate_backend($1) as done', [pick(random, rows).pid]);
        if (done[0]?.done) killed++;
      }
    } finally {
      await direct.end().catch(() => {});
    }
  })();
  return {
    stop: async (minimum = 0) => {
      atLeast = minimum;
      running = false;
      await loop;
      return killed;
    },
  };
}

// ---- the tests ---------------------------------------------------------------------------------

/** The eviction load's clients: postgres.js (prepare on), pg (named) and raw, a third each, over random 40-text subsets of TEXT_COUNT. */
function evictionMix(kinds: { postgresJsPrepare: (id: number) => boolean; pgNamed: number; rawUnnamed: number; transactions: boolean }): Connect {
  return async (port, id, ctx, closers) => {
    const texts = subset(clientRandom(`${ctx.scenario}/texts`, id), 0, TEXT_COUNT, 40);
    const options = { texts, maxUnits: 5 };
    switch (id % 3) {
      case 0:
        return postgresJsClient(port, id, ctx, { ...options, prepare: kinds.postgresJsPrepare(id) }, closers);
      case 1:
        return pgClient(port, id, ctx, { ...options, named: kinds.pgNamed, transactions: kinds.transactions }, closers);
      default:
        return rawClient(port, id, ctx, { ...options, unnamed: kinds.rawUnnamed }, closers);
    }
  };
}

// ROW_INDEX_AFTER_ERROR: the fact the postgres.js load client allows for, checked against
// Postgres itself (no ambassador). postgres.js 3.4 resets its row index at CommandComplete only, so
// after an error that came behind some rows, the next result's rows come after as many empty
// places. When postgres.js stops doing so this test fails, and withoutLeadingHoles can go.
test('postgres.js, straight to Postgres: after an error behind rows, the next result starts with empty places', async () => {
  const direct = directConfig(topology, DB);
  const sql = postgres({ host: direct.host, port: direct.port, username: 'app', password: String(direct.password), database: DB, max: 1, onnotice: () => {} });
  try {
    // Rows for g = 1 and 2, then division by zero.
    await assert.rejects(sql.unsafe('select 1 / (3 - g) as v from generate_series(1, 5) g'), (err: Error & { code?: string }) => err.code === '22012');
    const after = [...(await sql.unsafe('select 7 as v'))];
    assert.deepEqual(after, [undefined, undefined, { v: 7 }]);
    assert.deepEqual(withoutLeadingHoles(after), [{ v: 7 }]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

describe(`statements churning on a pool of ${POOL_SIZE} (seed ${SEED})`, () => {
  test(`eviction under contention: 36 clients over ${TEXT_COUNT} texts, each answer right; each server ends with at most ${SERVER_CAPACITY}`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await startAmbassador();
    try {
      const ctx = newContext('eviction');
      await runLoad(amb.port, ctx, 36, 20, evictionMix({ postgresJsPrepare: () => true, pgNamed: 1, rawUnnamed: 0, transactions: true }));
      assertLoadRight(ctx, 36 * 21);
      await poolSettles();
      const most = await assertStatementsBounded(amb.port);
      // The premise: the load made at least one server full, so statements were closed to make room.
      assert.equal(most, SERVER_CAPACITY, `no server reached ${SERVER_CAPACITY} statements: nothing was evicted`);
      await assertFreshClientServed(amb.port);
      assert.equal(amb.process.exitCode, null, `the ambassador exited: ${amb.output().slice(-2000)}`);
    } finally {
      await spawned.stop(amb);
    }
  });

  test('names closed, deallocated or discarded and prepared again with other texts mean the new text on every server', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await startAmbassador();
    try {
      const ctx = newContext('renaming');
      // 60 texts shared by everyone: the renamers' texts are the others' statements too.
      const connect: Connect = async (port, id, c, closers) => {
        const texts = subset(clientRandom('renaming/texts', id), 0, 60, 20);
        if (id < 12) return renamingClient(port, id, c, { texts, maxUnits: 6 }, closers);
        if (id < 18) return pgClient(port, id, c, { texts, maxUnits: 4, named: 1, transactions: false }, closers);
        return postgresJsClient(port, id, c, { texts, maxUnits: 4, prepare: true }, closers);
      };
      await runLoad(amb.port, ctx, 24, 8, connect);
      assertLoadRight(ctx, 24 * 9);
      const kinds = ['bound', 'closed', 'bound after its Close', 'closed and prepared again', 'prepared', 'prepared again after Close', 'prepared again after a drop', 'deallocate all', 'discard all'];
      assert.deepEqual(kinds.filter((k) => !ctx.kinds.has(k)), [], `seed ${SEED}: kinds of exchange that never ran: ${JSON.stringify([...ctx.kinds])}`);
      await poolSettles();
      await assertStatementsBounded(amb.port);
      await assertFreshClientServed(amb.port);
    } finally {
      await spawned.stop(amb);
    }
  });

  test('server connections terminated at random during the eviction load: each answer right or a loss, never another’s; statements work after', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await startAmbassador();
    const killing: { killer?: Killer } = {};
    try {
      const ctx = newContext('killed', true);
      let killed = 0;
      // postgres.js describes new statements (Parse, Describe, Flush) and pg runs transactions
      // while servers are lost: a loss there once left postgres.js waiting forever, and answered
      // COMMIT with ROLLBACK (see 'a request left open without Sync whose server is lost ...' and
      // 'a COMMIT that is the first request after ...' below).
      const mix = evictionMix({ postgresJsPrepare: () => true, pgNamed: 0.8, rawUnnamed: 0, transactions: true });
      const { afterwards } = await runLoad(amb.port, ctx, 30, 40, mix, {
        connected: () => (killing.killer = startKiller(clientRandom('killer', 0))),
        between: async () => void (killed = await killing.killer!.stop(5)),
      });
      assertLoadRight(ctx, 30 * 41);
      assert.equal(afterwards.right, afterwards.units, `seed ${SEED}: after the killing stopped, ${afterwards.units - afterwards.right} answers were not right`);
      // The premise: servers were lost while clients ran, and some requests with them.
      assert.ok(killed >= 5, `only ${killed} server connections were terminated during the load`);
      assert.ok(ctx.lost > 0, `seed ${SEED}: ${killed} server connections terminated, and no request was lost with them`);
      await poolSettles();
      await assertStatementsBounded(amb.port);
      await assertFreshClientServed(amb.port);
      assert.equal(amb.process.exitCode, null, `the ambassador exited: ${amb.output().slice(-2000)}`);
    } finally {
      await killing.killer?.stop();
      await spawned.stop(amb);
    }
  });

  test(`pool.cacheUnnamedStatements: unnamed and named statements of the same ${TEXT_COUNT} texts, evicting, each answer right`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await startAmbassador({ cacheUnnamedStatements: true });
    try {
      const ctx = newContext('cached-unnamed');
      await runLoad(amb.port, ctx, 36, 20, evictionMix({ postgresJsPrepare: (id) => id % 2 === 0, pgNamed: 0.4, rawUnnamed: 0.5, transactions: true }));
      assertLoadRight(ctx, 36 * 21);
      await poolSettles();
      const most = await assertStatementsBounded(amb.port);
      assert.equal(most, SERVER_CAPACITY, `no server reached ${SERVER_CAPACITY} statements: nothing was evicted`);
      await assertFreshClientServed(amb.port);
    } finally {
      await spawned.stop(amb);
    }
  });
});

// ---- bugs, reduced ------------------------------------------------------------------------------

/** An in-process ambassador with one server connection, and a raw client logged in to it. */
async function onOneServer(options: Record<string, unknown> = {}): Promise<{ raw: RawClient; port: number }> {
  const amb = await inProcess.start({ pool: { mode: 'transaction', size: 1, ...options }, logging: { level: 'info' } });
  return { raw: await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB }), port: amb.port };
}

/** The pid of the ambassador's server connection in DB that waits for a lock (polled up to 5 s). */
async function waitingForLock(): Promise<number> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const { rows } = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity where datname = $1 and usename = 'app' and application_name <> $2 and wait_event_type = 'Lock'`,
      [DB, DIRECT_APP],
    );
    if (rows.length > 0) return rows[0]!.pid;
    assert.ok(Date.now() < deadline, 'no server connection waits for the lock');
    await sleep(20);
  }
}

const answered = async (raw: RawClient): Promise<string> => (await answerOf(raw, 5_000)).join(' ');

/** How many times an in-process ambassador's log says a server was lost under a client idle in a transaction block. */
function lossesLogged(logs: () => Array<Record<string, unknown>>): number {
  return logs().filter((line) => line.msg === 'server connection lost: in-flight requests answered with an error' && line.inTransaction === true && line.inFlight === 0).length;
}

/** Polls an in-process ambassador's log until it says (once more than `before` times) that a server was lost under a client idle in a transaction block. */
async function lossLogged(logs: () => Array<Record<string, unknown>>, timeoutMs: number, before = 0): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (lossesLogged(logs) <= before) {
    assert.ok(Date.now() < deadline, `the ambassador did not log the loss within ${timeoutMs} ms`);
    await sleep(10);
  }
}

describe('statement bookkeeping, reduced to one server connection', () => {
  test('a statement re-created inside an exchange left open without Sync: Postgres skips to Sync after an error there, and the statement works after', { timeout: TEST_TIMEOUT_MS }, async () => {
    // txn-forwarder.ts pump(): preparation(lease, request) runs whenever nothing is in flight,
    // also while `unsynced` (an exchange left open by Flush); preparation.ts preparationFor adds
    // its own Sync. Here the open exchange failed, so the server skips the re-creating Parse up
    // to that Sync; prepareThenPump sees no error and touchStatement marks it held. The client's
    // Bind then gets 26000 (where Postgres skips it), and so does every later Bind of the text on
    // that server connection, by any client.
    const { raw } = await onOneServer();
    try {
      raw.write([parse('later', 'select $1::int + 1 as v'), SYNC]);
      assert.equal(await answered(raw), '1 Z(I)', 'prepared without a server');
      raw.write([parse('', 'select 1 / (random() * 0)::int as q'), bind('', []), EXECUTE, FLUSH]);
      const failed = [await raw.nextMessage(), await raw.nextMessage(), await raw.nextMessage()].map(summary);
      assert.deepEqual(failed, ['1', '2', 'E(ERROR 22012)']);
      raw.write([bind('later', ['41']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'Z(I)', 'skipped up to Sync, as Postgres does after an error');
      raw.write([bind('later', ['41']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '2 D(42) C(SELECT 1) Z(I)', 'the statement works');
    } finally {
      raw.destroy();
    }
  });

  test('a statement re-created inside an exchange left open without Sync does not commit that exchange’s work', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Same cause: the preparation's Sync ends the client's implicit transaction, committing the
    // insert that a failure later in the same exchange must roll back.
    const { raw } = await onOneServer();
    try {
      await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('delete from pa_rows'));
      raw.write([parse('later', 'select $1::int + 1 as v'), SYNC]);
      assert.equal(await answered(raw), '1 Z(I)');
      raw.write([parse('', 'insert into pa_rows values (7)'), bind('', []), EXECUTE, FLUSH]);
      const inserted = [await raw.nextMessage(), await raw.nextMessage(), await raw.nextMessage()].map(summary);
      assert.deepEqual(inserted, ['1', '2', 'C(INSERT 0 1)']);
      raw.write([bind('later', ['not a number']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 22P02) Z(I)');
      const { rows } = await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('select count(*)::int as n from pa_rows'));
      assert.deepEqual(rows, [{ n: 0 }], 'the implicit transaction failed: its insert is rolled back');
    } finally {
      raw.destroy();
    }
  });

  test('a Parse the server skipped after an error is not taken as held by a request pipelined behind it', { timeout: TEST_TIMEOUT_MS }, async () => {
    // txn-forwarder.ts materialize(), case 'parse': touchStatement marks the statement held when
    // its Parse is sent. The server skips that Parse (the Bind before it failed); the plan's
    // onError forgets it only when that answer arrives, but the request behind was materialized
    // before then: its Parse of the same text became a synthesized ParseComplete, and its Bind
    // names a statement the server never made (26000, where Postgres runs it).
    const { raw } = await onOneServer();
    const text = 'select $1::int * 3 as v';
    try {
      raw.write([
        ...[parse('a', 'select $1::int as n'), bind('a', ['x']), EXECUTE, parse('b', text), bind('b', ['1']), EXECUTE, SYNC],
        ...[parse('c', text), bind('c', ['2']), EXECUTE, SYNC],
      ]);
      assert.equal(await answered(raw), '1 E(ERROR 22P02) Z(I)');
      assert.equal(await answered(raw), '1 2 D(6) C(SELECT 1) Z(I)');
    } finally {
      raw.destroy();
    }
  });

  test('a Parse that failed is not taken as held by a request pipelined behind it: the same text fails the same way', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The same cause, with a text that does not parse (a table that does not exist, as before a
    // migration): Postgres answers 42P01 to both; the ambassador answers the second Parse itself.
    const { raw } = await onOneServer();
    const text = 'select n from pa_no_such_table where n = $1::int';
    try {
      raw.write([parse('d', text), bind('d', ['1']), EXECUTE, SYNC, parse('e', text), bind('e', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 42P01) Z(I)');
      assert.equal(await answered(raw), 'E(ERROR 42P01) Z(I)');
      // Again, now that the client's earlier answers are all in: response-plan.ts add() counted
      // the Parse, then push() started the plan again at slot 0 and cleared the count with it, so
      // parsing() saw no Parse unanswered and the second went as held (its Bind 26000).
      raw.write([parse('f', text), bind('f', ['1']), EXECUTE, SYNC, parse('g', text), bind('g', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 42P01) Z(I)');
      assert.equal(await answered(raw), 'E(ERROR 42P01) Z(I)', 'after earlier answers');
    } finally {
      raw.destroy();
    }
  });

  test('DEALLOCATE ALL in the same extended request as a Parse: the statement it dropped is made again when next parsed', { timeout: TEST_TIMEOUT_MS }, async () => {
    // txn-forwarder.ts send(): applyAtSend clears server.statements (DEALLOCATE ALL) before
    // materialize() adds the request's own Parse to it; on the server the Parse ran first and
    // DEALLOCATE ALL dropped it. The next Parse of that text is answered by the ambassador and its
    // Bind gets 26000. (When the statement was held before the request, its Parse is sent again
    // instead, and the server refuses it with 42P05.)
    const { raw } = await onOneServer();
    const text = 'select $1::int * 5 as v';
    try {
      raw.write([parse('s1', text), bind('s1', ['1']), EXECUTE, parse('', 'deallocate all'), bind('', []), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(5) C(SELECT 1) 1 2 C(DEALLOCATE ALL) Z(I)');
      raw.write([parse('s2', text), bind('s2', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(10) C(SELECT 1) Z(I)');
    } finally {
      raw.destroy();
    }
  });

  test('SQL DEALLOCATE of a protocol-level statement deallocates it, as in Postgres', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Drivers that prepare through the protocol and deallocate with SQL (psycopg 3, Rails'
    // PostgreSQL adapter) get 26000 from DEALLOCATE. request-builder.ts renames the statement on
    // servers (statements.ts) but a Query's DEALLOCATE name is sent as it came, and the
    // sql-deallocate effect (session-state.ts) only concerns SQL PREPARE. The name stays bound
    // for the client too (a Bind of it runs, where Postgres answers 26000).
    const { raw } = await onOneServer();
    try {
      raw.write([parse('s1', 'select $1::int * 7 as v'), bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(7) C(SELECT 1) Z(I)');
      raw.write(encodeQuery('deallocate s1'));
      assert.equal(await answered(raw), 'C(DEALLOCATE) Z(I)');
      raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'deallocated');
      raw.write([parse('s1', 'select $1::int * 8 as v'), bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(16) C(SELECT 1) Z(I)', 'the name can be parsed again');
      // DEALLOCATE PREPARE, as one extended-protocol request (postgres.js sends every statement so).
      raw.write([parse('', 'DEALLOCATE PREPARE s1'), bind('', []), DESCRIBE_PORTAL, EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 n C(DEALLOCATE) Z(I)');
      raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'deallocated');
      raw.write(encodeQuery('deallocate s1'));
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'a name the client does not hold: the server answers, as Postgres');
    } finally {
      raw.destroy();
    }
  });

  test('SQL DEALLOCATE of a protocol-level statement in a transaction block takes effect at once; in a failed one it is refused and the name stays', { timeout: TEST_TIMEOUT_MS }, async () => {
    // DEALLOCATE is not transactional in Postgres: a ROLLBACK does not bring the statement back.
    // In a failed transaction it is refused (25P02) like anything but the block's end.
    const { raw } = await onOneServer();
    try {
      raw.write([parse('s1', 'select $1::int * 3 as v'), parse('s2', 'select $1::int * 4 as v'), SYNC]);
      assert.equal(await answered(raw), '1 1 Z(I)');
      raw.write([encodeQuery('begin'), encodeQuery('deallocate s1'), encodeQuery('rollback')]);
      assert.equal(await answered(raw), 'C(BEGIN) Z(T)');
      assert.equal(await answered(raw), 'C(DEALLOCATE) Z(T)');
      assert.equal(await answered(raw), 'C(ROLLBACK) Z(I)');
      raw.write([bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'gone, rolled back or not');
      // Pipelined behind the statement that fails the transaction: refused, and s2 stays.
      raw.write([encodeQuery('begin'), encodeQuery('select 1 / 0'), encodeQuery('deallocate s2'), encodeQuery('rollback')]);
      assert.equal(await answered(raw), 'C(BEGIN) Z(T)');
      assert.equal(await answered(raw), 'E(ERROR 22012) Z(E)');
      assert.equal(await answered(raw), 'E(ERROR 25P02) Z(E)');
      assert.equal(await answered(raw), 'C(ROLLBACK) Z(I)');
      raw.write([bind('s2', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '2 D(8) C(SELECT 1) Z(I)', 'still prepared');
    } finally {
      raw.destroy();
    }
  });

  test('after DEALLOCATE ALL or DISCARD ALL the client’s protocol-level statements are gone, as in Postgres, and their names can be parsed again', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { raw } = await onOneServer();
    try {
      for (const drop of ['deallocate all', 'discard all']) {
        raw.write([parse('s1', 'select $1::int * 9 as v'), bind('s1', ['1']), EXECUTE, SYNC]);
        assert.equal(await answered(raw), '1 2 D(9) C(SELECT 1) Z(I)', drop);
        raw.write(encodeQuery(drop));
        assert.equal(await answered(raw), `C(${drop.toUpperCase()}) Z(I)`);
        raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
        assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', `dropped by ${drop}`);
      }
      // In the extended protocol too; and the name is free for another text.
      raw.write([parse('s1', 'select $1::int * 9 as v'), SYNC, parse('', 'deallocate all'), bind('', []), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 Z(I)');
      assert.equal(await answered(raw), '1 2 C(DEALLOCATE ALL) Z(I)');
      raw.write([parse('s1', 'select $1::int * 10 as v'), bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(20) C(SELECT 1) Z(I)');
    } finally {
      raw.destroy();
    }
  });

  test('a request left open without Sync whose server is lost while its statement is re-created there gets an ERROR, not silence', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Found by the killing load: postgres.js clients waited forever. postgres.js describes a
    // text it has not described yet with Parse, Describe, Flush, and waits for the description.
    // When that request needs a preparation (in the load: its settings replayed, as its
    // application_name differs from the other drivers'; or statements closed to make room, or
    // re-created) and the server was lost during it, txn-forwarder.ts prepareThenPump answered
    // only the queued requests that end in Sync: nothing was answered, and the client waited.
    // The request is now answered as one in flight on the lost server (lostPreparing). Reduced
    // here with a Bind whose statement must be re-created, held on a lock so the server can be
    // terminated mid-preparation.
    const { raw } = await onOneServer();
    const locker = new pg.Client(directConfig(topology, DB, { application_name: DIRECT_APP }));
    locker.on('error', () => {});
    await locker.connect();
    try {
      await locker.query('drop table if exists pa_locked; create table pa_locked (n int); insert into pa_locked values (1)');
      raw.write([parse('blocked', 'select n from pa_locked where n = $1::int'), SYNC]);
      assert.equal(await answered(raw), '1 Z(I)', 'prepared without a server');
      await locker.query('begin; lock table pa_locked in access exclusive mode');
      // Its re-creation (the Parse, before the Bind) waits for the lock.
      raw.write([bind('blocked', ['1']), DESCRIBE_PORTAL, EXECUTE, FLUSH]);
      const waiting = await waitingForLock();
      await admin.query('select pg_terminate_backend($1, 5000)', [waiting]);
      await locker.query('commit');
      const told = summary(await raw.nextMessage(2_000).catch((err: Error) => ({ type: `(${err.message})`, payload: Buffer.alloc(0) })));
      assert.match(told, /^E\(ERROR (57P01|08\w{3})\)$/, 'the loss is told');
      raw.write(SYNC);
      assert.equal(await answered(raw), 'Z(I)');
      raw.write([bind('blocked', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '2 D(1) C(SELECT 1) Z(I)', 'and the statement works after');
    } finally {
      raw.destroy();
      await locker.end().catch(() => {});
    }
  });

  test('a COMMIT that is the first request after its transaction’s server was lost fails with the loss, not ROLLBACK', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Found by the killing load (a pg client's COMMIT answered ROLLBACK). The server of a client
    // idle in a transaction block is lost: txn-forwarder.ts onServerClose keeps the error for the
    // client's next request (lostError). When that request was COMMIT, lost-transaction.ts
    // answerInLostTransaction answered it as ending the transaction (CommandComplete ROLLBACK)
    // and dropped that error. Postgres answers COMMIT with ROLLBACK only in a transaction whose
    // failure the client was told of; drivers resolve it as success (pg: command 'ROLLBACK'),
    // so an application that does not read the tag believes its insert committed.
    const amb = await inProcess.start({ pool: { mode: 'transaction', size: 1 }, logging: { level: 'info' } });
    const c = await ambassadorClient(amb.port, DB);
    try {
      await c.query('begin');
      const { rows } = await c.query<{ pid: number }>('insert into pa_rows values (3) returning pg_backend_pid() as pid');
      const terminated = await admin.query<{ done: boolean }>('select pg_terminate_backend($1, 5000) as done', [rows[0]!.pid]);
      assert.equal(terminated.rows[0]!.done, true, 'the backend exited');
      // The close reaches the ambassador before the COMMIT does: it logs the loss of a client idle in a transaction.
      await lossLogged(amb.logs, 5_000);
      const commit = await settle(c.query('commit'));
      assert.equal(commit.status, 'rejected', `COMMIT answered ${commit.status === 'fulfilled' ? commit.value.command : ''} with no error`);
      assert.match(codeOf(commit.reason), LOST);
      const after = await c.query<{ n: number }>('select count(*)::int as n from pa_rows where n = 3');
      assert.equal(after.rows[0]!.n, 0, 'nothing committed, and the connection goes on outside a transaction');
    } finally {
      await c.end().catch(() => {});
    }
  });

  test('postgres.js: a prepared query run again after ALTER TABLE returns the new column, also when its statement was closed to make room meanwhile', { timeout: TEST_TIMEOUT_MS }, async () => {
    // A statement re-created on a server (closed to make room, or the client moved to a server
    // that never had it) is parsed again from the client's Parse: after DDL it has another result
    // type, and no server says 0A000 "cached plan must not change result type", which Postgres
    // says to a client whose statement outlived the DDL. postgres.js binds a statement it
    // described once without describing it again and decodes each row by the columns it cached
    // (postgres.js src/connection.js DataRow): it returned the row without the new column.
    // Held on the server, the same run gets 0A000 and postgres.js prepares it again (the test
    // 'postgres.js: a prepared query executed again after ALTER TABLE returns the new column'
    // in txn-pooling.test.ts). Now the re-creation describes the statement and compares its
    // shape with the one the client was shown (result-shapes.ts): 0A000 as from Postgres.
    const amb = await inProcess.start({ pool: { mode: 'transaction', size: 1 }, logging: { level: 'info' } });
    await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('drop table if exists pa_shape; create table pa_shape (a int); insert into pa_shape values (1)'));
    const sql = postgres({ host: '127.0.0.1', port: amb.port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, prepare: true, idle_timeout: 0, fetch_types: false, onnotice: () => {} });
    const filler = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      assert.deepEqual([...(await sql`select * from pa_shape where a = ${1}`)], [{ a: 1 }]);
      // 256 other statements on the one server connection: the first is closed to make room.
      filler.write(Array.from({ length: SERVER_CAPACITY }, (_, k) => [parse(`f${k}`, statementText(k)), bind(`f${k}`, ['0']), EXECUTE, SYNC]).flat());
      for (let k = 0; k < SERVER_CAPACITY; k++) assert.equal((await answerOf(filler)).at(-1), 'Z(I)');
      await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('alter table pa_shape add column b int default 7'));
      assert.deepEqual([...(await sql`select * from pa_shape where a = ${1}`)], [{ a: 1, b: 7 }]);
    } finally {
      filler.destroy();
      await sql.end({ timeout: 1 });
    }
  });

  test('statements left outdated by ALTER TABLE count among the 256 a server connection keeps', { timeout: TEST_TIMEOUT_MS }, async () => {
    // statements.ts markStale (after 0A000, txn-forwarder.ts noteStaleStatement) deletes the
    // statement from server.statements, which the bound counts, and notes it in
    // staleStatements; it is closed only when it is prepared again (preparation.ts refreshed).
    // A text no client runs again after a migration keeps its place on the server uncounted, so
    // the connection holds more than 256 (as many more as such texts).
    const { raw } = await onOneServer();
    const held = async (): Promise<string> => {
      raw.write(encodeQuery('select count(*) from pg_prepared_statements'));
      return (await answerOf(raw)).join(' ');
    };
    try {
      await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('drop table if exists pa_grow; create table pa_grow (a int); insert into pa_grow values (1)'));
      const outdated = Array.from({ length: 8 }, (_, i) => `select *, ${i} as i from pa_grow where a = $1::int`);
      raw.write(outdated.flatMap((text, i) => [parse(`o${i}`, text), bind(`o${i}`, ['1']), EXECUTE, SYNC]));
      for (let i = 0; i < outdated.length; i++) assert.equal((await answerOf(raw)).join(' '), `1 2 D(1|${i}) C(SELECT 1) Z(I)`);
      await withClient(directConfig(topology, DB, { application_name: DIRECT_APP }), (c) => c.query('alter table pa_grow add column b int default 7'));
      // A Bind in a request that does not describe its portal is not retried: 0A000, as from Postgres.
      raw.write(outdated.flatMap((_, i) => [bind(`o${i}`, ['1']), EXECUTE, SYNC]));
      for (let i = 0; i < outdated.length; i++) assert.equal((await answerOf(raw)).join(' '), 'E(ERROR 0A000) Z(I)', `o${i}`);
      raw.write(Array.from({ length: SERVER_CAPACITY }, (_, k) => [parse(`f${k}`, statementText(k)), bind(`f${k}`, ['0']), EXECUTE, SYNC]).flat());
      for (let k = 0; k < SERVER_CAPACITY; k++) assert.equal((await answerOf(raw)).at(-1), 'Z(I)');
      assert.equal(await held(), `T(count) D(${SERVER_CAPACITY}) C(SELECT 1) Z(I)`);
    } finally {
      raw.destroy();
    }
  });

  test('a Parse of a name the client already holds is refused with 42P05, and the name keeps its text', { timeout: TEST_TIMEOUT_MS }, async () => {
    // request-builder.ts onParse sets the client's name to the new statement whatever it held:
    // Postgres refuses the Parse (42P05) and skips the rest up to Sync, the ambassador runs the
    // new text under the old name. Only a client that re-prepares by mistake sees it.
    const { raw } = await onOneServer();
    try {
      raw.write([parse('s1', 'select $1::int * 11 as v'), bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(11) C(SELECT 1) Z(I)');
      raw.write([parse('s1', 'select $1::int * 13 as v'), bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 42P05) Z(I)');
      raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '2 D(22) C(SELECT 1) Z(I)', 'still the first text');
      // In a transaction block the refusal fails the transaction, as in Postgres.
      raw.write([encodeQuery('begin'), parse('s1', 'select $1::int * 13 as v'), SYNC, encodeQuery('select 1'), encodeQuery('rollback')]);
      assert.equal(await answered(raw), 'C(BEGIN) Z(T)');
      assert.equal(await answered(raw), 'E(ERROR 42P05) Z(E)');
      assert.equal(await answered(raw), 'E(ERROR 25P02) Z(E)');
      assert.equal(await answered(raw), 'C(ROLLBACK) Z(I)');
      // A name whose Parse failed on the server is not held: it can be parsed again.
      raw.write([parse('s2', 'select n from pa_no_such_table'), SYNC]);
      assert.equal(await answered(raw), '1 Z(I)', 'answered without a server (reported when first run)');
      raw.write([parse('s3', 'select n from pa_no_such_table'), bind('s3', []), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 42P01) Z(I)');
      raw.write([parse('s3', 'select 3 as v'), bind('s3', []), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(3) C(SELECT 1) Z(I)');
    } finally {
      raw.destroy();
    }
  });
});

describe('DEALLOCATE and DISCARD ALL forget only where they run', () => {
  // A DEALLOCATE or DISCARD ALL that does not run (refused, skipped, or answered with an error
  // by the ambassador) leaves the client its names, as Postgres does.
  // request-builder.ts forgot every name the client prepared when it read DEALLOCATE ALL or
  // DISCARD ALL, and txn-forwarder.ts forgot every statement of the server connection when it
  // sent it, whether the server then ran it or not. Postgres refuses DISCARD ALL in a
  // transaction block (25001), either in a failed one (25P02), and skips it after an error
  // earlier in the same Query or extended-protocol request: then the client keeps its names (a
  // Bind of one got 26000 from the ambassador), and the server its statements (the ambassador,
  // believing them gone, sent a Parse of their text again: 42P05 from the server, for any client).
  const text = 'select $1::int * 21 as v';
  /** How many statements the one server connection holds. */
  const held = async (raw: RawClient): Promise<string> => {
    raw.write(encodeQuery('select count(*) from pg_prepared_statements'));
    return answered(raw);
  };

  /**
   * Runs `body` on an ambassador with one server connection holding `text`, as s1 for one client
   * (`raw`) and o1 for another (`other`).
   */
  async function withTwoClients(body: (raw: RawClient, other: RawClient) => Promise<void>): Promise<void> {
    const { raw, port } = await onOneServer();
    const other = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      raw.write([parse('s1', text), bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(21) C(SELECT 1) Z(I)');
      other.write([parse('o1', text), bind('o1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(other), '1 2 D(21) C(SELECT 1) Z(I)');
      await body(raw, other);
    } finally {
      raw.destroy();
      other.destroy();
    }
  }

  /** The answers to `messages` (of `exchanges` exchanges) sent inside a transaction block that is then rolled back. */
  async function inBlock(raw: RawClient, messages: Buffer[], exchanges: number): Promise<string[]> {
    raw.write([encodeQuery('begin'), ...messages, encodeQuery('rollback')]);
    const got: string[] = [];
    for (let i = 0; i < exchanges + 2; i++) got.push(await answered(raw));
    assert.equal(got.shift(), 'C(BEGIN) Z(T)');
    assert.equal(got.pop(), 'C(ROLLBACK) Z(I)');
    return got;
  }

  let parsedAgain = 1;
  /**
   * The server's statement is taken as held (a Parse of its text under a new name is answered
   * here: sent, the server refuses it with 42P05; a Bind of one believed gone works either way,
   * as preparation.ts closes a statement before making it again), the client's names stay, and
   * the server holds the statement once.
   */
  async function keptEverything(raw: RawClient, other: RawClient, why: string): Promise<void> {
    const again = `o${++parsedAgain}`;
    other.write([parse(again, text), bind(again, ['4']), EXECUTE, SYNC]);
    assert.equal(await answered(other), '1 2 D(84) C(SELECT 1) Z(I)', `${why}: the server's statement stays: parsing its text again makes no second one`);
    other.write([bind('o1', ['3']), EXECUTE, SYNC]);
    assert.equal(await answered(other), '2 D(63) C(SELECT 1) Z(I)', `${why}: another client's name stays`);
    raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
    assert.equal(await answered(raw), '2 D(42) C(SELECT 1) Z(I)', `${why}: the client's name stays`);
    assert.equal(await held(raw), 'T(count) D(1) C(SELECT 1) Z(I)', why);
  }

  const dropByExecute = (sql: string): Buffer[] => [parse('', sql), bind('', []), EXECUTE];

  test('DISCARD ALL refused inside a transaction block forgets nothing: the names work after ROLLBACK', { timeout: TEST_TIMEOUT_MS }, async () => {
    await withTwoClients(async (raw, other) => {
      assert.deepEqual(await inBlock(raw, [encodeQuery('discard all')], 1), ['E(ERROR 25001) Z(E)']);
      await keptEverything(raw, other, 'simple Query');
      // In the extended protocol, with a Parse behind it that the server skips.
      assert.deepEqual(await inBlock(raw, [...dropByExecute('discard all'), parse('s3', text), bind('s3', ['5']), EXECUTE, SYNC], 1), ['1 2 E(ERROR 25001) Z(E)']);
      raw.write([bind('s3', ['5']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'the Parse skipped made nothing');
      await keptEverything(raw, other, 'extended protocol');
    });
  });

  test('DEALLOCATE ALL inside a failed transaction block forgets nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    await withTwoClients(async (raw, other) => {
      const failed = ['E(ERROR 22012) Z(E)', 'E(ERROR 25P02) Z(E)'];
      assert.deepEqual(await inBlock(raw, [encodeQuery('select 1/0'), encodeQuery('deallocate all')], 2), failed);
      await keptEverything(raw, other, 'simple Query');
      assert.deepEqual(await inBlock(raw, [encodeQuery('select 1/0'), ...dropByExecute('deallocate all'), SYNC], 2), failed);
      await keptEverything(raw, other, 'extended protocol');
    });
  });

  test('what is pipelined behind a refused DEALLOCATE ALL sees the names it kept, as in Postgres', { timeout: TEST_TIMEOUT_MS }, async () => {
    // request-builder.ts forgets the names where it reads DEALLOCATE ALL, and what the client
    // sent behind it was read before its answer came, without them: a Bind of s1 went as a name
    // nothing has (26000, where Postgres answers 25P02 in the failed block and runs it after
    // ROLLBACK), a Parse of s1 made a new statement (Postgres: 42P05), and a Close of s1 closed
    // nothing, so the refusal gave s1 back to a client that had closed it (so did SQL DEALLOCATE,
    // sent to the server, where the statement has another name: 26000).
    await withTwoClients(async (raw, other) => {
      const failed = ['C(BEGIN) Z(T)', 'E(ERROR 22012) Z(E)', 'E(ERROR 25P02) Z(E)'];
      const refusedThen = async (messages: Buffer[], exchanges: number): Promise<string[]> => {
        raw.write([encodeQuery('begin'), encodeQuery('select 1/0'), encodeQuery('deallocate all'), ...messages]);
        const got: string[] = [];
        for (let i = 0; i < exchanges + 3; i++) got.push(await answered(raw));
        assert.deepEqual(got.splice(0, 3), failed);
        return got;
      };
      const use = [bind('s1', ['2']), EXECUTE, SYNC];
      assert.deepEqual(await refusedThen([...use, encodeQuery('rollback')], 2), ['E(ERROR 25P02) Z(E)', 'C(ROLLBACK) Z(I)'], 'in the failed block');
      assert.deepEqual(await refusedThen([encodeQuery('rollback'), ...use], 2), ['C(ROLLBACK) Z(I)', '2 D(42) C(SELECT 1) Z(I)'], 'after ROLLBACK');
      assert.deepEqual(await refusedThen([encodeQuery('rollback'), parse('s1', 'select 1'), SYNC], 2), ['C(ROLLBACK) Z(I)', 'E(ERROR 42P05) Z(I)'], 'a Parse of the name');
      await keptEverything(raw, other, 'used behind it');
      assert.deepEqual(await refusedThen([encodeQuery('rollback'), encodeTarget(FrontendType.Close, 'S', 's1'), SYNC], 2), ['C(ROLLBACK) Z(I)', '3 Z(I)'], 'a Close of the name');
      raw.write(use);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'closed: gone');
      raw.write([parse('s1', text), SYNC]);
      assert.equal(await answered(raw), '1 Z(I)');
      assert.deepEqual(await refusedThen([encodeQuery('rollback'), encodeQuery('deallocate s1'), ...use], 3), ['C(ROLLBACK) Z(I)', 'C(DEALLOCATE) Z(I)', 'E(ERROR 26000) Z(I)'], 'SQL DEALLOCATE of the name');
    });
  });

  test('DEALLOCATE ALL skipped after an error earlier in its Query or request forgets nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    await withTwoClients(async (raw, other) => {
      raw.write(encodeQuery('select 1/0; deallocate all'));
      assert.equal(await answered(raw), 'E(ERROR 22012) Z(I)');
      await keptEverything(raw, other, 'simple Query');
      raw.write([...dropByExecute('select 1/0'), ...dropByExecute('deallocate all'), SYNC]);
      assert.equal(await answered(raw), '1 E(ERROR 22012) Z(I)', 'at its Bind (constants are folded when it is planned)');
      await keptEverything(raw, other, 'extended protocol');
    });
  });

  test('DEALLOCATE ALL that runs drops the names and the server’s statements, also in a block rolled back; names and texts can be parsed again', { timeout: TEST_TIMEOUT_MS }, async () => {
    await withTwoClients(async (raw, other) => {
      assert.deepEqual(await inBlock(raw, [encodeQuery('deallocate all')], 1), ['C(DEALLOCATE ALL) Z(T)']);
      assert.equal(await held(raw), 'T(count) D(0) C(SELECT 1) Z(I)', 'not transactional, as in Postgres');
      raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)', 'the name is gone');
      other.write([bind('o1', ['3']), EXECUTE, SYNC]);
      assert.equal(await answered(other), '2 D(63) C(SELECT 1) Z(I)', 'another client’s statement is made again');
      raw.write([parse('s1', 'select $1::int * 22 as v'), bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(44) C(SELECT 1) Z(I)', 'the name can be parsed again');
      assert.equal(await held(raw), 'T(count) D(2) C(SELECT 1) Z(I)');
      // A Parse behind it in the same request, of a text the server held: made again there.
      raw.write([...dropByExecute('deallocate all'), parse('s2', text), bind('s2', ['5']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 C(DEALLOCATE ALL) 1 2 D(105) C(SELECT 1) Z(I)');
      assert.equal(await held(raw), 'T(count) D(1) C(SELECT 1) Z(I)');
      other.write([bind('o1', ['4']), EXECUTE, SYNC]);
      assert.equal(await answered(other), '2 D(84) C(SELECT 1) Z(I)');
      raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), 'E(ERROR 26000) Z(I)');
    });
  });

  test('DEALLOCATE name, DEALLOCATE ALL and DISCARD ALL answered with the loss of the transaction’s server forget nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The SQL DEALLOCATE of a statement the client prepared through the protocol is answered by
    // the ambassador (request-builder.ts endQueryWithEffects), which forgot the name when it read
    // it; a request the ambassador answers with an error instead (answerLost, failHead) left it
    // forgotten, where Postgres, refusing it, keeps the statement.
    const amb = await inProcess.start({ pool: { mode: 'transaction', size: 1 }, logging: { level: 'info' } });
    const raw = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      raw.write([parse('s1', text), bind('s1', ['1']), EXECUTE, SYNC]);
      assert.equal(await answered(raw), '1 2 D(21) C(SELECT 1) Z(I)');
      for (const sql of ['deallocate s1', 'deallocate all', 'discard all']) {
        raw.write(encodeQuery('begin; select pg_backend_pid()'));
        const pid = /D\((\d+)\)/.exec(await answered(raw))?.[1];
        assert.ok(pid !== undefined, 'the server’s pid');
        const losses = lossesLogged(amb.logs);
        await admin.query('select pg_terminate_backend($1, 5000)', [Number(pid)]);
        await lossLogged(amb.logs, 5_000, losses);
        raw.write(encodeQuery(sql));
        assert.match(await answered(raw), /^E\(ERROR (57P01|08\w{3})\) Z\(E\)$/, sql);
        raw.write(encodeQuery('rollback'));
        assert.equal(await answered(raw), 'C(ROLLBACK) Z(I)');
        raw.write([bind('s1', ['2']), EXECUTE, SYNC]);
        assert.equal(await answered(raw), '2 D(42) C(SELECT 1) Z(I)', `${sql}: the name stays`);
      }
    } finally {
      raw.destroy();
    }
  });
});
