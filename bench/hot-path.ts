// The JavaScript a transaction costs in transaction pooling, without sockets: one TxnForwarder
// fed pgbench -S traffic by a fake client socket and answered by a fake server, in one process.
//
// Why: on this machine a pgbench run cannot tell a change of 2-3% in the ambassador's CPU per
// transaction from noise (paired rounds of the same build range over ±6%), and most of that CPU is
// the kernel's. Here the forwarder's own work (framing, the request builder, leasing, the response
// plan, metering) runs alone and hot, so a cut in it shows as a steady difference in ns per
// transaction. What it leaves out: reads and writes (the wire's onread and write are replaced by
// the fake socket's events), the pool and host choice (a fake hands over its one server at once;
// --servers puts the real Pooler back), and the cold caches of a real run, where the same
// JavaScript costs several times more.
//
// `node --import tsx bench/hot-path.ts [--modes simple,extended,prepared] [--split] [--help]
//  [--transactions N] [--rounds N] [--clients N] [--servers M]` prints one JSON line per mode: ns
// per transaction in each round, and the median. --split routes through the classifier (a read
// goes to the fake replica). --clients N runs N forwarders in turn (their state no longer all fits
// in the CPU's caches, as in a real run). --servers M puts the N forwarders on M fake server
// connections of a real Pooler instead, so that with N > M most requests wait for a lease and the
// pool hands it over, as at 256 pgbench clients on a pool of 20 (one host: not with --split).
// --cpu-prof (a node flag) gives the profile of the same loop.

import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import pino from 'pino';

import type { BackendConnection, ServerSink } from '../src/backend/connection.ts';
import { ClientRouting } from '../src/frontend/client-routing.ts';
import { RequestMeter } from '../src/frontend/request-meter.ts';
import { ClientSessionState } from '../src/frontend/session-state.ts';
import { DatabaseTraffic } from '../src/frontend/traffic.ts';
import { TxnForwarder } from '../src/frontend/txn-forwarder.ts';
import type { GarbageBound } from '../src/lib/garbage-bound.ts';
import { Pooler } from '../src/pool/pooler.ts';
import type { RouteRequest, ServerPool } from '../src/pool/server-pool.ts';
import {
  BIND_COMPLETE,
  encodeCommandComplete,
  encodeDataRow,
  encodeReadyForQuery,
  encodeTextRowDescription,
  PARSE_COMPLETE,
} from '../src/protocol/backend.ts';
import { encodeParse, encodeQuery, encodeSync, encodeTarget, FrontendType } from '../src/protocol/frontend.ts';
import { MessageWriter } from '../src/protocol/writer.ts';
import { createClassifier } from '../src/router/classifier.ts';
import { EMPTY_FUNCTION_CATALOG } from '../src/router/classifier-functions.ts';
import { SessionEffectsCache } from '../src/router/session-effects.ts';
import { optionsOrExitCode, positiveInt } from './options.ts';

export const HOT_MODES = ['simple', 'extended', 'prepared'] as const;
export type HotMode = (typeof HOT_MODES)[number];

/** pgbench -S's statement; the simple protocol sends it with the value in place of $1. */
const SELECT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;';
const STATEMENT = 'P0_1';
const NO_TYPES = Buffer.from([0, 0]);
const SYNC = encodeSync();

/** What pgbench sends for one transaction of `mode`, with `aid` as the account. */
export function pgbenchRequest(mode: HotMode, aid: number, statement = STATEMENT): Buffer {
  if (mode === 'simple') return encodeQuery(SELECT.replace('$1', String(aid)));
  const value = Buffer.from(String(aid));
  const bind = new MessageWriter()
    .cstring('')
    .cstring(mode === 'prepared' ? statement : '')
    .int16(0)
    .int16(1)
    .int32(value.length)
    .bytes(value)
    .int16(0)
    .finish(FrontendType.Bind);
  // libpq describes the portal before executing it (PQsendQueryGuts).
  const rest = [bind, encodeTarget(FrontendType.Describe, 'P', ''), new MessageWriter().cstring('').int32(0).finish(FrontendType.Execute), SYNC];
  return Buffer.concat(mode === 'extended' ? [encodeParse('', SELECT, NO_TYPES), ...rest] : rest);
}

