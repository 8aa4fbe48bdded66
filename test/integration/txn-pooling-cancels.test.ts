// Cancel requests under pooling, against real Postgres with pg and raw protocol clients. A cancel
// reaches the ambassador on a connection of its own, carrying the key the ambassador gave the
// client; the ambassador forwards it to the server that runs the client's request (a new
// connection upstream, so it lands some time later), or, when the request still waits for a
// server, answers it 57014 and never runs it. What must hold, whatever the timing:
// - a query is stopped only by a cancel of its own client that was on its way while the query
//   was (nobody else's cancel, and no cancel that landed on a server after it changed hands);
// - a canceled statement did all or nothing: an insert answered 57014 left no row, one answered
//   with success left its row;
// - nothing hangs, the client goes on after, and the pool's connections all come back.
//
// Scenarios (the load is seeded: PA_CANCEL_SEED replays a run's mix):
// - 24 clients on a pool of 3 (transaction mode), half of them canceling their own statements at
//   random moments: while waiting for the pool, while running, right as the answer arrives;
// - read/write splitting: cancels of reads running on the replicas stop those reads only;
// - a cancel inside a transaction block: 57014, then 25P02 until ROLLBACK, and the server is reused;
// - a cancel during the ambassador's own exchange (the statement it prepares on a new server,
//   blocked on a lock), and ten cancels in a row for one query or one queued request;
// - session pooling: a cancel stops its own session only, also when the client leaves at once
//   and its server goes to the next session while the cancel is on its way.
// - a cancel that lands late: the client's cancel connection closes only once the cancel has
//   reached the server (as Postgres closes it), so the statement the client sends after that
//   close, on the server its transaction block holds, is not stopped; and nothing sent behind the
//   CancelRequest on that connection is read (a StartupMessage there is no login), a client that
//   half-closes it still waits for the cancel, and a graceful shutdown lets a cancel on its way
//   land, and says nothing on its connection.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { CLIENT_PASSWORD, type TestAmbassador } from '../support/ambassador.ts';
import { clientRandoms, codeOf, columnNames, describeError, Findings, rowValues, summary, within } from '../support/battery.ts';
import {
  ambassadorClient,
  cancelOwn,
  DelayingConnector,
  directConfig,
  outcomeOf,
  runningUpstream,
  serverBackends,
  testDatabaseFile,
  withClient,
} from '../support/pooling.ts';
import { loginScram, RawClient, type WireMessage } from '../support/raw-client.ts';
import { routingOverrides, superuserOn, waitForReplay } from '../support/routing.ts';
import { eventually, type PgServerInfo } from '../support/topology.ts';
import { encodeQuery } from '../../src/protocol/frontend.ts';
import { encodeCancelRequest, encodeStartupMessage } from '../../src/protocol/startup.ts';

const DB = 'pa_txn_cancels';
const SEED = Number(process.env.PA_CANCEL_SEED ?? 20_251_125);
const clientRandom = clientRandoms(SEED);
/** How long one statement may take to be answered before it counts as hung. */
const QUERY_DEADLINE_MS = 15_000;
/** A backstop per test: one stuck past this fails (after() stops the ambassadors, ending its clients). */
const TEST_TIMEOUT_MS = 60_000;

const file = testDatabaseFile(DB, async (topology) => {
  await withClient(directConfig(topology, DB), (c) =>
    c.query(`
      create table pa_block (n int);
      create table pa_locked (n int); insert into pa_locked values (1);
      create table pa_queued (n int);`),
  );
  await waitForReplay(topology);
});
const { ambassadors } = file;

function txnAmbassador(pool: Record<string, unknown>, connector?: DelayingConnector): Promise<TestAmbassador> {
  return ambassadors.start(
    { pool: { mode: 'transaction', acquireTimeout: '30s', ...pool }, listen: { maxClientConnections: 1000 }, logging: { level: 'info' }, admin: { users: ['app'] } },
    connector,
  );
}

function pgClient(amb: TestAmbassador): Promise<pg.Client> {
  return ambassadorClient(amb.port, DB);
}

function rawClient(amb: TestAmbassador): Promise<RawClient> {
  return loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: DB });
}

/** Every pool of the ambassador with no lease out and nobody waiting (eventually: a release may wait for a cancel to land). */
async function poolsSettle(amb: TestAmbassador): Promise<void> {
  await eventually(async () => (amb.ambassador.pool.stats().every((p) => p.active === 0 && p.waiting === 0) ? true : undefined), {
    what: `every server connection back in its pool: ${JSON.stringify(amb.ambassador.pool.stats().map((p) => [p.key, p.active, p.waiting]))}`,
  });
}

/** The first ErrorResponse's SQLSTATE of an answer, or 'ran'. */
function rawOutcome(messages: readonly WireMessage[]): string {
  return messages.find((m) => m.type === 'E')?.error?.code ?? 'ran';
}

const elapsedSince = (start: number): number => performance.now() - start;

// ---- the load --------------------------------------------------------------------------------

const LOAD_CLIENTS = 24;
/** Clients 0..RAW_CLIENTS-1 speak the raw protocol (simple queries); the rest are pg clients (extended protocol, a named insert). */
const RAW_CLIENTS = 8;
const STATEMENTS_PER_CLIENT = 30;

type Kind = 'sleep' | 'insert' | 'count';

/** One statement of a client and what happened to it. */
interface Statement {
  seq: number;
  kind: Kind;
  /** A cancel of this client was on its way (sent, its connection not yet closed) while the statement was. */
  exposed: boolean;
  /** 'ran', a SQLSTATE, or 'hung'. */
  outcome: string;
  /** The watcher saw it running upstream before its outcome came. */
  started: boolean;
}

