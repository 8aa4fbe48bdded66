// Transaction pooling for one client: a server connection is leased per transaction.
//
// Client side: messages are framed whole and collected into a request (up to Sync, Flush,
// Query or FunctionCall) before anything is sent (request-builder.ts); named statements are
// renamed to their shared server names (statements.ts). A request is dispatched on the lease, acquiring one
// first when the client holds none. Before the first request on a lease, the server is made to
// look like the client's session (settings replayed when they differ) and the statements the
// request uses are created there if missing (one short exchange, only when needed).
//
// Server side: responses are walked message by message against what each request message will
// produce (ResponsePlan); contiguous bytes are forwarded as one slice. A Parse of a statement
// the server already holds is not sent; its ParseComplete is synthesized at its place in the
// stream. On ReadyForQuery 'I' with nothing else in flight and no pin, the lease goes back to
// the pool.

import type net from 'node:net';
import type { Logger } from 'pino';
import type { BackendConnection } from '../backend/connection.ts';
import { AmbassadorError, asAmbassadorError } from '../errors.ts';
import { BackendType, decodeErrorFields, encodeErrorResponse, encodeReadyForQuery, type TransactionStatus } from '../protocol/backend.ts';
import { ALL_TYPES, Framer, FramingError, typeSet } from '../protocol/framer.ts';
import { encodeQuery, encodeTarget, FrontendType, rebindStatement } from '../protocol/frontend.ts';
import { frameMessage } from '../protocol/writer.ts';
import type { GarbageBound } from '../lib/garbage-bound.ts';
import type { ServerPool, ServerRequest } from '../pool/server-pool.ts';
import { returnServer } from '../pool/server-return.ts';
import type { SessionEffect, SessionEffectsCache } from '../router/session-effects.ts';
import { RequestBuilder, type Item, type Request } from './request-builder.ts';
import { ResponsePlan, type PlanEntry } from './response-plan.ts';
import type { ClientSessionState } from './session-state.ts';
import { preparationFor, type Preparation } from './preparation.ts';
import { touchStatement } from './statements.ts';

export interface TxnForwarderOptions {
  pool: ServerPool;
  request: ServerRequest;
  state: ClientSessionState;
  effects: SessionEffectsCache;
  maxMessageSize: number;
  statementCapacity: number;
  exchangeTimeoutMs: number;
  garbage: GarbageBound;
  log: Logger;
  onEnd: (reason: string) => void;
  onIdle: () => void;
}

const SERVER_INSPECT = typeSet('EZC');
const SERVER_MAX_MESSAGE = 0x7fffffff;
/** Client bytes queued while a lease is being acquired, before the client socket is paused. */
const MAX_QUEUED_BYTES = 1 << 20;

