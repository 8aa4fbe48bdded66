// Transaction pooling for one client: a server connection is leased per transaction.
//
// Client side: messages are framed whole and collected into a request (up to Sync, Flush,
// Query or FunctionCall) before anything is sent; named statements are renamed to their
// shared server names (statements.ts). A request is dispatched on the lease, acquiring one
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
import { decodeBindNames, decodeParse, decodeTarget, encodeQuery, encodeSync, encodeTarget, FrontendType, rebindStatement } from '../protocol/frontend.ts';
import { frameMessage } from '../protocol/writer.ts';
import type { GarbageBound } from '../lib/garbage-bound.ts';
import type { ServerPool, ServerRequest } from '../pool/server-pool.ts';
import { returnServer } from '../pool/server-return.ts';
import type { SessionEffect, SessionEffectsCache } from '../router/session-effects.ts';
import { ResponsePlan, type PlanEntry } from './response-plan.ts';
import type { ClientSessionState } from './session-state.ts';
import { clientStatement, CLOSED_STATEMENT, evictionsFor, touchStatement, type ClientStatement } from './statements.ts';

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

/** One message of a pending request, before it is bound to a server. */
type Item =
  | { kind: 'raw'; type: number; message: Buffer; entry: PlanEntry | null }
  | { kind: 'parse'; statement: ClientStatement }
  | { kind: 'bind'; payload: Buffer; serverName: string | null; unnamedParse: Buffer | null }
  | { kind: 'describe'; serverName: string };