/** What the server answers it. */
export function serverAnswer(mode: HotMode): Buffer {
  const rows = [encodeTextRowDescription(['abalance']), encodeDataRow(['0']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')];
  if (mode === 'simple') return Buffer.concat(rows);
  return Buffer.concat(mode === 'extended' ? [PARSE_COMPLETE, BIND_COMPLETE, ...rows] : [BIND_COMPLETE, ...rows]);
}

/** Stands in for the client's net.Socket (the wire falls back to its events and write). */
class FakeClient extends EventEmitter {
  readonly received: Buffer[] = [];
  /** What a forwarder asks of a net.Socket before writing to it late (an answer deferred to the check phase). */
  destroyed = false;
  writable = true;
  /** The forwarder reading this client. */
  forwarder: TxnForwarder | null = null;
  keep = false;
  bytes = 0;
  /** The pooled driver's queue of answered clients, which this one joins on its answer. */
  answered: FakeClient[] | null = null;
  waitsForAnswer = false;
  /** Requests the pooled driver sent. */
  sent = 0;
  isPaused(): boolean {
    return false;
  }
  write(bytes: Uint8Array): boolean {
    this.bytes += bytes.length;
    if (this.waitsForAnswer && this.answered !== null) {
      this.waitsForAnswer = false;
      this.answered.push(this);
    }
    if (this.keep) this.received.push(Buffer.from(bytes));
    return true;
  }
  pause(): void {}
  resume(): void {}
}

/** Stands in for a BackendConnection: holds what was written until the loop answers it. */
class FakeServer {
  readonly parameters = new Map<string, string>();
  readonly statements = new Map<string, number>();
  readonly staleStatements = new Set<string>();
  readonly statementShapes = new Map<string, string>();
  stateKey = '';
  cancelling: Promise<void> | null = null;
  transactionStatus: 'I' | 'T' | 'E' = 'I';
  isClosed = false;
  /** Set by the Pooler that opened it (the pooled driver's). */
  pooledBy: unknown = null;
  readonly socket = new EventEmitter();
  /** The pooled driver's queue of servers with a request to answer, which this one joins on a request. */
  due: FakeServer[] | null = null;
  readonly target = { host: '127.0.0.1', port: 5432 };
  sink: ServerSink | null = null;
  readonly written: Buffer[] = [];
  keep = false;
  pending = false;

  constructor(readonly role: 'primary' | 'replica') {}

  forgetStatements(): void {
    this.statements.clear();
    this.staleStatements.clear();
    this.statementShapes.clear();
  }
  attach(sink: ServerSink): void {
    this.sink = sink;
  }
  detach(): void {
    this.sink = null;
  }
  write(bytes: Uint8Array): boolean {
    if (!this.pending && this.due !== null) this.due.push(this);
    this.pending = true;
    if (this.keep) this.written.push(Buffer.from(bytes));
    return true;
  }
  pause(): void {}
  resume(): void {}
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.socket.emit('close');
  }
  /** A preparation (statements created before first use): Postgres would accept it. */
  exchange(): Promise<{ error: Buffer | null }> {
    return Promise.resolve({ error: null });
  }
}

export interface HotPath {
  client: FakeClient;
  primary: FakeServer;
  replica: FakeServer;
  /** One transaction, request to answer; throws when the forwarder did not forward both. */
  transaction(request: Buffer, answer: Buffer): void;
  /** Lets promises and immediates run (a preparation is asynchronous). */
  settle(): Promise<void>;
}

/** One logger for every forwarder, each with a child of its own, as the listener gives each session. */
const ROOT_LOG = pino({ level: 'silent' });
let sessions = 0;

/** A TxnForwarder over `pool` for a new fake client, started. */
async function startForwarder(pool: ServerPool, split: boolean): Promise<FakeClient> {
  const log = ROOT_LOG.child({ session: ++sessions });
  const routing = new ClientRouting({ classifier: split ? await createClassifier({ functions: EMPTY_FUNCTION_CATALOG }) : null, readYourWrites: 'off', route: 'auto', readOnlyDefault: false });
  const client = new FakeClient();
  const forwarder = new TxnForwarder(client as unknown as net.Socket, {
    pool,
    request: { user: 'app', database: 'bench', params: new Map() },
    state: new ClientSessionState(new Map([['user', 'app'], ['database', 'bench']])),
    effects: new SessionEffectsCache(),
    maxMessageSize: 1 << 30,
    maxQueuedBytes: 1 << 20,
    userSlot: { user: 'app', turn: () => 0, limited: false, release: () => {} },
    statementCapacity: 1000,
    cacheUnnamedStatements: false,
    exchangeTimeoutMs: 10_000,
    garbage: { account: () => {} } as unknown as GarbageBound,
    log,
    routing,
    meter: new RequestMeter(new DatabaseTraffic('bench', null), log, { queries: 'off', slowQueryThresholdMs: 0 }),
    onCatalogChange: () => {},
    onEnd: (reason) => {
      throw new Error(`the forwarder ended the session: ${reason}`);
    },
    onIdle: () => {},
  });
  forwarder.start([]);
  client.forwarder = forwarder;
  return client;
}

/** A TxnForwarder for one client of `mode`, its statement prepared when `mode` is prepared. */
export async function hotPath(mode: HotMode, split: boolean): Promise<HotPath> {
  const primary = new FakeServer('primary');
  const replica = new FakeServer('replica');
  const asServer = (server: FakeServer): BackendConnection => server as unknown as BackendConnection;
  const serverOf = (connection: BackendConnection): FakeServer => connection as unknown as FakeServer;
  const pool: Partial<ServerPool> = {
    tryAcquireFor: (route: RouteRequest) => asServer(route.kind === 'read' ? replica : primary),
    waitFor: () => {
      throw new Error('the fake pool never makes a client wait');
    },
    release: () => {},
    roleOf: (connection) => serverOf(connection).role,
    hostIdOf: (connection) => `${serverOf(connection).role}:5432`,
    demoted: () => false,
    suspect: () => {},
  };
  const client = await startForwarder(pool as ServerPool, split);
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  };
  const transaction = (request: Buffer, answer: Buffer): void => {
    const before = client.bytes;
    // A copy, as the wire hands over each read.
    client.emit('data', Buffer.from(request));
    const server = primary.pending ? primary : replica.pending ? replica : null;
    if (server === null) throw new Error('no server got the request');
    server.pending = false;
    if (server.sink === null) throw new Error('the server was let go before its answer');
    server.sink.onServerData(Buffer.from(answer));
    if (client.bytes === before) throw new Error('the client got no answer');
  };
  if (mode === 'prepared') client.emit('data', Buffer.concat([encodeParse(STATEMENT, SELECT, NO_TYPES), SYNC]));
  // The first Bind of a statement waits for its preparation on the server.
  client.emit('data', pgbenchRequest(mode, 1));
  await settle();
  for (const server of [primary, replica]) {
    if (!server.pending) continue;
    server.pending = false;
    server.sink!.onServerData(serverAnswer(mode));
  }
  await settle();
  return { client, primary, replica, transaction, settle };
}