export class TxnForwarder {
  private readonly clientFramer: Framer;
  private serverFramer = new Framer(SERVER_MAX_MESSAGE, SERVER_INSPECT);
  private lease: BackendConnection | null = null;
  private acquiring = false;
  private readonly plan = new ResponsePlan();
  private readonly requests: RequestBuilder;
  /** How the transaction now ending ended, from CommandComplete tags; and whether it saw an error. */
  private endTag: 'COMMIT' | 'ROLLBACK' | null = null;
  private sawError = false;
  /** A RESET or DISCARD ran on the lease: it reset to the pooled connection's defaults, not the client's. */
  private serverReset = false;
  private readonly ready: Request[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private unsynced = false;
  private status: TransactionStatus = 'I';
  private stopped = false;
  private busy = false;
  /** Bytes of the current server chunk not yet forwarded start here. */
  private cursor = 0;
  private chunk: Buffer | null = null;
  private retry: { request: Request; phase: 'watch' | 'swallow' } | null = null;

  constructor(
    private readonly client: net.Socket,
    private readonly options: TxnForwarderOptions,
  ) {
    this.clientFramer = new Framer(options.maxMessageSize, ALL_TYPES);
    this.requests = new RequestBuilder(options.effects);
  }

  /** The server connection leased right now, if any (for cancel). */
  get server(): BackendConnection | null {
    return this.lease;
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.ready.length === 0 && !this.requests.pending && this.status === 'I';
  }

  get clientAtBoundary(): boolean {
    return this.lease === null || this.serverFramer.atBoundary;
  }

  start(held: Buffer[]): void {
    this.client.on('data', this.onClientData);
    this.client.on('drain', this.onClientDrain);
    for (const chunk of held) this.onClientData(chunk);
    this.client.resume();
  }

  // ---- client side ----

  private readonly onClientMessage = (type: number, payload: Buffer | null): boolean => {
    const request = this.requests.add(type, payload!);
    if (request === null) return true;
    if (request === 'terminate') {
      this.stopped = true;
      this.options.onEnd('client sent Terminate');
      return false;
    }
    this.ready.push(request);
    for (const item of request.items) this.queuedBytes += item.kind === 'raw' ? item.message.length : 64;
    return true;
  };

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.stopped) return;
    try {
      this.clientFramer.push(chunk, this.onClientMessage);
    } catch (err) {
      const reason = err instanceof FramingError && err.reason === 'message-too-large' ? 'MESSAGE_TOO_LARGE' : 'PROTOCOL_VIOLATION';
      this.failClient(new AmbassadorError(reason, err instanceof Error ? err.message : String(err)));
      return;
    }
    if (this.queuedBytes > MAX_QUEUED_BYTES) this.client.pause();
    this.pump();
  };

  // ---- dispatch ----

  private pump(): void {
    if (this.busy || this.stopped) return;
    while (this.ready.length > 0 && !this.stopped) {
      const request = this.ready[0]!;
      if (this.lease === null) {
        if (!this.answerLocally(request)) return void this.acquire();
        continue;
      }
      const plan = this.preparation(this.lease, request);
      if (plan !== null) {
        if (this.inFlight > 0) return; // finish what is in flight first; pump runs again on ReadyForQuery
        return void this.prepareThenPump(this.lease, plan);
      }
      this.ready.shift();
      this.send(this.lease, request);
    }
    if (this.queuedBytes <= MAX_QUEUED_BYTES) this.client.resume();
  }

  /**
   * A request that only prepares named statements (libpq's PQprepare: Parse, Sync) needs no
   * server: the statements are recorded and created on a server when first used. Answering it
   * here keeps a client that prepares while every lease is taken from waiting on the pool (with
   * pgbench -M prepared, a thread blocked in PQprepare holds up its own clients' transactions,
   * and nothing moves). A mistake in such a statement is reported when it is first executed.
   */
  private answerLocally(request: Request): boolean {
    const last = request.items.at(-1);
    const endsWithSync = last?.kind === 'raw' && last.type === FrontendType.Sync;
    const endsWithFlush = last?.kind === 'raw' && last.type === FrontendType.Flush;
    if (!(endsWithSync || endsWithFlush) || request.items.length < 2) return false;
    if (!request.items.slice(0, -1).every((i) => i.kind === 'parse')) return false;
    this.ready.shift();
    for (const item of request.items) this.queuedBytes -= item.kind === 'raw' ? item.message.length : 64;
    const answers = Array<Buffer>(request.items.length - 1).fill(PARSE_COMPLETE);
    if (endsWithSync) answers.push(encodeReadyForQuery(this.status));
    this.client.write(Buffer.concat(answers));
    return true;
  }

  private acquire(): void {
    if (this.acquiring) return;
    this.acquiring = true;
    this.busy = true;
    this.options.pool.acquire(this.options.request).then(
      (server) => {
        this.acquiring = false;
        this.busy = false;
        if (this.stopped) return this.options.pool.release(server, 'reusable');
        this.attach(server);
        this.pump();
      },
      (err: unknown) => {
        this.acquiring = false;
        this.busy = false;
        this.answerWithError(err);
        this.pump();
      },
    );
  }

  /** Answers every request queued so far with `err` (the client stays connected). */
  private answerWithError(err: unknown): void {
    const e = asAmbassadorError(err);
    const out: Buffer[] = [];
    while (this.ready.length > 0) {
      const request = this.ready.shift()!;
      if (!request.completes) continue;
      out.push(encodeErrorResponse({ severity: 'ERROR', code: e.sqlstate, message: e.message, hint: e.hint, detail: e.detail }), encodeReadyForQuery(this.status));
    }
    this.queuedBytes = 0;
    if (out.length > 0) this.client.write(Buffer.concat(out));
  }

  private preparation(server: BackendConnection, request: Request): Preparation | null {
    const state = this.options.state;
    return preparationFor(server, request, {
      stateKey: state.stateKey,
      syncStatements: state.syncStatements,
      canSyncState: this.inFlight === 0 && this.status === 'I',
      capacity: this.options.statementCapacity,
      statementFor: (name) => this.requests.statementFor(name),
    });
  }

  /** Makes the server match the client's settings and hold the request's statements. */
  private async prepareThenPump(server: BackendConnection, plan: Preparation): Promise<void> {
    this.busy = true;
    this.detachServer(server);
    try {
      for (const name of plan.evicted) server.statements.delete(name);
      const { error } = await server.exchange(plan.messages, plan.readies, this.options.exchangeTimeoutMs);
      for (const name of plan.refreshed) server.staleStatements.delete(name);
      if (error) {
        // The server refused to set up the client's state or statements: the request fails
        // with that error, as it would have failed directly.
        server.stateKey = '';
        this.ready.shift();
        this.client.write(Buffer.concat([frameMessage(BackendType.ErrorResponse, error), encodeReadyForQuery(this.status)]));
      } else {
        if (plan.syncsState) server.stateKey = this.options.state.stateKey;
        for (const name of plan.created) touchStatement(server, name);
      }
    } catch (err) {
      this.lease = null;
      this.options.pool.release(server, 'broken');
      this.busy = false;
      this.answerWithError(err);
      return;
    }
    this.busy = false;
    if (this.stopped) return;
    this.attachServer(server);
    this.pump();
  }

  /** Binds a request to the server and writes it; the plan learns what to expect. */
  private send(server: BackendConnection, request: Request): void {
    if (request.effects.length > 0) this.applyAtSend(server, request.effects);
    const out: Buffer[] = [];
    const entries: PlanEntry[] = [];
    for (const item of request.items) this.materialize(server, item, out, entries);
    for (const item of request.items) this.queuedBytes -= item.kind === 'raw' ? item.message.length : 64;
    if (request.completes) {
      this.inFlight++;
      this.unsynced = false;
    } else if (request.items.some((i) => i.kind !== 'raw' || !COPY_TYPES.has(i.type))) {
      // Extended-protocol messages sent without Sync (Flush): the rest must follow on this lease.
      this.unsynced = true;
    }
    if (request.retryable && this.status === 'I' && this.plan.empty) this.retry = { request, phase: 'watch' };
    this.plan.push(entries);
    if (out.length > 0) {
      const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
      server.socket.write(bytes);
      this.options.garbage.account(bytes.length);
    }
    this.flushSynthesized();
  }

  /** Stages the request's session effects; forgets server statements the request will drop. */
  private applyAtSend(server: BackendConnection, effects: readonly SessionEffect[]): void {
    this.options.state.stage(effects);
    if (effects.some((e) => e.kind === 'reset' || e.kind === 'reset-all' || e.kind === 'discard')) this.serverReset = true;
    const dropsStatements = effects.some(
      (e) => (e.kind === 'sql-deallocate' && e.name === 'ALL') || (e.kind === 'discard' && (e.what === 'all' || e.what === 'plans')),
    );
    // DEALLOCATE ALL / DISCARD ALL remove the shared statements from this server too.
    if (dropsStatements) server.statements.clear();
  }

  private materialize(server: BackendConnection, item: Item, out: Buffer[], entries: PlanEntry[]): void {
    switch (item.kind) {
      case 'raw':
        out.push(item.message);
        if (item.entry) entries.push(item.entry);
        return;
      case 'parse': {
        const name = item.statement.serverName;
        if (server.statements.has(name)) {
          touchStatement(server, name);
          entries.push({ kind: 'synthesized-parse' });
          return;
        }
        touchStatement(server, name);
        out.push(item.statement.parse);
        entries.push({ kind: 'parse', onError: () => server.statements.delete(name) });
        return;
      }
      case 'bind':
        if (item.serverName !== null) touchStatement(server, item.serverName);
        out.push(item.serverName === null ? frameMessage(FrontendType.Bind, item.payload) : rebindStatement(item.payload, item.serverName));
        entries.push(item.serverName === null ? { kind: 'bind' } : { kind: 'bind', statement: item.serverName });
        return;
      case 'describe':
        out.push(encodeTarget(FrontendType.Describe, 'S', item.serverName));
        entries.push({ kind: 'describe-statement' });
        return;
    }
  }

  // ---- server side ----

  private attach(server: BackendConnection): void {
    this.lease = server;
    this.status = server.transactionStatus;
    this.attachServer(server);
  }

  private attachServer(server: BackendConnection): void {
    this.serverFramer = new Framer(SERVER_MAX_MESSAGE, SERVER_INSPECT);
    server.socket.on('data', this.onServerData);
    server.socket.on('drain', this.onServerDrain);
    server.socket.on('close', this.onServerClose);
    server.socket.resume();
  }

  private detachServer(server: BackendConnection): void {
    server.socket.off('data', this.onServerData);
    server.socket.off('drain', this.onServerDrain);
    server.socket.off('close', this.onServerClose);
  }

  private readonly onServerData = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.chunk = chunk;
    this.cursor = 0;
    try {
      this.serverFramer.push(chunk, this.onServerMessage);
    } catch (err) {
      this.client.destroy();
      this.options.onEnd(`malformed data from server: ${String(err)}`);
      return;
    }
    if (this.chunk !== null) {
      this.forwardUpTo(chunk.length);
      this.chunk = null;
    }
    this.options.garbage.account(chunk.length);
  };

  private readonly onServerMessage = (type: number, payload: Buffer | null, _length: number, end: number): boolean => {
    if (this.retry !== null && this.watchRetry(type, payload, end)) return true;
    if (type === BackendType.ErrorResponse) {
      this.sawError = true;
      this.noteStaleStatement(payload!);
      this.plan.fail();
    } else if (type === BackendType.ReadyForQuery) {
      this.status = String.fromCharCode(payload![0]!) as TransactionStatus;
      this.plan.complete(type);
      this.forwardUpTo(end);
      return this.onReady();
    } else if (type === BackendType.CommandComplete && payload !== null) {
      const tag = transactionEndTag(payload);
      if (tag !== null) this.endTag = tag;
      this.plan.complete(type);
    } else {
      this.plan.complete(type);
    }
    if (this.plan.synthesizedPending) {
      this.forwardUpTo(end);
      this.flushSynthesized();
    }
    return true;
  };

  /**
   * A Bind failed because the statement's result type changed (DDL): the server still holds it
   * in the old form, so whoever prepares it next (the client re-preparing, as postgres.js does
   * on this error) gets it closed and created again.
   */
  private noteStaleStatement(payload: Buffer): void {
    const entry = this.plan.current;
    if (entry?.kind !== 'bind' || entry.statement === undefined || this.lease === null || !isCachedPlanError(payload)) return;
    this.lease.statements.delete(entry.statement);
    this.lease.staleStatements.add(entry.statement);
  }

  /** The cached-plan retry: watches the first response of a retryable request. */
  private watchRetry(type: number, payload: Buffer | null, end: number): boolean {
    const retry = this.retry!;
    if (retry.phase === 'swallow') {
      this.cursor = end; // dropped
      if (type === BackendType.ReadyForQuery) {
        this.retry = null;
        this.status = String.fromCharCode(payload![0]!) as TransactionStatus;
        // Forget it so the retry re-creates it (closing the outdated one first).
        this.lease!.statements.delete(firstServerName(retry.request));
        this.inFlight--;
        this.plan.clear();
        this.ready.unshift(retry.request);
        this.queuedBytes += 64;
        queueMicrotask(() => this.pump());
      }
      return true;
    }
    if (type === BackendType.ErrorResponse && isCachedPlanError(payload!)) {
      this.options.log.debug('cached plan changed result type: re-preparing and retrying once');
      this.forwardUpTo(end - (payload!.length + 5));
      this.cursor = end;
      retry.phase = 'swallow';
      return true;
    }
    this.retry = null;
    return false;
  }

  private onReady(): boolean {
    const state = this.options.state;
    if (this.inFlight > 0) this.inFlight--;
    if (this.status === 'I') this.endTransaction();
    if (state.advisoryRecheck && this.inFlight === 0 && this.status === 'I' && this.ready.length === 0 && this.lease) {
      this.forwardUpTo(this.chunk?.length ?? 0);
      void this.recheckAdvisoryLocks(this.lease);
      return false;
    }
    if (this.inFlight === 0 && this.status === 'I' && !this.unsynced && this.plan.empty && !this.options.state.pinned) {
      if (this.ready.length === 0) this.releaseLease();
      this.options.onIdle();
    }
    queueMicrotask(() => this.pump());
    return true;
  }

  /**
   * A transaction ended (ReadyForQuery 'I'): its staged settings count if it committed. It rolled
   * back when its last COMMIT/ROLLBACK tag said ROLLBACK (COMMIT of a failed transaction says so
   * too), or when it was implicit and failed. The lease's settings follow.
   */
  private endTransaction(): void {
    const state = this.options.state;
    const changed = state.hasStaged;
    const rolledBack = this.endTag === 'ROLLBACK' || (this.endTag === null && this.sawError);
    if (rolledBack) state.discard();
    else state.commit();
    // After a rollback (possibly to a savepoint) or a RESET run on the server, its settings are
    // not known to match: the next request on it replays them.
    if ((changed || this.serverReset) && this.lease) this.lease.stateKey = rolledBack || this.serverReset ? '' : state.stateKey;
    this.serverReset = false;
    this.endTag = null;
    this.sawError = false;
  }

  /** Asks the server whether this session still holds advisory locks before unpinning. */
  private async recheckAdvisoryLocks(server: BackendConnection): Promise<void> {
    this.busy = true;
    this.chunk = null;
    this.detachServer(server);
    try {
      const { error } = await server.exchange([encodeQuery(ADVISORY_LOCKS_HELD)], 1, this.options.exchangeTimeoutMs);
      this.options.state.advisoryChecked(error === null);
    } catch (err) {
      this.lease = null;
      this.busy = false;
      this.options.pool.release(server, 'broken');
      return this.answerWithError(err);
    }
    this.busy = false;
    if (this.stopped) return;
    this.attachServer(server);
    this.onReady();
  }

  private releaseLease(): void {
    const server = this.lease;
    if (server === null) return;
    const chunk = this.chunk;
    if (chunk !== null) this.forwardUpTo(chunk.length);
    this.chunk = null;
    this.detachServer(server);
    this.lease = null;
    server.transactionStatus = 'I';
    this.options.pool.release(server, 'reusable');
  }

  private forwardUpTo(end: number): void {
    const chunk = this.chunk;
    if (chunk === null || end <= this.cursor) return;
    const slice = this.cursor === 0 && end === chunk.length ? chunk : chunk.subarray(this.cursor, end);
    this.cursor = end;
    if (!this.client.write(slice)) this.lease?.socket.pause();
  }

  private flushSynthesized(): void {
    const count = this.plan.takeSynthesized();
    if (count > 0) this.client.write(count === 1 ? PARSE_COMPLETE : Buffer.concat(Array<Buffer>(count).fill(PARSE_COMPLETE)));
  }

  private readonly onClientDrain = (): void => {
    if (!this.stopped) this.lease?.socket.resume();
  };

  private readonly onServerDrain = (): void => {
    if (!this.stopped) this.client.resume();
  };

  private readonly onServerClose = (): void => {
    if (this.stopped) return;
    const server = this.lease;
    this.lease = null;
    if (server) this.options.pool.release(server, 'broken');
    if (this.serverFramer.atBoundary && !this.client.destroyed && (this.inFlight > 0 || this.status !== 'I')) {
      this.client.write(encodeErrorResponse({ severity: 'FATAL', code: '08006', message: 'server connection was lost during the transaction' }));
      this.options.onEnd('server closed the connection');
    }
  };

  private failClient(err: AmbassadorError): void {
    if (this.clientAtBoundary && !this.client.destroyed) {
      this.client.write(encodeErrorResponse({ severity: 'FATAL', code: err.sqlstate, message: err.message }));
    }
    this.options.onEnd(err.message);
  }

  /**
   * Ends forwarding. The lease, if any, comes back: rolled back when the client left inside a
   * transaction, reset when it held session state, closed when a response was still coming.
   */
  stop(): void {
    if (this.stopped && this.lease === null) return;
    this.stopped = true;
    this.client.off('data', this.onClientData);
    this.client.off('drain', this.onClientDrain);
    const server = this.lease;
    this.lease = null;
    if (server === null) return;
    this.detachServer(server);
    server.transactionStatus = this.status;
    returnServer(this.options.pool, server, {
      quiet: this.inFlight === 0 && this.plan.empty && this.serverFramer.atBoundary,
      reset: this.options.state.pinned,
      timeoutMs: this.options.exchangeTimeoutMs,
    });
  }
}