interface Request {
  items: Item[];
  /** Session effects of what the request runs (Query text, or the statements its Executes run). */
  effects: SessionEffect[];
  /** Ends in Sync, Query or FunctionCall: a ReadyForQuery will answer it. */
  completes: boolean;
  /** The first message is a Bind of a named statement: eligible for the cached-plan retry. */
  retryable: boolean;
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
  private readonly statements = new Map<string, ClientStatement>();
  private unnamedParse: Buffer | null = null;
  /** Effects of each client statement (by client name; '' unnamed) and of each bound portal. */
  private readonly statementEffects = new Map<string, SessionEffect[]>();
  private readonly portalEffects = new Map<string, SessionEffect[]>();
  private current: Item[] = [];
  private currentEffects: SessionEffect[] = [];
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
  }

  /** The server connection leased right now, if any (for cancel). */
  get server(): BackendConnection | null {
    return this.lease;
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.ready.length === 0 && this.current.length === 0 && this.status === 'I';
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

  private readonly onClientMessage = (type: number, payload: Buffer | null): boolean => {
    const body = payload!;
    switch (type) {
      case FrontendType.Parse:
        return this.onParse(body);
      case FrontendType.Bind:
        return this.onBind(body);
      case FrontendType.Describe:
      case FrontendType.Close:
        return this.onTarget(type, body);
      case FrontendType.Query:
        this.addEffects(this.options.effects.get(body.toString('utf8', 0, Math.max(0, body.length - 1))).effects);
        return this.endRequest(type, body, { kind: 'query' }, true);
      case FrontendType.FunctionCall:
        return this.endRequest(type, body, { kind: 'query' }, true);
      case FrontendType.Sync:
        return this.endRequest(type, body, { kind: 'sync' }, true);
      case FrontendType.Flush:
        return this.endRequest(type, body, null, false);
      case FrontendType.Execute: {
        const portal = body.toString('utf8', 0, Math.max(0, body.indexOf(0)));
        this.addEffects(this.portalEffects.get(portal));
        this.current.push({ kind: 'raw', type, message: frameMessage(type, body), entry: { kind: 'execute' } });
        return true;
      }
      case FrontendType.CopyData:
      case FrontendType.CopyDone:
      case FrontendType.CopyFail:
        // Part of a COPY already under way on the lease: sent as soon as its turn comes.
        return this.endRequest(type, body, null, false);
      case FrontendType.Terminate:
        this.stopped = true;
        this.options.onEnd('client sent Terminate');
        return false;
      default:
        this.current.push({ kind: 'raw', type, message: frameMessage(type, body), entry: null });
        return true;
    }
  };

  private onParse(payload: Buffer): boolean {
    const parse = decodeParse(payload);
    const effects = this.options.effects.get(parse.query).effects;
    if (effects.length > 0) this.statementEffects.set(parse.name, effects);
    else this.statementEffects.delete(parse.name);
    if (parse.name === '') {
      const message = frameMessage(FrontendType.Parse, payload);
      this.unnamedParse = message;
      this.current.push({ kind: 'raw', type: FrontendType.Parse, message, entry: { kind: 'parse' } });
      return true;
    }
    const statement = clientStatement(parse);
    this.statements.set(parse.name, statement);
    this.current.push({ kind: 'parse', statement });
    return true;
  }

  private onBind(payload: Buffer): boolean {
    const { portal, statement } = decodeBindNames(payload);
    const effects = this.statementEffects.get(statement);
    if (effects) this.portalEffects.set(portal, effects);
    else this.portalEffects.delete(portal);
    if (statement === '') {
      const parsedHere = this.current.some((i) => i.kind === 'raw' && i.type === FrontendType.Parse);
      this.current.push({ kind: 'bind', payload, serverName: null, unnamedParse: parsedHere ? null : this.unnamedParse });
    } else {
      // An unknown name is sent as it is: the server answers 26000 as Postgres would.
      this.current.push({ kind: 'bind', payload, serverName: this.statements.get(statement)?.serverName ?? statement, unnamedParse: null });
    }
    return true;
  }

  private onTarget(type: number, payload: Buffer): boolean {
    const { kind, name } = decodeTarget(payload);
    if (kind === 'P' || name === '') {
      const entry: PlanEntry = type === FrontendType.Close ? { kind: 'close' } : { kind: kind === 'P' ? 'describe-portal' : 'describe-statement' };
      this.current.push({ kind: 'raw', type, message: frameMessage(type, payload), entry });
    } else if (type === FrontendType.Describe) {
      this.current.push({ kind: 'describe', serverName: this.statements.get(name)?.serverName ?? name });
    } else {
      // Other clients may share the server statement: forget the client's name, close nothing.
      this.statements.delete(name);
      this.current.push({ kind: 'raw', type, message: encodeTarget(FrontendType.Close, 'S', CLOSED_STATEMENT), entry: { kind: 'close' } });
    }
    return true;
  }

  private addEffects(effects: readonly SessionEffect[] | undefined): void {
    if (effects && effects.length > 0) this.currentEffects.push(...effects);
  }

  private endRequest(type: number, body: Buffer, entry: PlanEntry | null, completes: boolean): boolean {
    const message = frameMessage(type, body);
    this.current.push({ kind: 'raw', type, message, entry });
    const items = this.current;
    const effects = this.currentEffects;
    this.current = [];
    this.currentEffects = [];
    const first = items[0];
    // Retrying is only invisible when the request itself describes the portal again: a client
    // that relies on its cached row description (postgres.js) must see the error instead.
    const describes = items.some((i) => i.kind === 'raw' && i.entry?.kind === 'describe-portal');
    const retryable = first?.kind === 'bind' && first.serverName !== null && completes && describes;
    this.ready.push({ items, effects, completes, retryable });
    for (const item of items) this.queuedBytes += item.kind === 'raw' ? item.message.length : 64;
    return true;
  }

  // ---- dispatch ----

  private pump(): void {
    if (this.busy || this.stopped) return;
    while (this.ready.length > 0 && !this.stopped) {
      const request = this.ready[0]!;
      if (this.lease === null) {
        if (!this.answerLocally(request)) return void this.acquire();
        continue;
      }
      const needsPrep = this.needsPreparation(this.lease, request);
      if (needsPrep) {
        if (this.inFlight > 0) return; // finish what is in flight first; pump runs again on ReadyForQuery
        return void this.prepareThenPump(this.lease, request);
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

  private needsPreparation(server: BackendConnection, request: Request): boolean {
    if (server.stateKey !== this.options.state.stateKey && this.inFlight === 0 && this.status === 'I') return true;
    if (request.items.some((i) => i.kind === 'parse' && server.staleStatements.has(i.statement.serverName))) return true;
    const parses = request.items.reduce((n, i) => n + (i.kind === 'parse' && !server.statements.has(i.statement.serverName) ? 1 : 0), 0);
    if (server.statements.size + parses > this.options.statementCapacity) return true;
    return this.missingStatements(server, request).length > 0;
  }

  /** Parse messages the request relies on that the server does not hold. */
  private missingStatements(server: BackendConnection, request: Request): Buffer[] {
    const missing: Buffer[] = [];
    const created = new Set<string>();
    for (const item of request.items) {
      if (item.kind === 'parse') created.add(item.statement.serverName);
      const name = item.kind === 'bind' ? item.serverName : item.kind === 'describe' ? item.serverName : null;
      if (item.kind === 'bind' && item.unnamedParse) missing.push(item.unnamedParse);
      if (name === null || created.has(name) || server.statements.has(name)) continue;
      const known = [...this.statements.values()].find((s) => s.serverName === name);
      if (known) {
        missing.push(known.parse);
        created.add(name);
      }
    }
    return missing;
  }

  /** Makes the server match the client's settings and hold the request's statements. */
  private async prepareThenPump(server: BackendConnection, request: Request): Promise<void> {
    this.busy = true;
    this.detachServer(server);
    try {
      const messages: Buffer[] = [];
      let readies = 0;
      if (server.stateKey !== this.options.state.stateKey) {
        messages.push(encodeQuery(['RESET ALL', ...this.options.state.syncStatements].join(';\n')));
        readies++;
      }
      const parses = this.missingStatements(server, request);
      const names = parses.map((p) => decodeParse(p.subarray(5)).name).filter((n) => n !== '');
      const incoming = names.length + request.items.filter((i) => i.kind === 'parse' && !server.statements.has(i.statement.serverName)).length;
      const keep = new Set([...names, ...request.items.flatMap((i) => (i.kind === 'parse' ? [i.statement.serverName] : []))]);
      const evictions = evictionsFor(server, incoming, this.options.statementCapacity, keep);
      // A statement being re-created, or about to be parsed by the client, may still exist in
      // an outdated form (after a cached-plan error): close it first. Closing a name the server
      // does not hold is a harmless no-op.
      const stale = request.items.flatMap((i) => (i.kind === 'parse' && server.staleStatements.has(i.statement.serverName) ? [i.statement.serverName] : []));
      const closes = [...new Set([...names, ...stale])].map((name) => encodeTarget(FrontendType.Close, 'S', name));
      if (parses.length > 0 || evictions.length > 0 || closes.length > 0) {
        messages.push(...evictions, ...closes, ...parses, encodeSync());
        readies++;
      }
      for (const name of [...names, ...stale]) server.staleStatements.delete(name);
      const { error } = await server.exchange(messages, readies, this.options.exchangeTimeoutMs);
      if (error) {
        // The server refused to set up the client's state or statements: the request fails
        // with that error, as it would have failed directly.
        server.stateKey = '';
        this.ready.shift();
        this.client.write(Buffer.concat([frameMessage(BackendType.ErrorResponse, error), encodeReadyForQuery(this.status)]));
      } else {
        server.stateKey = this.options.state.stateKey;
        for (const p of parses) {
          const name = decodeParse(p.subarray(5)).name;
          if (name !== '') touchStatement(server, name);
        }
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
