// The JavaScript a transaction costs in transaction pooling, without sockets: one TxnForwarder
// fed pgbench -S traffic by a fake client socket and answered by a fake server, in one process.
//
// Why: on this machine a pgbench run cannot tell a change of 2-3% in the ambassador's CPU per
// transaction from noise (paired rounds of the same build range over ±6%), and most of that CPU is
// the kernel's. Here the forwarder's own work (framing, the request builder, leasing, the response
// plan, metering) runs alone and hot, so a cut in it shows as a steady difference in ns per
// transaction. What it leaves out: reads and writes (the wire's onread and write are replaced by
// the fake socket's events), the pool and host choice (a fake hands over its one server at once),
// and the cold caches of a real run, where the same JavaScript costs several times more.
//
// `node --import tsx bench/hot-path.ts [--modes simple,extended,prepared] [--split]
//  [--transactions N] [--rounds N] [--clients N]` prints one JSON line per mode: ns per
// transaction in each round, and the median. --split routes through the classifier (a read goes
// to the fake replica). --clients N runs N forwarders in turn (their state no longer all fits in
// the CPU's caches, as in a real run). --cpu-prof (a node flag) gives the profile of the same loop.

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
  keep = false;
  bytes = 0;
  isPaused(): boolean {
    return false;
  }
  write(bytes: Uint8Array): boolean {
    this.bytes += bytes.length;
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
  stateKey = '';
  transactionStatus: 'I' | 'T' | 'E' = 'I';
  readonly isClosed = false;
  readonly target = { host: '127.0.0.1', port: 5432 };
  sink: ServerSink | null = null;
  readonly written: Buffer[] = [];
  keep = false;
  pending = false;

  constructor(readonly role: 'primary' | 'replica') {}

  attach(sink: ServerSink): void {
    this.sink = sink;
  }
  detach(): void {
    this.sink = null;
  }
  write(bytes: Uint8Array): boolean {
    this.pending = true;
    if (this.keep) this.written.push(Buffer.from(bytes));
    return true;
  }
  pause(): void {}
  resume(): void {}
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

/** A TxnForwarder for one client of `mode`, its statement prepared when `mode` is prepared. */
export async function hotPath(mode: HotMode, split: boolean): Promise<HotPath> {
  const log = ROOT_LOG.child({ session: ++sessions });
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
  const routing = new ClientRouting({ classifier: split ? await createClassifier({ functions: EMPTY_FUNCTION_CATALOG }) : null, readYourWrites: 'off', route: 'auto', readOnlyDefault: false });
  const client = new FakeClient();
  const forwarder = new TxnForwarder(client as unknown as net.Socket, {
    pool: pool as ServerPool,
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
  // Requests made up front: building them is not measured. Accounts vary as pgbench's do.
  const requests = Array.from({ length: 4096 }, (_, i) => pgbenchRequest(mode, 1 + ((i * 7919) % 1_000_000)));
  const answer = serverAnswer(mode);
  let turn = 0;
  const run = (count: number): void => {
    for (let i = 0; i < count; i++) {
      paths[turn]!.transaction(requests[i & 4095]!, answer);
      if (++turn === clients) turn = 0;
    }
  };
  run(Math.min(transactions, 50_000));
  const ns: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    run(transactions);
    ns.push(((performance.now() - start) * 1e6) / transactions);
    await paths[0]!.settle();
  }
  return ns;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      modes: { type: 'string', default: HOT_MODES.join(',') },
      split: { type: 'boolean', default: false },
      transactions: { type: 'string', default: '200000' },
      rounds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '1' },
    },
  });
  const modes = values.modes.split(',').map((mode) => {
    if (!(HOT_MODES as readonly string[]).includes(mode)) throw new Error(`unknown mode ${mode} (${HOT_MODES.join(', ')})`);
    return mode as HotMode;
  });
  if (modes.length > 1) {
    // One process per mode: code that has seen one mode's messages is slower for the next's.
    const argv = process.argv.slice(2).filter((arg, i, all) => arg !== '--modes' && all[i - 1] !== '--modes' && !arg.startsWith('--modes='));
    for (const mode of modes) {
      const child = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, ...argv, '--modes', mode], { stdio: 'inherit' });
      if (child.status !== 0) process.exit(child.status ?? 1);
    }
    return;
  }
  const mode = modes[0]!;
  const clients = Number(values.clients);
  if (!Number.isInteger(clients) || clients < 1) throw new Error(`--clients expects a positive integer, got ${values.clients}`);
  const ns = await measure(mode, values.split, Number(values.transactions), Number(values.rounds), clients);
  const median = [...ns].sort((a, b) => a - b)[Math.floor(ns.length / 2)]!;
  console.log(JSON.stringify({ mode, split: values.split, clients, nsPerTransaction: ns.map(Math.round), median: Math.round(median) }));
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