/**
 * ns per transaction over `rounds` rounds of `transactions`, after a warm-up; with `clients` > 1,
 * that many forwarders take turns, one transaction each, as pgbench's clients do, so each finds
 * its state colder.
 */
export async function measure(mode: HotMode, split: boolean, transactions: number, rounds: number, clients = 1): Promise<number[]> {
  const paths: HotPath[] = [];
  for (let i = 0; i < clients; i++) paths.push(await hotPath(mode, split));
  const requests = pgbenchRequests(mode);
  const answer = serverAnswer(mode);
  let turn = 0;
  const run = (count: number): void => {
    for (let i = 0; i < count; i++) {
      paths[turn]!.transaction(requests[i & 4095]!, answer);
      if (++turn === clients) turn = 0;
    }
  };
  return timedRounds(run, transactions, rounds, () => paths[0]!.settle());
}

/** 4,096 requests of `mode`, made up front (building them is not measured); accounts vary as pgbench's do. */
function pgbenchRequests(mode: HotMode): Buffer[] {
  return Array.from({ length: 4096 }, (_, i) => pgbenchRequest(mode, 1 + ((i * 7919) % 1_000_000)));
}

/**
 * ns per transaction of `run(transactions)` in each of `rounds` rounds, after a warm-up;
 * `between` runs after each round, untimed.
 */