/** One load client: its statements, its cancels on their way, and the inserts it was told about. */
interface LoadClient {
  id: number;
  canceler: boolean;
  statements: Statement[];
  /** Statements sent and not yet answered. */
  open: Set<Statement>;
  /** Cancels sent whose connection the ambassador has not closed yet. */
  cancelsOnTheirWay: number;
  cancels: Array<Promise<void>>;
  acknowledged: Set<number>;
  refused: Set<number>;
  run(statement: Statement, sleepMs: number): Promise<void>;
  cancel(): void;
  close(): Promise<void>;
}

/** In each statement's text: a client has one statement open at a time, so its id names it in pg_stat_activity. */
const loadTag = (id: number): string => `pa-load-${id}.`;

/**
 * Polls pg_stat_activity (as fast as it answers) for the load's statements running upstream, and
 * tells whoever waits for a client's statement to run (once). What it sees running is marked so.
 */
class RunningWatcher {
  private readonly waiting = new Map<number, { statement: Statement; then?: () => void }>();
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly superuser: pg.Client) {
    this.loop = this.poll();
  }

  /** `statement` (client `id`'s open one) is marked started once seen running; `then` is called then. */
  watch(id: number, statement: Statement, then?: () => void): void {
    this.waiting.set(id, { statement, ...(then ? { then } : {}) });
  }

  forget(id: number): void {
    this.waiting.delete(id);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async poll(): Promise<void> {
    while (this.running) {
      const { rows } = await this.superuser.query<{ query: string }>(
        `select query from pg_stat_activity where datname = $1 and state = 'active' and query like '%pa-load-%'`,
        [DB],
      );
      for (const { query } of rows) {
        const id = Number(/pa-load-(\d+)\./.exec(query)?.[1]);
        const entry = this.waiting.get(id);
        if (entry === undefined) continue;
        this.waiting.delete(id);
        entry.statement.started = true;
        entry.then?.();
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** The body of each kind: `${seq}` and the client's id are in every answer, checked by the runner. */
function statementSql(id: number, kind: Kind, seq: number, sleepMs: number): string {
  const table = `pa_load_${id}`;
  const sleep = (sleepMs / 1000).toFixed(3);
  switch (kind) {
    case 'sleep':
      return `select ${id} as who, ${seq} as seq from pg_sleep(${sleep}) /* ${loadTag(id)} */`;
    case 'insert':
      return `insert into ${table} select ${seq} from pg_sleep(${sleep}) returning n as seq, ${id} as who /* ${loadTag(id)} */`;
    case 'count':
      return `select ${id} as who, ${seq} as seq, count(*)::int as n from ${table} /* ${loadTag(id)} */`;
  }
}

function newLoadClient(amb: TestAmbassador, id: number, canceler: boolean, findings: Findings, connection: pg.Client | RawClient): LoadClient {
  const who = `client ${id} (${connection instanceof pg.Client ? 'pg' : 'raw'}${canceler ? ', canceler' : ''})`;
  const self: LoadClient = {
    id,
    canceler,
    statements: [],
    open: new Set(),
    cancelsOnTheirWay: 0,
    cancels: [],
    acknowledged: new Set(),
    refused: new Set(),
    async run(statement, sleepMs) {
      self.statements.push(statement);
      self.open.add(statement);
      if (self.cancelsOnTheirWay > 0) statement.exposed = true;
      const row = await answer(statement, sleepMs).catch((err: unknown) => {
        statement.outcome = /no answer within/.test((err as Error).message) ? 'hung' : codeOf(err);
        if (statement.outcome !== '57014') findings.add(who, `statement ${statement.seq} (${statement.kind}): ${describeError(err)}`);
        return null;
      });
      self.open.delete(statement);
      if (row === null) {
        if (statement.kind === 'insert' && statement.outcome === '57014') self.refused.add(statement.seq);
        return;
      }
      statement.outcome = 'ran';
      if (Number(row.who) !== id || Number(row.seq) !== statement.seq) {
        findings.add(who, `statement ${statement.seq} (${statement.kind}) answered for client ${row.who}, statement ${row.seq}`);
      }
      if (statement.kind === 'insert') self.acknowledged.add(statement.seq);
      if (statement.kind === 'count' && Number(row.n) !== self.acknowledged.size) {
        // Every insert before this count was answered, and autocommitted: the count is exact.
        findings.add(who, `statement ${statement.seq}: ${row.n} rows, but ${self.acknowledged.size} inserts were acknowledged`);
      }
    },
    cancel() {
      for (const statement of self.open) statement.exposed = true;
      self.cancelsOnTheirWay++;
      const sent = cancelOwn(amb.port, connection)
        .catch((err: unknown) => findings.add(who, `cancel request: ${describeError(err)}`))
        .finally(() => self.cancelsOnTheirWay--);
      self.cancels.push(sent);
    },
    close: async () => {
      await Promise.all(self.cancels);
      if (connection instanceof pg.Client) await connection.end().catch(() => {});
      else connection.destroy();
    },
  };

  async function answer(statement: Statement, sleepMs: number): Promise<Record<string, string> | null> {
    const sql = statementSql(id, statement.kind, statement.seq, sleepMs);
    const what = `${who} statement ${statement.seq}`;
    if (connection instanceof pg.Client) {
      // Inserts go as one named statement (prepared on each server it lands on), the rest unnamed.
      const query =
        statement.kind === 'insert'
          ? { name: 'pa-insert', text: `insert into pa_load_${id} select $1::int from pg_sleep($2::float8) returning n as seq, ${id} as who /* ${loadTag(id)} */`, values: [statement.seq, sleepMs / 1000] }
          : { text: sql };
      const result = await within(QUERY_DEADLINE_MS, what, connection.query(query));
      return result.rows[0] as Record<string, string>;
    }
    const messages = await connection.query(sql, QUERY_DEADLINE_MS).catch((err: Error) => {
      throw new Error(`${what}: no answer within ${QUERY_DEADLINE_MS} ms (${err.message})`);
    });
    const error = messages.find((m) => m.type === 'E');
    if (error) throw Object.assign(new Error(error.error!.message), { code: error.error!.code });
    const described = messages.find((m) => m.type === 'T');
    const data = messages.find((m) => m.type === 'D');
    if (!described || !data) throw new Error(`${what}: no row in ${messages.map(summary).join(' ')}`);
    const names = columnNames(described);
    const values = rowValues(data);
    return Object.fromEntries(names.map((name, i) => [name, values[i]!]));
  }
  return self;
}

/** A client's statements: a seeded mix; a canceler cancels some while waiting, running, or right as the answer comes. */
async function driveLoadClient(client: LoadClient, watcher: RunningWatcher): Promise<void> {
  const random = clientRandom('load', client.id);
  /** How long the previous statement took from sent to answered (waiting for the pool, then running). */
  let lastLatencyMs = 50;
  for (let seq = 1; seq <= STATEMENTS_PER_CLIENT; seq++) {
    const roll = random();
    const kind: Kind = roll < 0.4 ? 'insert' : roll < 0.75 ? 'sleep' : 'count';
    const sleepMs = Math.floor(random() * 51);
    const statement: Statement = { seq, kind, exposed: false, outcome: 'pending', started: false };
    const cancelRoll = client.canceler ? random() : 1;
    // Spread over the statement's likely life: waiting, running, ending.
    const cancelAfterMs = Math.floor(random() * 1.1 * lastLatencyMs);
    const runningCancelMs = Math.floor(random() * (sleepMs + 10));
    const sentAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    // Seen running upstream: a cancel then lands while it runs, or just after it ended.
    const whileRunning = cancelRoll >= 0.1 && cancelRoll < 0.35 ? () => void (timer = setTimeout(() => client.cancel(), runningCancelMs)) : undefined;
    watcher.watch(client.id, statement, whileRunning);
    const running = client.run(statement, sleepMs);
    if (cancelRoll < 0.1) client.cancel(); // at once: usually still waiting for the pool
    else if (cancelRoll >= 0.35 && cancelRoll < 0.5) timer = setTimeout(() => client.cancel(), cancelAfterMs); // waiting, running, or just over
    await running;
    watcher.forget(client.id);
    lastLatencyMs = elapsedSince(sentAt);
    if (cancelRoll >= 0.5 && cancelRoll < 0.6) client.cancel(); // right as the answer came, the next statement on its heels
    // A cancel still timed when the statement ended goes off during the next (or none), as a late one would.
    if (timer !== undefined && random() < 0.5) clearTimeout(timer);
    if (statement.outcome === 'hung') return; // its connection is in an unknown state: stop here
    const thinkMs = Math.floor(random() * 40); // a pause between statements, so that not every request waits
    if (thinkMs > 0) await new Promise((resolve) => setTimeout(resolve, thinkMs));
  }
}

/** A seeded half of the raw clients (ids below `raw`) and a seeded half of the pg clients. */
function seededHalves(count: number, raw: number): Set<number> {
  const random = clientRandom('cancelers', 0);
  const half = (ids: number[]): number[] =>
    ids
      .map((id) => ({ id, key: random() }))
      .sort((a, b) => a.key - b.key)
      .slice(0, Math.ceil(ids.length / 2))
      .map((entry) => entry.id);
  const ids = Array.from({ length: count }, (_, id) => id);
  return new Set([...half(ids.slice(0, raw)), ...half(ids.slice(raw))]);
}

describe('cancels under load, transaction pooling', () => {
  test(`${LOAD_CLIENTS} clients on a pool of 3, half of each kind canceling their own statements at random: only those stop, all or nothing, and nothing hangs`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const findings = new Findings(`PA_CANCEL_SEED=${SEED}`);
    await withClient(directConfig(file.topology, DB), async (c) => {
      for (let id = 0; id < LOAD_CLIENTS; id++) await c.query(`drop table if exists pa_load_${id}; create table pa_load_${id} (n int primary key)`);
    });
    // Each cancel (and server login) reaches its server 0-15 ms late, as on a loaded network: a statement often ends first.
    const connector = new DelayingConnector(undefined, clientRandom('connector', 0));
    connector.jitterMs = 15;
    const amb = await txnAmbassador({ size: 3 }, connector);
    const cancelers = seededHalves(LOAD_CLIENTS, RAW_CLIENTS);
    const clients = await Promise.all(
      Array.from({ length: LOAD_CLIENTS }, async (_, id) => {
        const canceler = cancelers.has(id);
        const connection = id < RAW_CLIENTS ? await rawClient(amb) : await pgClient(amb);
        return newLoadClient(amb, id, canceler, findings, connection);
      }),
    );
    try {
      const watcher = new RunningWatcher(file.admin);
      await Promise.all(clients.map((c) => driveLoadClient(c, watcher))).finally(() => watcher.stop());
      await Promise.all(clients.map((c) => Promise.all(c.cancels)));

      let canceled = 0;
      for (const client of clients) {
        for (const s of client.statements) {
          if (s.outcome !== '57014') continue;
          canceled++;
          if (!client.canceler) findings.add(`client ${client.id}`, `statement ${s.seq} (${s.kind}) got 57014, but this client never sends a cancel`);
          else if (!s.exposed) findings.add(`client ${client.id}`, `statement ${s.seq} (${s.kind}) got 57014, but none of its client's cancels was on its way while it was`);
        }
      }
      // Each client is still usable, and each table holds exactly the inserts answered with success.
      await Promise.all(
        clients.map(async (client) => {
          const probe: Statement = { seq: STATEMENTS_PER_CLIENT + 1, kind: 'count', exposed: false, outcome: 'pending', started: false };
          await client.run(probe, 0);
          if (probe.outcome !== 'ran') findings.add(`client ${client.id}`, `after the load: ${probe.outcome}`);
        }),
      );
      await withClient(directConfig(file.topology, DB), async (c) => {
        for (const client of clients) {
          const rows = new Set((await c.query(`select n from pa_load_${client.id}`)).rows.map((r: { n: number }) => r.n));
          const missing = [...client.acknowledged].filter((n) => !rows.has(n));
          const canceledButThere = [...client.refused].filter((n) => rows.has(n));
          const unexplained = [...rows].filter((n) => !client.acknowledged.has(n) && !client.refused.has(n));
          if (missing.length > 0) findings.add(`client ${client.id}`, `inserts answered with success but absent: ${missing.join(',')}`);
          if (canceledButThere.length > 0) findings.add(`client ${client.id}`, `inserts answered 57014 but present: ${canceledButThere.join(',')}`);
          if (unexplained.length > 0) findings.add(`client ${client.id}`, `rows no answer accounts for: ${unexplained.join(',')}`);
        }
      });
      await poolsSettle(amb);
      await eventually(async () => ((await serverBackends(file.admin, DB)).every((b) => b.state === 'idle') ? true : undefined), { what: 'every server connection idle upstream' });

      const sent = clients.reduce((n, c) => n + c.cancels.length, 0);
      const count = (which: (s: Statement) => boolean): number => clients.reduce((n, c) => n + c.statements.filter(which).length, 0);
      const exposedRan = count((s) => s.exposed && s.outcome === 'ran');
      const stoppedRunning = count((s) => s.started && s.outcome === '57014');
      t.diagnostic(
        `PA_CANCEL_SEED=${SEED}: ${cancelers.size} cancelers sent ${sent} cancels; ${canceled} statements canceled (${stoppedRunning} of them while running), ${exposedRan} ran though a cancel was on its way`,
      );
      assert.equal(findings.count, 0, findings.report());
      // The mix did what it is for: cancels that stopped statements, waiting and running.
      assert.ok(canceled >= 5, `only ${canceled} statements were canceled by ${sent} cancels (PA_CANCEL_SEED=${SEED})`);
      assert.ok(stoppedRunning >= 3, `only ${stoppedRunning} statements were canceled while running upstream (PA_CANCEL_SEED=${SEED})`);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

// ---- read/write splitting ----------------------------------------------------------------------

/** pid, port and state of the backends of user app in DB on `server` running a statement tagged `tag`. */
async function taggedOn(server: PgServerInfo, tag: string): Promise<Array<{ pid: number; state: string }>> {
  return withClient(superuserOn(file.topology, server), async (c) =>
    (await c.query(`select pid, state from pg_stat_activity where datname = $1 and usename = 'app' and query like $2`, [DB, `%${tag}%`])).rows,
  );
}

describe('cancels with read/write splitting', () => {
  test('cancels of reads running on the replicas stop those reads only, not others on the same replica or the primary', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await ambassadors.start(routingOverrides(file.topology, { pool: { size: 4, acquireTimeout: '30s' }, routing: { readsFromPrimary: 'never' } }));
    // The health loop probes with the first client's login: one client logs in first.
    const writer = await pgClient(amb);
    await writer.query('select 1');
    await eventually(async () => (amb.ambassador.hosts().filter((h) => h.role === 'replica' && h.up).length === file.topology.replicas.length ? true : undefined), {
      what: 'both replicas known',
      timeoutMs: 15_000,
    });
    const random = clientRandom('replicas', 0);
    const READERS = 6;
    const readers = await Promise.all(Array.from({ length: READERS }, (_, i) => (i % 3 === 2 ? rawClient(amb) : pgClient(amb))));
    // A seeded half of the readers is canceled; at least one is and one is not.
    const canceledIndexes = new Set(Array.from({ length: READERS }, (_, i) => i).filter(() => random() < 0.5));
    if (canceledIndexes.size === 0) canceledIndexes.add(0);
    if (canceledIndexes.size === READERS) canceledIndexes.delete(READERS - 1);
    try {
      const started = performance.now();
      const sql = (i: number): string => `select pg_is_in_recovery() as recovery, inet_server_port() as port from pg_sleep(3) /* pa-rw-read-${i} */`;
      const reads = readers.map((reader, i) =>
        reader instanceof pg.Client
          ? reader.query(sql(i)).then(
              (r) => ({ outcome: 'ran', at: elapsedSince(started), port: Number(r.rows[0].port) }),
              (err: unknown) => ({ outcome: codeOf(err), at: elapsedSince(started), port: 0 }),
            )
          : reader.query(sql(i), QUERY_DEADLINE_MS).then((messages) => {
              const row = messages.find((m) => m.type === 'D');
              return { outcome: rawOutcome(messages), at: elapsedSince(started), port: row ? Number(rowValues(row)[1]) : 0 };
            }),
      );
      const write = outcomeOf(writer.query(`insert into pa_block select 1 from pg_sleep(3) /* pa-rw-write */`));
      // Every read running on a replica (none on the primary), and the write on the primary.
      const placed = await eventually(
        async () => {
          const where = await Promise.all(readers.map(async (_, i) => (await Promise.all(file.topology.replicas.map((r) => taggedOn(r, `pa-rw-read-${i} `)))).flat()));
          const onPrimary = (await taggedOn(file.topology.primary, 'pa-rw-write')).filter((b) => b.state === 'active');
          return where.every((w) => w.length === 1 && w[0]!.state === 'active') && onPrimary.length === 1 ? where : undefined;
        },
        { what: 'every read active on a replica and the write on the primary' },
      );
      assert.equal(new Set(placed.map((w) => w[0]!.pid)).size, READERS, 'each read runs on a server of its own');
      const canceledAt = elapsedSince(started);
      await Promise.all([...canceledIndexes].map((i) => cancelOwn(amb.port, readers[i]!)));
      const results = await Promise.all(reads);
      results.forEach((result, i) => {
        if (canceledIndexes.has(i)) {
          assert.equal(result.outcome, '57014', `read ${i} was canceled`);
          assert.ok(result.at - canceledAt < 2_500, `read ${i}: canceled ${Math.round(result.at - canceledAt)} ms after its cancel`);
        } else {
          assert.equal(result.outcome, 'ran', `read ${i} was not canceled, but ended ${result.outcome}`);
          assert.ok(result.at >= 3_000, `read ${i} ended after ${Math.round(result.at)} ms, before its pg_sleep(3)`);
          assert.ok(file.topology.replicas.some((r) => r.port === result.port), `read ${i} ran on port ${result.port}, not a replica`);
        }
      });
      assert.equal(await write, 'ran', 'the write on the primary was canceled');
      for (const [i, reader] of readers.entries()) {
        const again = reader instanceof pg.Client ? outcomeOf(reader.query('select 1')) : reader.query('select 1').then(rawOutcome);
        assert.equal(await again, 'ran', `reader ${i} after the cancels`);
      }
      await poolsSettle(amb);
    } finally {
      for (const reader of readers) reader instanceof pg.Client ? await reader.end().catch(() => {}) : reader.destroy();
      await writer.end().catch(() => {});
    }
  });
});

// ---- transaction blocks --------------------------------------------------------------------------

describe('a cancel inside a transaction block', () => {
  test('gives 57014, the block fails (25P02) until ROLLBACK, nothing of it stays, and the server serves the next clients', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await txnAmbassador({ size: 1 });
    const inBlock = await rawClient(amb);
    const next = await pgClient(amb);
    const later = await rawClient(amb);
    try {
      assert.deepEqual((await inBlock.query('begin')).map(summary), ['C(BEGIN)', 'Z(T)']);
      const pidRow = await inBlock.query(`insert into pa_block values (7); select pg_backend_pid() as pid`);
      const serverPid = Number(rowValues(pidRow.find((m) => m.type === 'D')!)[0]);
      inBlock.write(encodeQuery('select pg_sleep(30) /* pa-block-sleep */'));
      await runningUpstream(file.admin, DB, 'pa-block-sleep');
      // The next client waits for the pool's one server, held by the block.
      const waiting = next.query('select pg_backend_pid() as pid, 2 as two');
      waiting.catch(() => {}); // awaited below; a failure before that ends the client
      await eventually(async () => (amb.ambassador.pool.stats().some((p) => p.waiting > 0) ? true : undefined), { what: 'the next client waiting for the pool' });
      await cancelOwn(amb.port, inBlock);
      assert.deepEqual((await inBlock.answer(5_000)).map(summary), ['T(pg_sleep)', 'E(ERROR 57014)', 'Z(E)']);
      assert.deepEqual((await inBlock.query('select 1')).map(summary), ['E(ERROR 25P02)', 'Z(E)']);
      assert.deepEqual((await inBlock.query('rollback')).map(summary), ['C(ROLLBACK)', 'Z(I)']);
      const nextRow = (await within(QUERY_DEADLINE_MS, 'the next client', waiting)).rows[0];
      assert.equal(nextRow.two, 2);
      assert.equal(Number(nextRow.pid), serverPid, 'the next client ran on the same server connection (pool of one)');
      assert.deepEqual((await later.query('select count(*)::int as n from pa_block where n = 7')).map(summary), ['T(n)', 'D(0)', 'C(SELECT 1)', 'Z(I)']);
      assert.deepEqual((await later.query('begin; select 3 as three; commit')).map(summary), ['C(BEGIN)', 'T(three)', 'D(3)', 'C(SELECT 1)', 'C(COMMIT)', 'Z(I)']);
      assert.deepEqual((await inBlock.query('select 4 as four')).map(summary), ['T(four)', 'D(4)', 'C(SELECT 1)', 'Z(I)']);
      await poolsSettle(amb);
    } finally {
      inBlock.destroy();
      later.destroy();
      await next.end().catch(() => {});
    }
  });

  test(
    'a cancel that lands after its statement ended does not stop the next statement of the block',
    {
      timeout: TEST_TIMEOUT_MS,
    },
    async () => {
      const connector = new DelayingConnector();
      const amb = await txnAmbassador({ size: 1 }, connector);
      const client = await rawClient(amb);
      try {
        assert.deepEqual((await client.query('begin')).map(summary), ['C(BEGIN)', 'Z(T)']);
        client.write(encodeQuery('select pg_sleep(0.3) /* pa-late-own */'));
        await runningUpstream(file.admin, DB, 'pa-late-own');
        connector.delayMs = 1_000;
        await cancelOwn(amb.port, client);
        assert.equal(rawOutcome(await client.answer(5_000)), 'ran', 'the first statement ended before its cancel reached the server');
        assert.deepEqual((await client.query('select pg_sleep(2)', 5_000)).map(summary), ['T(pg_sleep)', 'D()', 'C(SELECT 1)', 'Z(T)']);
        assert.deepEqual((await client.query('commit')).map(summary), ['C(COMMIT)', 'Z(I)']);
      } finally {
        connector.delayMs = 0;
        client.destroy();
      }
    },
  );

  /**
   * A client of a fresh ambassador (pool of 1) running pg_sleep(5), its text marked with `marker`
   * (inside a block when `inBlock`), and a raw connection that has sent the CancelRequest for it,
   * which is on its way: the cancel's connection upstream waits `delayMs` first.
   */
  async function cancelOnItsWay(
    marker: string,
    inBlock: boolean,
    delayMs = 1_000,
  ): Promise<{ amb: TestAmbassador; client: RawClient; canceller: RawClient; done: () => void }> {
    const connector = new DelayingConnector();
    const amb = await txnAmbassador({ size: 1 }, connector);
    const client = await rawClient(amb);
    const canceller = await RawClient.connect(amb.port);
    const done = (): void => {
      connector.delayMs = 0;
      canceller.destroy();
      client.destroy();
    };
    try {
      if (inBlock) assert.deepEqual((await client.query('begin')).map(summary), ['C(BEGIN)', 'Z(T)']);
      client.write(encodeQuery(`select pg_sleep(5) /* ${marker} */`));
      await runningUpstream(file.admin, DB, marker);
      connector.delayMs = delayMs;
      const { processId, secretKey } = client.backendKey!;
      canceller.write(encodeCancelRequest(processId, secretKey));
      await eventually(async () => (amb.ambassador.listener.cancels.pending > 0 ? true : undefined), { what: 'the cancel on its way' });
    } catch (err) {
      done();
      throw err;
    }
    return { amb, client, canceller, done };
  }

  /**
   * Called once the cancel connection of cancelOnItsWay has closed: the cancel had landed by then
   * (none on its way), and the client's statement was canceled by it.
   */
  async function closedOnlyOnceLanded(amb: TestAmbassador, client: RawClient, early: string): Promise<void> {
    assert.ok(amb.ambassador.listener.cancels.pending === 0, early);
    assert.equal(rawOutcome(await client.answer(5_000)), '57014');
  }

  test('bytes behind a CancelRequest, sent while the cancel is on its way, are never read as a login', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The CancelRequest was read alone; a login follows on the same connection.
    const { amb, client, canceller, done } = await cancelOnItsWay('pa-cancel-then-login', true);
    try {
      canceller.write(encodeStartupMessage([['user', 'app'], ['database', DB]]));
      assert.deepEqual((await canceller.readToClose(5_000)).map(summary), [], 'the ambassador answered bytes sent behind a CancelRequest');
      await closedOnlyOnceLanded(amb, client, 'the cancel connection closed before the cancel reached the server');
      assert.deepEqual((await client.query('rollback')).map(summary), ['C(ROLLBACK)', 'Z(I)']);
    } finally {
      done();
    }
  });

  test('a client that half-closes its cancel connection still gets the close only once the cancel has landed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { amb, client, canceller, done } = await cancelOnItsWay('pa-cancel-half-closed', true);
    try {
      // Not a client logging in (SHOW CLIENTS and the clients gauge count by activity).
      assert.equal(amb.ambassador.listener.activity().login, 0, 'the cancel connection counted as a login');
      // As tokio-postgres does: shutdown(SHUT_WR) behind the CancelRequest, then wait for EOF.
      canceller.socket.end();
      await canceller.waitForClose(5_000);
      await closedOnlyOnceLanded(amb, client, 'the half-closed cancel connection was closed before the cancel reached the server');
      assert.deepEqual((await client.query('rollback')).map(summary), ['C(ROLLBACK)', 'Z(I)']);
    } finally {
      done();
    }
  });

  test('SHOW POOLS counts a cancel on its way: the client\'s cancel connection and the server it goes to', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The cancel lands after 3 s, within the 5 s sleep; the console looks before.
    const { amb, client, done } = await cancelOnItsWay('pa-cancel-show-pools', false, 3_000);
    try {
      const admin = await loginScram(amb.port, 'app', CLIENT_PASSWORD, { database: 'ambassador' });
      let pools: WireMessage[];
      try {
        pools = await admin.query('SHOW POOLS');
      } finally {
        admin.destroy();
      }
      const columns = columnNames(pools.find((m) => m.type === 'T')!);
      const row = pools.filter((m) => m.type === 'D').map(rowValues).find((values) => values[0] === DB && values[1] === 'app');
      assert.ok(row, `a pool for ${DB}/app in ${JSON.stringify(pools.map(summary))}`);
      const cancelColumns = ['cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_being_canceled'];
      assert.deepEqual(cancelColumns.map((name) => row[columns.indexOf(name)]), ['1', '0', '1', '0']);
      assert.ok(amb.ambassador.listener.cancels.pending === 1, 'the cancel landed before the console looked: the test proves nothing');
      assert.equal(rawOutcome(await client.answer(5_000)), '57014');
    } finally {
      done();
    }
  });

  test('a shutdown while a cancel is on its way lets it land; the cancel connection hears nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { amb, client, canceller, done } = await cancelOnItsWay('pa-cancel-at-shutdown', false);
    try {
      const stopping = amb.stop();
      assert.deepEqual((await canceller.readToClose(5_000)).map(summary), [], 'the cancel connection was told something');
      // The statement was canceled (not cut off by the shutdown), then the idle client was ended.
      await closedOnlyOnceLanded(amb, client, 'the shutdown closed the cancel connection before the cancel reached the server');
      await stopping;
    } finally {
      done();
    }
  });
});

// ---- the ambassador's own exchange, repeated cancels ---------------------------------------------

describe('cancels during the ambassador’s own work, and repeated', () => {
  test('a cancel while the ambassador prepares the client’s statement on a new server (blocked on a lock) answers 57014; nothing hangs, others unaffected', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await txnAmbassador({ size: 1 });
    const client = await pgClient(amb);
    const bystander = await rawClient(amb);
    const locker = new pg.Client(directConfig(file.topology, DB, { application_name: 'pa-cancels-locker' }));
    locker.on('error', () => {});
    await locker.connect();
    const named = { name: 'pa-locked', text: 'select count(*)::int as n, pg_backend_pid() as pid from pa_locked' };
    try {
      const first = (await client.query(named)).rows[0];
      assert.equal(first.n, 1);
      // The server that holds the statement goes; the next lease is a new server that lacks it.
      await file.admin.query('select pg_terminate_backend($1)', [first.pid]);
      await eventually(async () => (amb.ambassador.pool.stats().every((p) => p.idle === 0 && p.active === 0) ? true : undefined), { what: 'the ambassador to drop the terminated server' });
      await locker.query('begin; lock table pa_locked in access exclusive mode');
      // pg sends only Bind/Execute now: the ambassador parses the statement first, and that Parse waits for the lock.
      const blocked = outcomeOf(client.query(named));
      await eventually(
        async () => (await file.admin.query(`select 1 from pg_stat_activity where datname = $1 and usename = 'app' and wait_event_type = 'Lock'`, [DB])).rows[0],
        { what: 'the ambassador’s Parse waiting for the lock' },
      );
      bystander.write(encodeQuery('select 2 as two'));
      await eventually(async () => (amb.ambassador.pool.stats().some((p) => p.waiting > 0) ? true : undefined), { what: 'the bystander waiting for the pool' });
      await cancelOwn(amb.port, client);
      assert.equal(await within(QUERY_DEADLINE_MS, 'the canceled request', blocked), '57014');
      assert.deepEqual((await bystander.answer(QUERY_DEADLINE_MS)).map(summary), ['T(two)', 'D(2)', 'C(SELECT 1)', 'Z(I)']);
      await locker.query('commit');
      const again = (await within(QUERY_DEADLINE_MS, 'the named statement after the cancel', client.query(named))).rows[0];
      assert.equal(again.n, 1);
      assert.equal((await client.query('select 5 as five')).rows[0].five, 5);
      await poolsSettle(amb);
    } finally {
      await locker.query('rollback').catch(() => {});
      await locker.end().catch(() => {});
      await client.end().catch(() => {});
      bystander.destroy();
    }
  });

  test('ten cancels in a row for one running query: one 57014, the neighbours run, the queued request runs, all go on', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await txnAmbassador({ size: 2 });
    const target = await rawClient(amb);
    const neighbour = await pgClient(amb);
    const queued = await rawClient(amb);
    try {
      target.write(encodeQuery('select pg_sleep(30) /* pa-ten-target */'));
      await runningUpstream(file.admin, DB, 'pa-ten-target');
      const started = performance.now();
      const neighbourRun = neighbour.query('select 6 as six from pg_sleep(1) /* pa-ten-neighbour */');
      neighbourRun.catch(() => {}); // awaited below; a failure before that ends the client
      await runningUpstream(file.admin, DB, 'pa-ten-neighbour');
      queued.write(encodeQuery('select 7 as seven'));
      await eventually(async () => (amb.ambassador.pool.stats().some((p) => p.waiting > 0) ? true : undefined), { what: 'the third client waiting for the pool' });
      for (let i = 0; i < 10; i++) await cancelOwn(amb.port, target);
      assert.deepEqual((await target.answer(5_000)).map(summary), ['T(pg_sleep)', 'E(ERROR 57014)', 'Z(I)']);
      assert.deepEqual((await queued.answer(QUERY_DEADLINE_MS)).map(summary), ['T(seven)', 'D(7)', 'C(SELECT 1)', 'Z(I)']);
      assert.equal((await within(QUERY_DEADLINE_MS, 'the neighbour', neighbourRun)).rows[0].six, 6);
      assert.ok(elapsedSince(started) >= 1_000);
      // Exactly one answer came for the canceled query: the next is this one's, whole.
      assert.deepEqual((await target.query('select 8 as eight')).map(summary), ['T(eight)', 'D(8)', 'C(SELECT 1)', 'Z(I)']);
      assert.equal((await neighbour.query('select 9 as nine')).rows[0].nine, 9);
      await poolsSettle(amb);
    } finally {
      target.destroy();
      queued.destroy();
      await neighbour.end().catch(() => {});
    }
  });

  test('ten cancels for a request waiting for the pool: it alone is answered 57014, once; what the client pipelined behind it runs', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await txnAmbassador({ size: 1 });
    const holder = await pgClient(amb);
    const waiter = await rawClient(amb);
    try {
      await holder.query('begin');
      await holder.query('select 1'); // the pool's one server is the holder's until COMMIT
      waiter.write(encodeQuery('insert into pa_queued values (1)'));
      await eventually(async () => (amb.ambassador.pool.stats().some((p) => p.waiting > 0) ? true : undefined), { what: 'the insert waiting for the pool' });
      await Promise.all(Array.from({ length: 10 }, () => cancelOwn(amb.port, waiter)));
      assert.deepEqual((await waiter.answer(5_000)).map(summary), ['E(ERROR 57014)', 'Z(I)']);
      // One cancel more, for a request with two more pipelined behind it: those two run.
      waiter.write(Buffer.concat([encodeQuery('insert into pa_queued values (2)'), encodeQuery('select 10 as ten'), encodeQuery('select count(*)::int as n from pa_queued')]));
      await eventually(async () => (amb.ambassador.pool.stats().some((p) => p.waiting > 0) ? true : undefined), { what: 'the pipelined requests waiting for the pool' });
      await cancelOwn(amb.port, waiter);
      assert.deepEqual((await waiter.answer(5_000)).map(summary), ['E(ERROR 57014)', 'Z(I)']);
      await holder.query('commit');
      assert.deepEqual((await waiter.answer(QUERY_DEADLINE_MS)).map(summary), ['T(ten)', 'D(10)', 'C(SELECT 1)', 'Z(I)']);
      assert.deepEqual((await waiter.answer(QUERY_DEADLINE_MS)).map(summary), ['T(n)', 'D(0)', 'C(SELECT 1)', 'Z(I)'], 'neither canceled insert ran');
      assert.deepEqual((await waiter.query('select 11 as eleven')).map(summary), ['T(eleven)', 'D(11)', 'C(SELECT 1)', 'Z(I)']);
      await poolsSettle(amb);
    } finally {
      await holder.end().catch(() => {});
      waiter.destroy();
    }
  });
});

