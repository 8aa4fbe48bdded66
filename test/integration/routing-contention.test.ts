// Read/write splitting under transaction pooling and contention: dozens of postgres.js, pg and raw
// protocol clients pipeline reads, writes and transactions through ambassadors whose pools hold 2
// server connections per host, so nearly every request waits for a lease and the ambassador keeps
// moving clients between replica and primary leases. Each answer says where it ran
// (pg_is_in_recovery(), inet_server_port(), pg_backend_pid()) and whose it is (client id and a
// per-client sequence number), and every one is checked: the client's own, in order, once, with
// the SQLSTATE and the skips Postgres gives; rows written are compared with what the clients were
// acknowledged.
//
// Scenarios, all seeded (PA_ROUTING_SEED replays a run's mix):
// - the mix on the shared cluster: reads before any write of a pipeline run on a replica, writes
//   on the primary exactly once, a plain BEGIN's transaction on the primary, a BEGIN READ ONLY one
//   on one replica session, and no write is ever refused by a replica (the safety net is silent);
// - readYourWrites 'lsn' on a private cluster whose replicas apply WAL 1 s late: every client's
//   count of its own rows, read at any point of its pipelines, is exactly what it wrote so far
//   (with 'off' the same reads come out stale, which shows the check can fail);
// - the 25006 safety net under load: a STABLE function that calls a VOLATILE one that inserts
//   (the classifier trusts pg_proc and takes the call for a read) is called by many clients, alone
//   or pipelined with other work: the call succeeds on the primary exactly once, or, only when a
//   read shared its replica lease, fails with 25006 and writes nothing.
// Last, the smallest forms of the bugs the mixes found.
//
// The ambassadors run as child processes (the production build): this process only carries the
// clients.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { CLIENT_PASSWORD, SpawnedAmbassadors, viaAmbassador, type SpawnedAmbassador } from '../support/ambassador.ts';
import { createTestDatabase, directConfig, dropTestDatabase, withClient } from '../support/pooling.ts';
import { bind, clientRandoms, codeOf, columnNames, DESCRIBE_PORTAL, EXECUTE, Findings, FLUSH, NO_TYPES, rowValues, within } from '../support/battery.ts';
import { sample, scrape, type Samples } from '../support/metrics.ts';
import { routingOverrides, waitForReplay } from '../support/routing.ts';
import { loginScram, type RawClient, type WireMessage } from '../support/raw-client.ts';
import { eventually, getTopology, startCluster, type LocalCluster, type PgServerInfo, type Topology } from '../support/topology.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../../src/protocol/frontend.ts';

const DB = 'pa_routing_contention';
const SEED = Number(process.env.PA_ROUTING_SEED ?? 20_251_126);
const clientRandom = clientRandoms(SEED);
/** Server connections per host (and database, user): the primary and each replica have this many. */
const POOL_SIZE = 2;
/** The private cluster's replicas apply WAL this late: a read there right after a write misses it. */
const APPLY_DELAY = '1s';
/** How long one round of a client may wait for all its answers before they count as lost. */
const ROUND_DEADLINE_MS = 15_000;
/** A backstop: a test stuck past this fails (after() then stops the ambassadors, which ends its clients). */
const TEST_TIMEOUT_MS = 90_000;
/** Columns naming the server and session that ran a statement. */
const WHERE = 'pg_is_in_recovery() as recovery, inet_server_port() as port, pg_backend_pid() as pid';
const SCHEMA = `
  create table pa_writes (run text not null, client int not null, seq int not null, primary key (run, client, seq));
  create function pa_sneaky_write(p_run text, p_client int, p_seq int) returns int language plpgsql volatile as $$
    begin insert into pa_writes values (p_run, p_client, p_seq); return p_seq; end $$;
  -- STABLE in pg_proc, so the classifier takes a call for a read; it writes through the VOLATILE one.
  create function pa_sneaky(p_run text, p_client int, p_seq int) returns int language plpgsql stable as $$
    begin return pa_sneaky_write(p_run, p_client, p_seq); end $$;
`;

/** A cluster this file writes in (DB, with SCHEMA). */
interface Cluster {
  topology: Topology;
}

let shared: Cluster;
let delayed: Cluster;
let delayedCluster: LocalCluster | undefined;
const spawned = new SpawnedAmbassadors();

before(async () => {
  const topology = await getTopology();
  // The private cluster starts alongside the shared one's schema set-up.
  const [sharedCluster, privateCluster] = await Promise.all([
    prepareCluster(topology),
    startCluster({ replicas: 2, replicaConf: { recovery_min_apply_delay: APPLY_DELAY } }).then(async (started) => {
      delayedCluster = started;
      return prepareCluster(started.describe());
    }),
  ]);
  shared = sharedCluster;
  delayed = privateCluster;
});

after(async () => {
  await spawned.stopAll();
  if (shared) await dropTestDatabase(shared.topology, DB).catch(() => {});
  await delayedCluster?.stop();
});

/**
 * Creates DB with SCHEMA on the primary, directly (the ambassadors start later and find pa_sneaky
 * STABLE in pg_proc), and waits until the replicas have it (1 s late on the delayed cluster).
 */
async function prepareCluster(topology: Topology): Promise<Cluster> {
  await createTestDatabase(topology, DB);
  await withClient(directConfig(topology, DB), (c) => c.query(SCHEMA));
  await waitForReplay(topology, { timeoutMs: 30_000 });
  return { topology };
}

// ---- ambassadors -------------------------------------------------------------------------------

interface Target {
  amb: SpawnedAmbassador;
  cluster: Cluster;
  adminPort: number;
}

/** A child ambassador with transaction pooling and read/write splitting over every server of `cluster`. */
function startSplitting(cluster: Cluster, routing: Record<string, unknown> = {}): Promise<Target> {
  return startSplittingWith(cluster, {}, routing);
}