async function timedRounds(run: (count: number) => void | Promise<void>, transactions: number, rounds: number, between?: () => Promise<void>): Promise<number[]> {
  await run(Math.min(transactions, 50_000));
  const ns: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    await run(transactions);
    ns.push(((performance.now() - start) * 1e6) / transactions);
    await between?.();
  }
  return ns;
}

export interface PooledClients {
  clients: FakeClient[];
  /** The server connections the Pooler opened. */
  servers: FakeServer[];
  /** Answers `count` requests, each client sending its next one once answered. */
  run(count: number): Promise<void>;
}

/**
 * `clients` forwarders sharing `servers` connections of a real Pooler (one host), driven as
 * pgbench drives them through the event loop: every server with a request answers (one pass's
 * reads), their leases go back and the pool hands them to the next waiters (in the check phase),
 * and only then do the answered clients send their next requests. With more clients than
 * servers nearly every request waits for a lease, as with 256 pgbench clients on a pool of 20:
 * the path (waitFor, the pool's hand-off, leaseSettled) that hotPath()'s fake pool, which hands
 * its server over at once, never takes.
 */
export async function pooledClients(mode: HotMode, clients: number, servers: number, keep = false): Promise<PooledClients> {
  const due: FakeServer[] = [];
  const answered: FakeClient[] = [];
  const opened: FakeServer[] = [];
  const pooler = fakePooler(servers, (server) => {
    server.due = due;
    server.keep = keep;
    opened.push(server);
  });
  const fakes: FakeClient[] = [];
  for (let i = 0; i < clients; i++) {
    const client = await startForwarder(pooler, false);
    client.answered = answered;
    client.keep = keep;
    fakes.push(client);
    // PQprepare's Parse and Sync, answered by the forwarder itself.
    if (mode === 'prepared') client.emit('data', Buffer.concat([encodeParse(STATEMENT, SELECT, NO_TYPES), SYNC]));
  }
  const requests = pgbenchRequests(mode);
  const answer = serverAnswer(mode);
  let next = 0;
  const send = (client: FakeClient): void => {
    client.waitsForAnswer = true;
    client.sent++;
    // A copy, as the wire hands over each read.
    client.emit('data', Buffer.from(requests[next++ & 4095]!));
  };
  for (const client of fakes) send(client);
  const run = async (count: number): Promise<void> => {
    let stalls = 0;
    for (let done = 0; done < count; ) {
      const server = due.shift();
      if (server === undefined) {
        // Connections being opened, or a preparation under way: let them settle.
        if (++stalls > 100) throw new Error('no server got a request');
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      stalls = 0;
      // Every server with a request answers, as the reads of one pass of the event loop would.
      for (let answering: FakeServer | undefined = server; answering !== undefined; answering = done < count ? due.shift() : undefined) {
        answering.pending = false;
        if (answering.sink === null) throw new Error('the server was let go before its answer');
        answering.sink.onServerData(Buffer.from(answer));
        done++;
      }
      // The released leases' hand-offs run in the check phase, before the clients' next requests arrive.
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (let client = answered.shift(); client !== undefined; client = answered.shift()) send(client);
    }
  };
  return { clients: fakes, servers: opened, run };
}

/** A Pooler of `servers` connections to one host, each a FakeServer (`opened` is told of each). */
function fakePooler(servers: number, opened: (server: FakeServer) => void): Pooler {
  return new Pooler({
    connector: { connect: () => Promise.reject(new Error('the bench opens fake connections')) },
    hosts: [{ host: '127.0.0.1', port: 5432, role: 'primary' }],
    tls: () => ({ mode: 'disable' }),
    connectTimeoutMs: 10_000,
    credentials: null,
    maxMessageSize: 1 << 30,
    // As the bench's ambassador-txn runs (the defaults but for the size).
    pool: { size: servers, minIdle: 0, idleTimeoutMs: 600_000, maxLifetimeMs: 3_600_000, acquireTimeoutMs: 5_000, retry: { max: 0, initialDelayMs: 10, maxDelayMs: 10 } },
    choice: { loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'fallback' },
    health: { intervalMs: 60_000, timeoutMs: 10_000, failureThreshold: 3, failoverTimeoutMs: 10_000, circuitBreaker: { threshold: 5, cooldownMs: 10_000 } },
    probeLogin: { user: 'app', database: 'bench' },
    log: ROOT_LOG,
    connect: async () => {
      const server = new FakeServer('primary');
      opened(server);
      return server as unknown as BackendConnection;
    },
  });
}

/** measure() over pooledClients(): ns per transaction when most requests wait for a lease. */
export async function measurePooled(mode: HotMode, transactions: number, rounds: number, clients: number, servers: number): Promise<number[]> {
  const pooled = await pooledClients(mode, clients, servers);
  return timedRounds(pooled.run, transactions, rounds);
}

const USAGE = `usage: npm run bench:hot -- [--modes ${HOT_MODES.join(',')}] [--split] [--transactions N] [--rounds N]
                          [--clients N] [--servers M]

  --modes LIST        default: all of them, each in its own process
  --split             route through the classifier (a read goes to the fake replica)
  --transactions N    per round (default 200000)
  --rounds N          default 5; the JSON line gives each round's ns per transaction and the median
  --clients N         N forwarders in turn (default 1): their state no longer all fits in the CPU's caches
  --servers M         the N forwarders on M fake server connections of a real Pooler: with N > M most requests
                      wait for a lease (one host: not with --split)`;

export interface HotOptions {
  modes: HotMode[];
  split: boolean;
  transactions: number;
  rounds: number;
  clients: number;
  servers: number | null;
}

/** Options from argv (without node and the script); null for --help. Throws on bad input. */
export function parseHotCli(argv: string[]): HotOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      modes: { type: 'string', default: HOT_MODES.join(',') },
      split: { type: 'boolean', default: false },
      transactions: { type: 'string', default: '200000' },
      rounds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '1' },
      servers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  const modes = values.modes.split(',').map((mode) => {
    if (!(HOT_MODES as readonly string[]).includes(mode)) throw new Error(`unknown mode ${mode} (${HOT_MODES.join(', ')})`);
    return mode as HotMode;
  });
  const servers = values.servers === undefined ? null : positiveInt('servers', values.servers, 0);
  if (servers !== null && values.split) throw new Error('--servers runs one host: it does not go with --split');
  return {
    modes,
    split: values.split,
    transactions: positiveInt('transactions', values.transactions, 0),
    rounds: positiveInt('rounds', values.rounds, 0),
    clients: positiveInt('clients', values.clients, 0),
    servers,
  };
}

async function main(): Promise<number> {
  const options = optionsOrExitCode(() => parseHotCli(process.argv.slice(2)), USAGE);
  if (typeof options === 'number') return options;
  const { modes, split, transactions, rounds, clients, servers } = options;
  if (modes.length > 1) {
    // One process per mode: code that has seen one mode's messages is slower for the next's.
    const argv = process.argv.slice(2).filter((arg, i, all) => arg !== '--modes' && all[i - 1] !== '--modes' && !arg.startsWith('--modes='));
    for (const mode of modes) {
      const child = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, ...argv, '--modes', mode], { stdio: 'inherit' });
      if (child.status !== 0) return child.status ?? 1;
    }
    return 0;
  }
  const mode = modes[0]!;
  const ns = servers === null ? await measure(mode, split, transactions, rounds, clients) : await measurePooled(mode, transactions, rounds, clients, servers);
  const median = [...ns].sort((a, b) => a - b)[Math.floor(ns.length / 2)]!;
  const setup = servers === null ? { split, clients } : { clients, servers };
  console.log(JSON.stringify({ mode, ...setup, nsPerTransaction: ns.map(Math.round), median: Math.round(median) }));
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main();