// ---- session pooling -----------------------------------------------------------------------------

describe('cancels under session pooling', () => {
  function sessionAmbassador(size: number, connector?: DelayingConnector): Promise<TestAmbassador> {
    return ambassadors.start({ pool: { mode: 'session', size, acquireTimeout: '30s' }, logging: { level: 'info' } }, connector);
  }

  test('a cancel stops its own session’s query only; both sessions keep their servers', { timeout: TEST_TIMEOUT_MS }, async () => {
    const amb = await sessionAmbassador(2);
    const target = await pgClient(amb);
    const other = await rawClient(amb);
    try {
      const targetPid = (await target.query('select pg_backend_pid() as pid')).rows[0].pid;
      const otherPid = rowValues((await other.query('select pg_backend_pid() as pid')).find((m) => m.type === 'D')!)[0];
      const long = outcomeOf(target.query('select pg_sleep(30) /* pa-session-target */'));
      await runningUpstream(file.admin, DB, 'pa-session-target');
      const started = performance.now();
      other.write(encodeQuery('select pg_sleep(1) /* pa-session-other */'));
      await runningUpstream(file.admin, DB, 'pa-session-other');
      await cancelOwn(amb.port, target);
      assert.equal(await within(5_000, 'the canceled query', long), '57014');
      assert.equal(rawOutcome(await other.answer(QUERY_DEADLINE_MS)), 'ran', 'the other session’s query was canceled');
      assert.ok(elapsedSince(started) >= 1_000);
      assert.equal((await target.query('select pg_backend_pid() as pid')).rows[0].pid, targetPid);
      assert.deepEqual((await other.query('select pg_backend_pid() as pid')).map(summary), ['T(pid)', `D(${otherPid})`, 'C(SELECT 1)', 'Z(I)']);
    } finally {
      await target.end().catch(() => {});
      other.destroy();
    }
  });

  test('a client that leaves right after canceling: the next session on its server is not canceled', { timeout: TEST_TIMEOUT_MS }, async () => {
    const connector = new DelayingConnector();
    const amb = await sessionAmbassador(1, connector);
    const leaving = await pgClient(amb);
    try {
      const ended = outcomeOf(leaving.query('select pg_sleep(0.3) /* pa-session-leaving */'));
      await runningUpstream(file.admin, DB, 'pa-session-leaving');
      // The next session waits for the pool's one server from its login on.
      const nextSession = pgClient(amb);
      connector.delayMs = 1_000; // the cancel reaches the server only after the query ended and the client left
      await cancelOwn(amb.port, leaving);
      assert.equal(await ended, 'ran', 'the query ended before its cancel reached the server');
      await leaving.end();
      const next = await within(QUERY_DEADLINE_MS, 'the next session’s login', nextSession);
      try {
        const result = await outcomeOf(next.query('select pg_sleep(1.5) /* pa-session-next */'));
        assert.equal(result, 'ran', 'the next session’s query was stopped by the cancel of the session before');
        assert.equal((await next.query('select 12 as twelve')).rows[0].twelve, 12);
      } finally {
        await next.end().catch(() => {});
      }
      connector.delayMs = 0;
      await poolsSettle(amb);
    } finally {
      connector.delayMs = 0;
      await leaving.end().catch(() => {});
    }
  });

  test('a client that drops its connection mid-query right after canceling: the next session runs', { timeout: TEST_TIMEOUT_MS }, async () => {
    const connector = new DelayingConnector();
    const amb = await sessionAmbassador(1, connector);
    const leaving = await rawClient(amb);
    try {
      leaving.write(encodeQuery('select pg_sleep(0.5) /* pa-session-drop */'));
      await runningUpstream(file.admin, DB, 'pa-session-drop');
      const nextSession = rawClient(amb);
      connector.delayMs = 700;
      await cancelOwn(amb.port, leaving);
      leaving.destroy();
      const next = await within(QUERY_DEADLINE_MS, 'the next session’s login', nextSession);
      try {
        assert.deepEqual((await next.query('select 13 as n from pg_sleep(1.5)', QUERY_DEADLINE_MS)).map(summary), ['T(n)', 'D(13)', 'C(SELECT 1)', 'Z(I)']);
      } finally {
        next.destroy();
      }
      connector.delayMs = 0;
      await poolsSettle(amb);
    } finally {
      connector.delayMs = 0;
      leaving.destroy();
    }
  });
});