async function startSplittingWith(cluster: Cluster, pool: Record<string, unknown>, routing: Record<string, unknown> = {}): Promise<Target> {
  const overrides = routingOverrides(cluster.topology, { pool: { size: POOL_SIZE, acquireTimeout: '30s', ...pool }, routing });
  const amb = await spawned.start(cluster.topology, {
    ...overrides,
    listen: { maxClientConnections: 1000, loginTimeout: '30s' },
    // Probes every 200 ms (replayed positions for read-your-writes), but a probe slowed by the load
    // does not take a replica out of the rotation: reads at the head of a pipeline must reach one.
    health: { interval: '200ms', timeout: '5s', failureThreshold: 3 },
    shutdown: { timeout: '5s' },
    logging: { level: 'info' },
  });
  const admin = /"admin":"[^"]*:(\d+)"/.exec(amb.output());
  assert.ok(admin, `no admin address in the ambassador's output: ${amb.output().slice(0, 2000)}`);
  const target = { amb, cluster, adminPort: Number(admin[1]) };
  await rolesKnown(target);
  return target;
}

async function metricsOf(target: Target): Promise<string> {
  return (await fetch(`http://127.0.0.1:${target.adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
}

/**
 * Waits until the health loop has found the primary and both replicas (roles are 'auto' in the
 * config). It probes with the first client's login: one client goes first.
 */
async function rolesKnown(target: Target): Promise<void> {
  const { primary, replicas } = target.cluster.topology;
  await withClient(viaAmbassador(target.amb.port, { database: DB, connectionTimeoutMillis: 30_000 }) as pg.ClientConfig, (c) => c.query('select 1'));
  const hasRole = (now: Samples, server: PgServerInfo, role: string): boolean => sample(now, 'pg_ambassador_host_role', { host: `${server.host}:${server.port}`, role }) === 1;
  await eventually(
    async () => {
      const now = await scrape(target.adminPort);
      return hasRole(now, primary, 'primary') && replicas.every((r) => hasRole(now, r, 'replica')) ? true : undefined;
    },
    { what: 'the ambassador to know the primary and both replicas', timeoutMs: 15_000, intervalMs: 50 },
  );
}

/** Waits for a server longer than 1 ms so far (the ambassador's histogram): proof the load was contended. */
async function longWaits(target: Target): Promise<number> {
  const text = await metricsOf(target);
  const value = (pattern: RegExp): number => {
    const match = pattern.exec(text);
    assert.ok(match, `${pattern} not in /metrics`);
    return Number(match[1]);
  };
  return value(/^pg_ambassador_pool_wait_seconds_count(?:\{\})? (\S+)$/m) - value(/^pg_ambassador_pool_wait_seconds_bucket\{le="0\.001"\} (\S+)$/m);
}

/** Log lines of the 25006 safety net (a replica refused a statement as read-only) so far. */
function safetyNetLines(target: Target): number {
  return target.amb.output().split('\n').filter((line) => /refused .*read-only/i.test(line)).length;
}

// ---- units of work -----------------------------------------------------------------------------

/**
 * What a client does, numbered per client (`seq`):
 * - read: a row with its id and tag `${id}:${seq}`, and where it ran;
 * - write: an insert of (run, id, seq) returning (id, seq) and where it ran;
 * - div-zero: 22012 (a read); skip (raw): 22012, and the read behind it up to Sync skipped;
 * - multi: one simple Query inserting and then selecting (a write);
 * - rw-commit / rw-rollback: BEGIN, insert, select (or 22012), COMMIT (or ROLLBACK);
 * - ro-txn: BEGIN READ ONLY, two selects (one server session, one transaction), COMMIT;
 * - ro-write: BEGIN READ ONLY, an insert refused with 25006, ROLLBACK;
 * - count: how many rows of this run the client has (readYourWrites: exactly what it wrote so far);
 *   ro-count: the same inside BEGIN READ ONLY ... COMMIT;
 * - sneaky: pa_sneaky(), a write the classifier takes for a read.
 */
type Kind = 'read' | 'write' | 'div-zero' | 'skip' | 'multi' | 'rw-commit' | 'rw-rollback' | 'ro-txn' | 'ro-write' | 'count' | 'ro-count' | 'sneaky';

/** Kinds whose first statement the classifier calls a write: a pipeline moves to the primary there. */
const SWITCHING: ReadonlySet<Kind> = new Set(['write', 'multi', 'rw-commit', 'rw-rollback']);
/** Kinds that add a row of the client's when they succeed. */
const LANDING: ReadonlySet<Kind> = new Set(['write', 'multi', 'rw-commit', 'sneaky']);
/** Kinds that run on a replica lease when at the head of the queue (what a refused sneaky may have shared its lease with). */
const READING: ReadonlySet<Kind> = new Set(['read', 'div-zero', 'skip', 'ro-txn', 'ro-write', 'count', 'ro-count']);
const TRANSACTIONS: ReadonlySet<Kind> = new Set(['rw-commit', 'rw-rollback', 'ro-txn', 'ro-write', 'ro-count']);
const READ_ONLY: ReadonlySet<Kind> = new Set(['ro-txn', 'ro-write', 'ro-count']);

type Row = Record<string, string>;
/** `n` of a count row: checked against what the client has written so far, not a fixed value. */
const COUNT = '#count';
type Want = { rows: Row[] } | { error: string } | { command: string };

/** One statement, with $n parameters (inlined as literals where sent in the simple protocol). */
interface Step {
  text: string;
  params: string[];
  want: Want;
  /** The transaction status after it (ReadyForQuery), as raw clients check it. */
  status: 'I' | 'T' | 'E';
  /** Transaction control: postgres.js runs it itself (sql.begin). */
  control?: true;
  /** One simple Query only (several statements): sent as it is, never with parameters. */
  simple?: true;
}

interface Unit {
  kind: Kind;
  seq: number;
  steps: Step[];
  /** First of its round: nothing of the client's is queued or running when it is sent. */
  atHead: boolean;
  /** No write-classified unit before it in its pipeline: it runs on the lease its round began with. */
  beforeSwitch: boolean;
  /** sneaky: a read may share its replica lease (pipelined right before or after it), and so get the 25006. */
  mayBeRefused: boolean;
}

const READ_TEXT = `select $1::int as me, $2::text as tag, ${WHERE}`;
const INSERT_TEXT = `insert into pa_writes (run, client, seq) values ($1, $2::int, $3::int) returning client, seq, ${WHERE}`;
const DIV_TEXT = 'select $1::int / ($1::int - $1::int) as q';
const RO_TEXT = `select $1::int as me, $2::text as tag, ${WHERE}, now()::text as at`;
const COUNT_TEXT = `select count(*)::int as n, $2::text as tag, ${WHERE} from pa_writes where run = $1 and client = $3::int`;

const tagOf = (id: number, seq: number): string => `${id}:${seq}`;

/** The statements of a unit of client `id` in `run`. */
function stepsOf(kind: Kind, run: string, id: number, seq: number): Step[] {
  const tag = tagOf(id, seq);
  const me = String(id);
  const read = (status: 'I' | 'T'): Step => ({ text: READ_TEXT, params: [me, tag], want: { rows: [{ me, tag }] }, status });
  const insert = (status: 'I' | 'T'): Step => ({ text: INSERT_TEXT, params: [run, me, String(seq)], want: { rows: [{ client: me, seq: String(seq) }] }, status });
  const div = (status: 'I' | 'E'): Step => ({ text: DIV_TEXT, params: [me], want: { error: '22012' }, status });
  const control = (text: string, command: string, status: 'I' | 'T'): Step => ({ text, params: [], want: { command }, status, control: true });
  switch (kind) {
    case 'read':
      return [read('I')];
    case 'write':
      return [insert('I')];
    case 'div-zero':
    case 'skip':
      return [div('I')];
    case 'count':
      return [{ text: COUNT_TEXT, params: [run, tag, me], want: { rows: [{ n: COUNT, tag }] }, status: 'I' }];
    case 'ro-count':
      return [control('begin read only', 'BEGIN', 'T'), { text: COUNT_TEXT, params: [run, tag, me], want: { rows: [{ n: COUNT, tag }] }, status: 'T' }, control('commit', 'COMMIT', 'I')];
    case 'multi': {
      const text = `insert into pa_writes (run, client, seq) values ('${run}', ${id}, ${seq}) returning client, seq, ${WHERE}; select ${id} as me, '${tag}' as tag, ${WHERE}`;
      return [{ text, params: [], want: { rows: [{ client: me, seq: String(seq) }, { me, tag }] }, status: 'I', simple: true }];
    }
    case 'rw-commit':
      return [control('begin', 'BEGIN', 'T'), insert('T'), read('T'), control('commit', 'COMMIT', 'I')];
    case 'rw-rollback':
      return [control('begin', 'BEGIN', 'T'), insert('T'), div('E'), control('rollback', 'ROLLBACK', 'I')];
    case 'ro-txn': {
      const select = (n: number): Step => ({ text: RO_TEXT, params: [me, `${tag}/${n}`], want: { rows: [{ me, tag: `${tag}/${n}` }] }, status: 'T' });
      return [control('begin read only', 'BEGIN', 'T'), select(1), select(2), control('commit', 'COMMIT', 'I')];
    }
    case 'ro-write':
      return [control('begin read only', 'BEGIN', 'T'), { ...insert('T'), want: { error: '25006' }, status: 'E' }, control('rollback', 'ROLLBACK', 'I')];
    case 'sneaky': {
      // The quoted tag makes every call's text its own: a text a replica refused is sent to the
      // primary from then on (and so are the texts of its literal shape), never refused again.
      const text = `select pa_sneaky($1, $2::int, $3::int) as seq, '${tag}' as tag, ${WHERE}`;
      return [{ text, params: [run, me, String(seq)], want: { rows: [{ seq: String(seq), tag }] }, status: 'I' }];
    }
  }
}

type Mix = ReadonlyArray<readonly [Kind, number]>;

function pickKind(mix: Mix, x: number): Kind {
  const total = mix.reduce((sum, [, w]) => sum + w, 0);
  let at = x * total;
  for (const [kind, weight] of mix) {
    if (at < weight) return kind;
    at -= weight;
  }
  return mix[0]![0];
}

/**
 * How a client sends a round: one unit after the other (pg), or all at once in the order planned
 * (raw, postgres.js). postgres.js may run a transaction (sql.begin) before queries issued ahead of
 * it, so a transaction is a round of its own there (`ownTransactions`); only raw clients send
 * 'skip' (two statements in one extended-protocol exchange).
 */
interface Sending {
  pipelined: boolean;
  ownTransactions: boolean;
  skips: boolean;
}

/**
 * Rounds of 1-6 units, then a lone read: an answer duplicated or left over shows up there. A round
 * is one pipeline for the clients that pipeline.
 */
function planRounds(random: () => number, spec: LoadSpec, id: number, sending: Sending): Unit[][] {
  const { pipelined, ownTransactions } = sending;
  const kinds: Kind[][] = [];
  for (let r = 0; r < spec.rounds; r++) {
    const size = 1 + Math.floor(random() * 6);
    let round: Kind[] = [];
    const cut = (): void => {
      if (round.length > 0) kinds.push(round);
      round = [];
    };
    for (let i = 0; i < size; i++) {
      let kind = pickKind(spec.mix, random());
      if (kind === 'skip' && !sending.skips) kind = 'div-zero';
      if (ownTransactions && TRANSACTIONS.has(kind)) cut();
      round.push(kind);
      if (ownTransactions && TRANSACTIONS.has(kind)) cut();
    }
    cut();
  }
  kinds.push(['read']);
  let seq = 0;
  return kinds.map((round) => {
    let switched = false;
    return round.map((kind, i) => {
      const neighbours = [round[i - 1], round[i + 1]];
      const unit: Unit = {
        kind,
        seq: ++seq,
        steps: stepsOf(kind, spec.run, id, seq),
        atHead: !pipelined || i === 0,
        beforeSwitch: !pipelined || !switched,
        mayBeRefused: kind === 'sneaky' && pipelined && neighbours.some((k) => k === 'sneaky' || READING.has(k!)),
      };
      switched ||= SWITCHING.has(kind) || kind === 'sneaky';
      return unit;
    });
  });
}

// ---- outcomes and their checks -------------------------------------------------------------------

/** What one statement got: rows (every result set's), the last command tag, or an error's SQLSTATE. */
interface Outcome {
  rows: Row[];
  command: string | null;
  error: string | null;
  /** Run by the driver itself (postgres.js's BEGIN / COMMIT / ROLLBACK): not checked. */
  managed?: true;
}

const MANAGED: Outcome = { rows: [], command: null, error: null, managed: true };

type Mode = 'split' | 'ryw' | 'sneaky';

/** One load's shared state: where its units ran, and what it found. */
interface LoadContext {
  run: string;
  mode: Mode;
  topology: Topology;
  findings: Findings;
  /** (client, seq) of every unit acknowledged as having written its row. */
  landed: string[];
  units: number;
  right: number;
  /** Units that ran where they were checked for: reads on replicas, read-only transactions on replicas, sneaky calls refused. */
  seen: { replicaReads: Set<number>; readOnlyOnReplica: number; refused: number; sneakyOk: number };
}

interface ClientState {
  who: string;
  id: number;
  /** Rows of this run the client was acknowledged so far (what a count must see with readYourWrites). */
  written: number;
}

function normalize(value: unknown): string {
  if (value === true) return 't';
  if (value === false) return 'f';
  if (value === null || value === undefined) return 'NULL';
  return String(value);
}

function rowsOf(rows: ReadonlyArray<Record<string, unknown>>): Row[] {
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, normalize(v)])));
}

/** Whether the outcome is what the step wants ('' when it is, else what differs). */
function differs(step: Step, got: Outcome, client: ClientState): string {
  const want = step.want;
  if ('error' in want) return got.error === want.error ? '' : `expected error ${want.error}, got ${show(got)}`;
  if (got.error !== null) return `failed: ${got.error}`;
  if ('command' in want) return got.command === want.command ? '' : `expected ${want.command}, got ${show(got)}`;
  if (got.rows.length !== want.rows.length) return `expected ${JSON.stringify(want.rows)}, got ${show(got)}`;
  for (const [i, expected] of want.rows.entries()) {
    for (const [key, value] of Object.entries(expected)) {
      const wanted = value === COUNT ? String(client.written) : value;
      if (got.rows[i]![key] !== wanted) return `expected ${key} ${wanted} in ${JSON.stringify(want.rows)}, got ${show(got)}`;
    }
  }
  return '';
}

function show(got: Outcome): string {
  return got.error !== null ? `error ${got.error}` : `${JSON.stringify(got.rows)} ${got.command ?? ''}`.trim();
}

/** Checks one unit's outcomes: each step's answer, then where the unit ran. Updates what the client has written. */
function checkUnit(ctx: LoadContext, client: ClientState, unit: Unit, outcomes: Outcome[]): void {
  const name = `${unit.kind} #${unit.seq}`;
  const fail = (what: string): void => ctx.findings.add(client.who, `${name}: ${what}`);
  ctx.units++;
  if (unit.kind === 'sneaky' && outcomes[0]?.error === '25006') {
    if (!unit.mayBeRefused) return fail('refused with 25006 although nothing shared its replica lease (it should have run again on the primary)');
    ctx.seen.refused++;
    ctx.right++;
    return;
  }
  for (const [i, step] of unit.steps.entries()) {
    const got = outcomes[i];
    if (got === undefined) return fail(`no outcome for statement ${i + 1}`);
    if (got.managed) continue;
    const wrong = differs(step, got, client);
    if (wrong !== '') return fail(`statement ${i + 1} (${step.text.slice(0, 40)}): ${wrong}`);
  }
  const wrong = wrongPlace(ctx, unit, outcomes.flatMap((o) => o.rows));
  if (wrong !== '') return fail(wrong);
  if (unit.kind === 'sneaky') ctx.seen.sneakyOk++;
  if (LANDING.has(unit.kind)) {
    client.written++;
    ctx.landed.push(`${client.id}:${unit.seq}`);
  }
  ctx.right++;
}

/** Where a unit's rows say it ran, against where it had to ('' when right); notes in ctx.seen where reads ran. */
function wrongPlace(ctx: LoadContext, unit: Unit, rows: Row[]): string {
  const primary = String(ctx.topology.primary.port);
  const replicas = ctx.topology.replicas.map((r) => String(r.port));
  const onPrimary = (row: Row): boolean => row.recovery === 'f' && row.port === primary;
  const onReplica = (row: Row): boolean => row.recovery === 't' && replicas.includes(row.port!);
  const places = JSON.stringify(rows.map((r) => [r.recovery, r.port, r.pid]));
  const oneSession = rows.every((r) => r.port === rows[0]!.port && r.pid === rows[0]!.pid);
  switch (unit.kind) {
    case 'write':
    case 'multi':
    case 'sneaky':
      return rows.every(onPrimary) ? '' : `a write ran off the primary: ${places}`;
    case 'rw-commit':
    case 'rw-rollback':
      return rows.every(onPrimary) && oneSession ? '' : `a read-write transaction ran off the primary or on two sessions: ${places}`;
    case 'ro-txn': {
      if (!oneSession || rows[0]!.at !== rows[1]!.at) return `a read-only transaction ran on two sessions or transactions: ${JSON.stringify(rows)}`;
      if (rows.every(onReplica)) ctx.seen.readOnlyOnReplica++;
      else if (ctx.mode === 'split' && unit.atHead) return `a read-only transaction at the head of the queue ran off the replicas: ${places}`;
      return '';
    }
    case 'read':
    case 'count':
    case 'ro-count': {
      if (rows.every(onReplica)) for (const r of rows) ctx.seen.replicaReads.add(Number(r.port));
      else if (ctx.mode === 'split' && unit.beforeSwitch) return `a read with no write ahead of it in its pipeline ran off the replicas: ${places}`;
      return '';
    }
    default:
      return '';
  }
}

// ---- clients -------------------------------------------------------------------------------------

/** A client of a load: runs one round (pipelined where it can) and returns every unit's outcomes, in order. */
interface LoadClient {
  state: ClientState;
  sending: Sending;
  round(units: readonly Unit[]): Promise<Outcome[][]>;
}

type Closers = Array<() => Promise<unknown>>;

const failed = (err: unknown): Outcome => ({ rows: [], command: null, error: codeOf(err) });

/** postgres.js, one connection: a round's units are issued at once (pipelined); transactions by sql.begin. */
async function postgresJsClient(port: number, id: number, prepare: boolean, closers: Closers): Promise<LoadClient> {
  const sql = postgres({ host: '127.0.0.1', port, username: 'app', password: CLIENT_PASSWORD, database: DB, max: 1, prepare, idle_timeout: 0, connect_timeout: 30, fetch_types: false, onnotice: () => {} });
  closers.push(() => sql.end({ timeout: 1 }));
  const run = async (q: postgres.TransactionSql | postgres.Sql, step: Step): Promise<Outcome> => {
    try {
      // Without prepared statements postgres.js parses unnamed, describes and flushes, then binds.
      const simple = step.simple === true;
      const result = simple ? await q.unsafe(inline(step.text, step.params)).simple() : await q.unsafe(step.text, step.params, { prepare });
      // A simple Query of several statements answers with one result per statement.
      const results = (step.simple && Array.isArray(result[0]) ? result : [result]) as unknown as Array<postgres.RowList<postgres.Row[]>>;
      return { rows: results.flatMap((r) => rowsOf([...r])), command: results.at(-1)?.command ?? null, error: null };
    } catch (err) {
      return failed(err);
    }
  };
  const transaction = async (unit: Unit): Promise<Outcome[]> => {
    const inner = unit.steps.filter((s) => !s.control);
    const outcomes: Outcome[] = [];
    const mode = READ_ONLY.has(unit.kind) ? 'read only' : 'read write';
    await sql
      .begin(mode, async (tx) => {
        for (const step of inner) {
          const got = await run(tx, step);
          outcomes.push(got);
          if (got.error !== null) throw Object.assign(new Error(got.error), { code: got.error });
        }
      })
      .catch(() => {});
    // BEGIN, then the statements that ran, then COMMIT / ROLLBACK (run by postgres.js).
    return [MANAGED, ...outcomes, MANAGED];
  };
  await sql`select 1 as ready`;
  return {
    state: { who: `client ${id} (postgres.js, prepare: ${prepare})`, id, written: 0 },
    sending: { pipelined: true, ownTransactions: true, skips: false },
    round: (units) =>
      Promise.all(units.map((unit) => (TRANSACTIONS.has(unit.kind) ? transaction(unit) : Promise.all(unit.steps.map((step) => run(sql, step)))))),
  };
}

/** pg: one statement after the other; unnamed statements, named ones (by seq) or the simple protocol with literals. */
async function pgClient(port: number, id: number, findings: Findings, closers: Closers): Promise<LoadClient> {
  const who = `client ${id} (pg)`;
  const c = new pg.Client(viaAmbassador(port, { database: DB, connectionTimeoutMillis: 30_000 }) as pg.ClientConfig);
  c.on('error', (err) => findings.add(who, `connection error: ${codeOf(err)} ${err.message}`));
  closers.push(() => c.end());
  await c.connect();
  const run = async (step: Step, seq: number): Promise<Outcome> => {
    try {
      const style = step.simple || step.params.length === 0 ? 'simple' : (['simple', 'unnamed', 'named'] as const)[seq % 3]!;
      const result: pg.QueryResult | pg.QueryResult[] =
        style === 'simple'
          ? await c.query(inline(step.text, step.params))
          : style === 'named' && !step.text.includes("'")
            ? await c.query({ name: `s${hash(step.text)}`, text: step.text, values: step.params })
            : await c.query(step.text, step.params);
      const results = Array.isArray(result) ? result : [result];
      return { rows: results.flatMap((r) => rowsOf(r.rows)), command: results.at(-1)?.command ?? null, error: null };
    } catch (err) {
      return failed(err);
    }
  };
  return {
    state: { who, id, written: 0 },
    sending: { pipelined: false, ownTransactions: false, skips: false },
    // A transaction's failing statement is its last before ROLLBACK: every statement is sent, as an application would.
    round: async (units) => {
      const all: Outcome[][] = [];
      for (const unit of units) {
        const outcomes: Outcome[] = [];
        for (const step of unit.steps) outcomes.push(await run(step, unit.seq));
        all.push(outcomes);
      }
      return all;
    },
  };
}

function hash(text: string): string {
  let h = 0x811c9dc5;
  for (const ch of text) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h.toString(16);
}

/** The text with $n replaced by quoted literals (for the simple protocol). */
function inline(text: string, params: readonly string[]): string {
  return text.replace(/\$(\d+)/g, (_all, n: string) => `'${params[Number(n) - 1]!.replaceAll("'", "''")}'`);
}

// ---- raw protocol --------------------------------------------------------------------------------

/** Parse (unnamed), Bind, Describe, Execute: one statement of an extended-protocol exchange (no Sync). */
function extended(step: Step): Buffer[] {
  return [encodeParse('', step.text, NO_TYPES), bind('', step.params), DESCRIBE_PORTAL, EXECUTE];
}

/** How a raw client sends a step: transaction control and several statements as simple Queries, others by seq. */
function rawMessages(unit: Unit, step: Step): Buffer[] {
  if (unit.kind === 'skip') {
    // 22012 at the first Execute: Postgres skips the second statement up to Sync.
    const read: Step = { text: READ_TEXT, params: [String(unit.seq), 'skipped'], want: { rows: [] }, status: 'I' };
    return [...extended(step), ...extended(read), encodeSync()];
  }
  if (step.control || step.simple || unit.seq % 2 === 0) return [encodeQuery(inline(step.text, step.params))];
  return [...extended(step), encodeSync()];
}

/** Message types allowed in each kind of answer (simple Query, or one extended statement up to Sync), as letters. */
const SHAPES = {
  simpleRows: /^(TD*C)+Z$/,
  simpleError: /^(TD*C)*(TD*)?EZ$/,
  simpleCommand: /^CZ$/,
  extendedRows: /^12TD*CZ$/,
  // Postgres plans at Bind: an error there (a constant folded with the parameters) comes before BindComplete.
  extendedError: /^1(2T?D*)?EZ$/,
};

/** Reads one answer, up to ReadyForQuery: its outcome, the letters of its messages, and the transaction status. */
async function readRawAnswer(raw: RawClient): Promise<{ outcome: Outcome; trace: string; status: string }> {
  const outcome: Outcome = { rows: [], command: null, error: null };
  let names: string[] = [];
  let trace = '';
  for (;;) {
    const m = await raw.nextMessage(ROUND_DEADLINE_MS);
    trace += m.type;
    switch (m.type) {
      case 'T':
        names = columnNames(m);
        break;
      case 'D':
        outcome.rows.push(Object.fromEntries(rowValues(m).map((v, i) => [names[i] ?? `?${i}`, v])));
        break;
      case 'C':
        outcome.command = m.payload.toString('utf8', 0, m.payload.length - 1).split(' ')[0]!;
        break;
      case 'E':
        outcome.error = m.error!.code;
        break;
      case 'Z':
        return { outcome, trace, status: m.payload.toString('latin1') };
    }
    if (trace.length > 20) throw new Error(`an answer of more than 20 messages: ${trace}`);
  }
}

/**
 * A raw protocol client: a whole round goes in one write; each statement's answer is read in
 * order, its messages' shape and transaction status checked. An answer out of shape means the
 * stream is out of step from there: the client stops.
 */
async function rawClient(port: number, id: number, closers: Closers): Promise<LoadClient> {
  const raw = await loginScram(port, 'app', CLIENT_PASSWORD, { database: DB });
  closers.push(async () => raw.destroy());
  return {
    state: { who: `client ${id} (raw)`, id, written: 0 },
    sending: { pipelined: true, ownTransactions: false, skips: true },
    round: async (units) => {
      raw.write(units.flatMap((unit) => unit.steps.flatMap((step) => rawMessages(unit, step))));
      const all: Outcome[][] = [];
      for (const unit of units) {
        const outcomes: Outcome[] = [];
        for (const [i, step] of unit.steps.entries()) {
          const { outcome, trace, status } = await readRawAnswer(raw);
          const extendedAnswer = unit.kind === 'skip' || !(step.control || step.simple || unit.seq % 2 === 0);
          const shape = outcome.error !== null ? (extendedAnswer ? SHAPES.extendedError : SHAPES.simpleError) : step.control ? SHAPES.simpleCommand : extendedAnswer ? SHAPES.extendedRows : SHAPES.simpleRows;
          if (!shape.test(trace) || status !== step.status) {
            throw new Error(`${unit.kind} #${unit.seq}, statement ${i + 1}: answered ${trace} ending in status ${status} (${show(outcome)}), expected ${shape} and status ${step.status}`);
          }
          outcomes.push(outcome);
        }
        all.push(outcomes);
      }
      return all;
    },
  };
}

// ---- the load ------------------------------------------------------------------------------------

interface LoadSpec {
  run: string;
  mode: Mode;
  mix: Mix;
  clients: { postgresJs: number; pg: number; raw: number };
  rounds: number;
}

/** Connects every client, then runs them all at once through their seeded rounds, checking every unit. */
async function runLoad(target: Target, spec: LoadSpec): Promise<LoadContext> {
  const ctx: LoadContext = {
    run: spec.run,
    mode: spec.mode,
    topology: target.cluster.topology,
    findings: new Findings(`seed ${SEED} (PA_ROUTING_SEED)`),
    landed: [],
    units: 0,
    right: 0,
    seen: { replicaReads: new Set(), readOnlyOnReplica: 0, refused: 0, sneakyOk: 0 },
  };
  const { postgresJs, pg: pgCount, raw } = spec.clients;
  const total = postgresJs + pgCount + raw;
  const closers: Closers = [];
  const port = target.amb.port;
  try {
    const connect = (id: number): Promise<LoadClient> => {
      if (id < postgresJs) return postgresJsClient(port, id, id % 2 === 0, closers);
      if (id < postgresJs + pgCount) return pgClient(port, id, ctx.findings, closers);
      return rawClient(port, id, closers);
    };
    const clients = await within(ROUND_DEADLINE_MS, `seed ${SEED}: connecting ${total} clients`, Promise.all(Array.from({ length: total }, (_, id) => connect(id))));
    await Promise.all(
      clients.map(async (client) => {
        const { state } = client;
        const plan = planRounds(clientRandom(spec.run, state.id), spec, state.id, client.sending);
        for (const round of plan) {
          let results: Outcome[][];
          try {
            results = await within(ROUND_DEADLINE_MS, `${state.who}, units #${round.map((u) => u.seq).join(',')}`, client.round(round));
          } catch (err) {
            ctx.findings.add(state.who, `round #${round.map((u) => u.seq).join(',')} gave up: ${(err as Error).message}`);
            return;
          }
          round.forEach((unit, i) => checkUnit(ctx, state, unit, results[i] ?? []));
        }
      }),
    );
  } finally {
    await Promise.all(closers.splice(0).map((close) => within(5_000, 'closing a client', close()).catch(() => {})));
  }
  return ctx;
}

/** The rows of `run` on the primary, as 'client:seq', sorted as `sortMarks` sorts. */
async function rowsWritten(cluster: Cluster, run: string): Promise<string[]> {
  const { rows } = await withClient(directConfig(cluster.topology, DB), (c) => c.query<{ client: number; seq: number }>('select client, seq from pa_writes where run = $1 order by client, seq', [run]));
  return rows.map((r) => `${r.client}:${r.seq}`);
}

function sortMarks(marks: readonly string[]): string[] {
  return marks
    .map((m) => m.split(':').map(Number) as [number, number])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map(([c, s]) => `${c}:${s}`);
}

/** The load's verdict: every unit right, and exactly the acknowledged writes in the table. */
async function assertLoadRight(ctx: LoadContext, cluster: Cluster): Promise<void> {
  assert.equal(ctx.findings.count, 0, ctx.findings.report());
  assert.equal(ctx.right, ctx.units, `seed ${SEED}: ${ctx.units} units, ${ctx.right} found right`);
  assert.deepEqual(await rowsWritten(cluster, ctx.run), sortMarks(ctx.landed), `seed ${SEED}: the rows of run ${ctx.run} differ from the writes acknowledged`);
}

// ---- the batteries -------------------------------------------------------------------------------

const CLIENTS = { postgresJs: 16, pg: 12, raw: 20 };
const TOTAL_CLIENTS = CLIENTS.postgresJs + CLIENTS.pg + CLIENTS.raw;

const SPLIT_MIX: Mix = [
  ['read', 30],
  ['write', 18],
  ['div-zero', 6],
  ['skip', 4],
  ['multi', 5],
  ['rw-commit', 9],
  ['rw-rollback', 5],
  ['ro-txn', 10],
  ['ro-write', 4],
];

describe(`read/write splitting: ${TOTAL_CLIENTS} clients on pools of ${POOL_SIZE} per host (seed ${SEED})`, () => {
  let target: Target;

  before(async () => {
    target = await startSplitting(shared);
  });

  test('a seeded mix of pipelined reads, writes, errors and transactions: every answer the client’s own, each where it must run', { timeout: TEST_TIMEOUT_MS }, async () => {
    const waitsBefore = await longWaits(target);
    const netBefore = safetyNetLines(target);
    const ctx = await runLoad(target, { run: 'split', mode: 'split', mix: SPLIT_MIX, clients: CLIENTS, rounds: 8 });
    await assertLoadRight(ctx, shared);
    assert.equal(safetyNetLines(target) - netBefore, 0, `seed ${SEED}: a replica refused a statement as read-only: a write was sent to a replica`);
    // The premises: reads reached both replicas, read-only transactions ran there, and clients waited for the pools.
    assert.deepEqual([...ctx.seen.replicaReads].sort(), shared.topology.replicas.map((r) => r.port).sort(), 'reads did not reach both replicas');
    assert.ok(ctx.seen.readOnlyOnReplica >= 20, `only ${ctx.seen.readOnlyOnReplica} read-only transactions ran on a replica`);
    const waits = (await longWaits(target)) - waitsBefore;
    assert.ok(waits >= 100, `only ${waits} waits for a server over 1 ms: the load was not contended enough to test anything`);
  });

  test('the 25006 safety net under load: a writing call taken for a read runs on the primary once, or is refused only when a read shared its lease', { timeout: TEST_TIMEOUT_MS }, async () => {
    const netBefore = safetyNetLines(target);
    const mix: Mix = [
      ['sneaky', 40],
      ['read', 25],
      ['write', 15],
      ['div-zero', 5],
      ['ro-txn', 5],
      ['rw-commit', 10],
    ];
    const ctx = await runLoad(target, { run: 'sneaky', mode: 'sneaky', mix, clients: CLIENTS, rounds: 4 });
    await assertLoadRight(ctx, shared);
    const net = safetyNetLines(target) - netBefore;
    assert.ok(net >= 50, `the safety net acted ${net} times: the calls were not taken for reads`);
    assert.ok(ctx.seen.sneakyOk >= 50, `only ${ctx.seen.sneakyOk} sneaky calls succeeded`);
  });
});

describe(`readYourWrites 'lsn': replicas ${APPLY_DELAY} behind, ${TOTAL_CLIENTS} clients (seed ${SEED})`, () => {
  const mix: Mix = [
    ['count', 40],
    ['write', 20],
    ['multi', 5],
    ['rw-commit', 10],
    ['rw-rollback', 5],
    ['div-zero', 5],
    ['ro-count', 8],
  ];

  test('every client counts exactly its own acknowledged writes, wherever its reads run', { timeout: TEST_TIMEOUT_MS }, async () => {
    const target = await startSplitting(delayed, { readYourWrites: 'lsn', maxReplicaLag: '64MB' });
    try {
      const waitsBefore = await longWaits(target);
      const ctx = await runLoad(target, { run: 'ryw', mode: 'ryw', mix, clients: CLIENTS, rounds: 6 });
      await assertLoadRight(ctx, delayed);
      assert.equal(safetyNetLines(target), 0, `seed ${SEED}: a replica refused a statement as read-only: a write was sent to a replica`);
      // The premises: counts ran on replicas too (not all on the primary), and clients waited for the pools.
      assert.ok(ctx.seen.replicaReads.size > 0, 'no count ran on a replica: read-your-writes was not put to the test');
      const waits = (await longWaits(target)) - waitsBefore;
      assert.ok(waits >= 100, `only ${waits} waits for a server over 1 ms: the load was not contended enough to test anything`);
    } finally {
      await spawned.stop(target.amb);
    }
  });

  test("with readYourWrites 'off' the same reads miss writes (the check above can fail)", { timeout: TEST_TIMEOUT_MS }, async () => {
    const target = await startSplitting(delayed, { readYourWrites: 'off', maxReplicaLag: '64MB' });
    try {
      const ctx = await runLoad(target, { run: 'ryw-off', mode: 'ryw', mix: [['write', 1], ['count', 1]], clients: { postgresJs: 0, pg: 4, raw: 0 }, rounds: 3 });
      assert.ok(ctx.findings.count > 0, `every count saw its writes although the replicas apply WAL ${APPLY_DELAY} late`);
      assert.match(ctx.findings.report(), /count #\d+: statement 1 .*expected n /);
    } finally {
      await spawned.stop(target.amb);
    }
  });
});

// ---- bugs the mixes found --------------------------------------------------------------------------

describe('bugs found by the mixes, in their smallest form', () => {
  // Found by the split mix (raw clients pipelining a read-only transaction, then a write). Cause:
  // TxnForwarder.pump (src/frontend/txn-forwarder.ts, the `this.leaseReplica && this.status === 'I'`
  // test) moves off a replica lease only when the server's last ReadyForQuery said 'I'. While the
  // COMMIT of a BEGIN READ ONLY transaction is still in flight that status is 'T' (or 'E'), so what
  // the client pipelined behind the COMMIT (a write, or a plain BEGIN and its writes) is sent to
  // the replica, outside any transaction of the client's, and refused with 25006.
  test('a write pipelined behind the COMMIT of a read-only transaction runs on the primary', { timeout: TEST_TIMEOUT_MS }, async () => {
    const target = await startSplitting(shared);
    const raw = await loginScram(target.amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      raw.write([
        encodeQuery('begin read only'),
        encodeQuery(`select ${WHERE}`),
        encodeQuery('commit'),
        encodeQuery(`insert into pa_writes (run, client, seq) values ('after-read-only', 0, 1) returning client, seq, ${WHERE}`),
      ]);
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await readRawAnswer(raw));
      assert.equal(answers.map((a) => a.status).join(''), 'TTII');
      assert.equal(answers[1]!.outcome.rows[0]?.recovery, 't', 'the read-only transaction ran on the primary: nothing to show');
      const insert = answers[3]!.outcome;
      assert.equal(insert.error, null, `the insert pipelined behind the COMMIT failed: ${show(insert)}`);
      assert.deepEqual(insert.rows.map((r) => [r.client, r.seq, r.recovery]), [['0', '1', 'f']]);
      assert.deepEqual(await rowsWritten(shared, 'after-read-only'), ['0:1']);
    } finally {
      raw.destroy();
      await spawned.stop(target.amb);
    }
  });

  // Found by the safety-net mix (postgres.js with prepare: false). Without prepared statements
  // postgres.js sends Parse (unnamed), Describe, Flush; then, once described, Bind, Execute, Sync.
  // The second request is watched on the replica (txn-forwarder.ts send(): `behindReads`) and,
  // refused, re-run alone on the primary (rerunAfterRefusal -> requeue): its Bind of the unnamed
  // statement has no Parse to go with it (request-builder.ts onBind leaves `unnamedParse` null
  // while the Parse's exchange is open), so the primary binds whatever unnamed statement its
  // connection holds: 26000 when none, 08P01 when the parameters do not fit, and another client's
  // statement when they do. Here that is an insert of a row the client never asked for.
  test('a read refused by a replica after an unsynced Parse runs on the primary as the client parsed it', { timeout: TEST_TIMEOUT_MS }, async () => {
    // One connection per host: the primary's is the one the other client used.
    const target = await startSplittingWith(shared, { size: 1 });
    const other = await loginScram(target.amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    const victim = await loginScram(target.amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      // The other client leaves an unnamed insert of three parameters on the primary's connection.
      const foreign = 'insert into pa_writes (run, client, seq) values ($1, $2::int, $3::int + 1000) returning client, seq';
      other.write([encodeParse('', foreign, NO_TYPES), bind('', ['unsynced-parse', '9', '9']), DESCRIBE_PORTAL, EXECUTE, encodeSync()]);
      assert.deepEqual((await readRawAnswer(other)).outcome.rows, [{ client: '9', seq: '1009' }]);
      // The victim: pa_sneaky() as postgres.js sends it without prepared statements.
      const sneaky = `select pa_sneaky($1, $2::int, $3::int) as seq, ${WHERE}`;
      victim.write([encodeParse('', sneaky, NO_TYPES), encodeTarget(FrontendType.Describe, 'S', ''), FLUSH]);
      const described = [];
      for (let i = 0; i < 3; i++) described.push((await victim.nextMessage(ROUND_DEADLINE_MS)).type);
      assert.deepEqual(described, ['1', 't', 'T']);
      victim.write([bind('', ['unsynced-parse', '1', '1']), EXECUTE, encodeSync()]);
      // Its RowDescription came with the Describe: the values are those of (seq, recovery, port, pid).
      const { outcome, trace } = await readRawAnswer(victim);
      const values = outcome.rows.map((r) => Object.values(r).slice(0, 2));
      assert.equal(outcome.error, null, `the call failed (${trace}): ${show(outcome)}`);
      assert.deepEqual([outcome.command, values], ['SELECT', [['1', 'f']]], `the call answered ${trace}: ${show(outcome)}`);
      assert.deepEqual(await rowsWritten(shared, 'unsynced-parse'), ['1:1', '9:1009'], 'the rows written');
    } finally {
      other.destroy();
      victim.destroy();
      await spawned.stop(target.amb);
    }
  });

  // Found while writing the read-your-writes mix, by reading TxnForwarder.onReady: the commit
  // position of a write is read only when the write's ReadyForQuery finds nothing queued behind
  // it (onReady -> captureCommitThenRelease). A request the ambassador answers itself (SHOW or SET
  // ambassador.*, a lone Parse and Sync) queued behind the write is answered in pump(), whose
  // last line gives the lease back with releaseLease() (txn-forwarder.ts, the `leaseUnused`
  // test at the end of pump): the position is never read, the client's reads go to any replica
  // again, and SHOW ambassador.min_lsn, pipelined right behind the write, does not count it.
  test("readYourWrites 'lsn': a read after a write with SHOW ambassador.min_lsn pipelined behind it sees the write", { timeout: TEST_TIMEOUT_MS }, async () => {
    const target = await startSplitting(delayed, { readYourWrites: 'lsn', maxReplicaLag: '64MB' });
    const raw = await loginScram(target.amb.port, 'app', CLIENT_PASSWORD, { database: DB });
    try {
      raw.write([encodeQuery(`insert into pa_writes (run, client, seq) values ('show-behind-write', 0, 1)`), encodeQuery('show ambassador.min_lsn')]);
      const [written, shown] = [await readRawAnswer(raw), await readRawAnswer(raw)];
      assert.equal(written.outcome.command, 'INSERT', show(written.outcome));
      raw.write(encodeQuery(`select count(*)::int as n, ${WHERE} from pa_writes where run = 'show-behind-write'`));
      const read = (await readRawAnswer(raw)).outcome;
      assert.deepEqual(read.rows.map((r) => r.n), ['1'], `the read after the write (on ${read.rows[0]?.port}, in recovery: ${read.rows[0]?.recovery}) missed it`);
      assert.notEqual(shown.outcome.rows[0]?.['ambassador.min_lsn'], '0/0', 'SHOW ambassador.min_lsn right behind the write');
    } finally {
      raw.destroy();
      await spawned.stop(target.amb);
    }
  });
});