const PARSE_COMPLETE = Buffer.from([0x31, 0, 0, 0, 4]);
/** Fails exactly when the session still holds a session-level advisory lock. */
const ADVISORY_LOCKS_HELD = `DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted) THEN RAISE EXCEPTION 'advisory locks held'; END IF; END $$`;
const COPY_TYPES = new Set<number>([FrontendType.CopyData, FrontendType.CopyDone, FrontendType.CopyFail]);

/** COMMIT or ROLLBACK from a CommandComplete tag (ROLLBACK TO SAVEPOINT also says ROLLBACK,
 *  but never ends a transaction: the tag that counts is the last one before 'I'). */
function transactionEndTag(payload: Buffer): 'COMMIT' | 'ROLLBACK' | null {
  if (payload.length === 7 && payload.toString('latin1', 0, 6) === 'COMMIT') return 'COMMIT';
  if (payload.length === 9 && payload.toString('latin1', 0, 8) === 'ROLLBACK') return 'ROLLBACK';
  return null;
}

function isCachedPlanError(payload: Buffer): boolean {
  const fields = decodeErrorFields(payload);
  return fields.get('C') === '0A000' && (fields.get('M') ?? '').startsWith('cached plan must not change result type');
}

function firstServerName(request: Request): string {
  const first = request.items[0];
  return first?.kind === 'bind' && first.serverName !== null ? first.serverName : '';
}
