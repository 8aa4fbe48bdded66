// Transaction pooling for one client: a server connection is leased per transaction.
//
// Client side: messages are framed whole and collected into a request (up to Sync, Flush,
// Query or FunctionCall) before anything is sent (request-builder.ts); named statements are
// renamed to their shared server names (statements.ts). A request is dispatched on the lease, acquiring one
// first when the client holds none. Before the first request on a lease, the server is made to
// look like the client's session (settings replayed when they differ) and the statements the
// request uses are created there if missing, and described where a Bind relies on the result
// shape its client was shown (one short exchange, only when needed). A Bind whose statement's
// shape is another than that is refused there as Postgres refuses it (result-shapes.ts).
//
// Server side: responses are walked message by message against what each request message will
// produce (ResponsePlan); contiguous bytes are forwarded as one slice. A Parse of a statement
// the server already holds is not sent; its ParseComplete is synthesized at its place in the
// stream. On ReadyForQuery 'I' with nothing else in flight and no pin, the lease goes back to
// the pool (so it does after a request nothing answers: CopyData outside COPY, a lone Flush).
// A message type no client may send ends the session with FATAL 08P01, as Postgres does.
//
// Routing (client-routing.ts decides): a lease is taken on the primary or on a replica for the
// request at the head of the queue. A replica lease never runs a write: a write that comes next
// waits for the replica's answers, then a primary lease is taken. The first answer of a read on
// a replica is held back until it is clearly not a read-only refusal (25006); a refused read is
// re-run on the primary when nothing was sent behind it on the lease (otherwise the client gets
// the error), and its text is remembered as a write either way. A lease that ran a write transaction
// with read-your-writes on learns the server's WAL position before it goes back.
//
// A lost server (lost-transaction.ts): a request that was the first on its lease, outside a
// transaction block, and whose answer had not reached the client yet runs once more elsewhere
// when that cannot run it twice: a read (on another host), or a write refused as read-only by a
// server that turned out to be a standby. Every other in-flight request gets an ERROR and the
// client goes on; an open transaction block is then answered as aborted until it ends (unless
// what was in flight ended it: COMMIT). A request whose server is lost while being prepared for
// it counts as in flight; what is queued behind it never left and runs elsewhere. A client
// pinned to the server (session state only it held) is disconnected: that state is gone.

import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type { Logger } from 'pino';
import { SERVER_MAX_MESSAGE, type BackendConnection, type ServerSink } from '../backend/connection.ts';
import { AmbassadorError, asAmbassadorError } from '../errors.ts';
import {
  BackendType,
  decodeErrorFields,
  decodeParameterStatus,
  decodeReadyForQuery,
  encodeErrorResponse,
  encodeReadyForQuery,
  PARSE_COMPLETE,
  type ResultShape,
  type TransactionStatus,
} from '../protocol/backend.ts';
import { ALL_TYPES, Framer, FramingError, payloadStart, typeSet } from '../protocol/framer.ts';
import { encodeQuery, encodeTarget, FrontendType } from '../protocol/frontend.ts';
import { frameMessage } from '../protocol/writer.ts';
import type { GarbageBound } from '../lib/garbage-bound.ts';
import type { LeaseWaiter, ReleaseOutcome, ServerPool, ServerRequest } from '../pool/server-pool.ts';
import { parseLsn, type Choice } from '../pool/host-choice.ts';
import { returnServer } from '../pool/server-return.ts';
import type { RouteDecision } from '../router/route-decision.ts';
import type { SessionEffect, SessionEffectsCache } from '../router/session-effects.ts';
import { deallocates, dropsServerStatements, RequestBuilder, restoreDeallocated, standAlone, textsOf, usesServerStatements, type DropItem, type Item, type Request } from './request-builder.ts';
import { sameBytes } from '../lib/bytes.ts';
import { Fifo } from '../lib/fifo.ts';
import { CheckPhaseBatch } from '../lib/check-phase.ts';
import { deferToMicrotask } from '../lib/microtask.ts';
import { openWire, type Wire } from '../lib/wire.ts';
import { ResponsePlan, type PlanEntry, type StatementDrop } from './response-plan.ts';
import type { ClientSessionState } from './session-state.ts';
import { preparationFor, readyAsItIs, type Preparation } from './preparation.ts';
import { Outgoing } from './outgoing.ts';
import { forgetStatement, madeStatement, markStale, REFUSED_PARSE, touchStatement, type ClientStatement } from './statements.ts';
import { isCachedPlanError, judgeShapes, learnShapes, noteDescribed, SHAPE_REFUSAL, shapeRefused } from './result-shapes.ts';
import type { ClientRouting } from './client-routing.ts';
import { answerInLostTransaction, endsSession, lostServerError } from './lost-transaction.ts';
import type { RequestMeter } from './request-meter.ts';
import { NO_TURN, rateLimited, type UserSlot } from './user-limits.ts';

export interface TxnForwarderOptions {
  pool: ServerPool;
  request: ServerRequest;
  state: ClientSessionState;
  effects: SessionEffectsCache;
  maxMessageSize: number;
  /** Client bytes queued while waiting for a lease or a turn before the client socket is paused. */
  maxQueuedBytes: number;
  /** The client's user: its rate limit on new transactions (listen.rateLimit). */
  userSlot: UserSlot;
  statementCapacity: number;
  /** pool.cacheUnnamedStatements (request-builder.ts). */
  cacheUnnamedStatements: boolean;
  exchangeTimeoutMs: number;
  garbage: GarbageBound;
  log: Logger;
  routing: ClientRouting;
  /** Times requests, counts bytes and errors, logs queries (request-meter.ts). */
  meter: RequestMeter;
  /** A transaction that changed functions or extensions committed (the classifier re-reads them). */
  onCatalogChange: () => void;
  onEnd: (reason: string) => void;
  onIdle: () => void;
}

/** Server messages read (RowDescription and NoData: the shape of a described statement, result-shapes.ts). */
const SERVER_INSPECT = typeSet('EZCSTn');
/** Of those, delivered in place (Framer inPlace), the ones handed on as a view of their own (payload) while an answer is watched; and always. */
const SERVER_VIEWED_WATCHED = typeSet('EZCS');
const SERVER_VIEWED = typeSet('ES');
/** Owed bytes are copied in front of a write up to this size; written on their own before a larger one. */
const OWED_COPY_LIMIT = 16 * 1024;
const NOTHING = Buffer.alloc(0);
/** `held` while nothing is held back yet: hold() replaces it with an array of the first bytes held. */
const NOTHING_HELD = Object.freeze([]) as unknown as Buffer[];
/** Every message type a client may send after login (Postgres ends the session on any other). */
const FRONTEND_TYPES = typeSet('QPBEFCDHSXdcf');

export class TxnForwarder implements ServerSink, LeaseWaiter {
  private readonly clientFramer: Framer;
  /** The client chunk being framed (onClientData). */
  private clientChunk: Buffer | null = null;
  /**
   * Client bytes held back from a message on that names a statement a DEALLOCATE ALL or DISCARD
   * ALL not answered yet forgot (holdInput); the client's socket is paused meanwhile.
   */
  private heldInput: Buffer | null = null;
  /** In place: the inspected messages of every answer (CommandComplete, ReadyForQuery) are read where they lie. */
  private readonly serverFramer = new Framer(SERVER_MAX_MESSAGE, SERVER_INSPECT, true);
  private lease: BackendConnection | null = null;
  /** While a lease is awaited (waitFor): the routing decision it is for (see leaseSettled). */
  private awaited: RouteDecision | null = null;
  private readonly plan = new ResponsePlan();
  private readonly requests: RequestBuilder;
  /** How the transaction now ending ended, from CommandComplete tags; and whether it saw an error. */
  private endTag: 'COMMIT' | 'ROLLBACK' | null = null;
  private sawError = false;
  /** A RESET or DISCARD ran on the lease: it reset to the pooled connection's defaults, not the client's. */
  private serverReset = false;
  /** Requests waiting to be sent, oldest first (a client may queue hundreds of thousands). */
  private readonly ready = new Fifo<Request>();
  private queuedBytes = 0;
  private inFlight = 0;
  private unsynced = false;
  /** The exchange left open without Sync ran something the classifier calls a write (read while unsynced). */
  private openWrote = false;
  private status: TransactionStatus = 'I';
  private stopped = false;
  private busy = false;
  /** Bytes of the current server chunk not yet forwarded start here. */
  private cursor = 0;
  /** The current server chunk holds whole messages up to here; -1: it began inside one. */
  private serverWhole = 0;
  private chunk: Buffer | null = null;
  private retry: { request: Request; phase: 'watch' | 'swallow' } | null = null;
  /** The lease is on a replica (serves reads only). */
  private leaseReplica = false;
  /** Why the lease went where it did (the routing reason of the request it was taken for). */
  private leaseReason = 'split-off';
  /** No request has been sent on the lease yet. */
  private leaseFresh = false;
  /** A write ran on the lease: capture the WAL position before it goes back (read-your-writes). */
  private leaseWrote = false;
  /** The transaction now ending changed functions or extensions. */
  private catalogChanged = false;
  /**
   * The first request on a lease, whose first answer is being held back (see watchFirstAnswer);
   * fields of the forwarder, not an object made for each request watched (most are).
   */
  private watched: Request | null = null;
  /** The watched request was refused: its answer up to ReadyForQuery is dropped. */
  private swallowing = false;
  /**
   * Client-bound bytes held back meanwhile (copies): NOTHING_HELD until the first, null when
   * nothing is being held back.
   */
  private held: Buffer[] | null = null;
  /**
   * Client-bound bytes that go out in front of the next write (say): ParseCompletes the
   * ambassador answered, and a watched answer's released acknowledgements, travel with the
   * server's next answer in one write instead of a write of their own. Set only while a server
   * answer is due; paid at the latest when the server's chunk has been handled (onServerData). A
   * finished answer is owed too while clients wait for the pool: then what is owed is paid in
   * the check phase (owedLate, see say).
   */
  private owed: Buffer | null = null;
  /** What is owed is paid in the check phase (queued in LATE_PAYMENTS), not at the chunk's end. */
  private owedLate = false;
  /** An ErrorResponse came since the last ReadyForQuery: an open exchange failed, and the server skips up to its Sync. */
  private exchangeFailed = false;
  /** pump() waits for answers of an exchange left open, after which no ReadyForQuery comes (awaitingAnswers). */
  private pumpWhenAnswered = false;
  /** The ambassador's own exchange runs on the lease (a preparation, the advisory-lock check). */
  private ownExchange = false;
  /** The FATAL error the server sent before closing (told to the client as an ERROR). */
  private serverFatal: Buffer | null = null;
  /** After a lost server: the rest of an extended-protocol exchange is skipped up to Sync. */
  private skipToSync = false;
  /** After a lost server while idle in a transaction block: the error its next request gets. */
  private lostError: Buffer | null = null;
  /**
   * The last transaction-control statement sent ends the block (COMMIT, ROLLBACK, PREPARE
   * TRANSACTION; not AND CHAIN): a server lost with it in flight leaves no block open for the
   * client (onServerClose). Noted for requests with session effects only (applyAtSend).
   */
  private blockEndSent = false;
  /** The request at the head that had its turn under the user's rate limit. */
  private admitted: Request | null = null;
  /** Waiting for that turn. */
  private turnTimer: NodeJS.Timeout | null = null;
  /** The request whose unnamed statement a preparation re-created, and where (not to be re-created again). */
  private unnamedReplayed: { request: Request; server: BackendConnection } | null = null;
  /** The client's bytes, both ways. */
  private readonly wire: Wire;

  constructor(
    private readonly client: net.Socket,
    private readonly options: TxnForwarderOptions,
  ) {
    // In place: the request builder reads a message that lies whole in the chunk from the chunk.
    this.clientFramer = new Framer(options.maxMessageSize, ALL_TYPES, true);
    this.requests = new RequestBuilder(options.effects, (sql) => options.routing.statementCommand(sql), { cacheUnnamed: options.cacheUnnamedStatements });
    this.wire = openWire(client, { onData: this.onClientData, onDrain: this.onClientDrain });
  }

  /** The server connection leased right now, if any (for cancel). */
  get server(): BackendConnection | null {
    return this.lease;
  }

  /**
   * The client canceled while its next request waits for a server (the pool, or its user's rate
   * limit): that request never runs, and is answered as Postgres answers a canceled statement
   * (57014), then ReadyForQuery; what the client queued behind it goes on. Nothing else waits
   * here: a request the ambassador can run now is already running, and its server gets the cancel.
   */
  cancelWaiting(): void {
    if (this.stopped || this.lease !== null || this.ready.length === 0 || (this.awaited === null && this.turnTimer === null)) return;
    this.options.log.info('cancel of a request waiting for a server: answered 57014, not run');
    // The wait goes on: the server or turn it brings goes back unused, or to what is queued next.
    this.failHead(new AmbassadorError('QUERY_CANCELED', 'canceling statement due to user request'));
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.ready.length === 0 && !this.requests.pending && this.heldInput === null && this.status === 'I';
  }

  /** Inside a transaction block, waiting for the client's next request. */
  get idleInTransaction(): boolean {
    return this.inFlight === 0 && this.ready.length === 0 && !this.requests.pending && this.heldInput === null && this.status !== 'I' && !this.busy;
  }

  get clientAtBoundary(): boolean {
    return this.lease === null || this.serverFramer.atBoundary;
  }

  /** The client waits for a server connection or for its turn under the rate limit (SHOW CLIENTS, metrics). */
  get waiting(): boolean {
    return this.awaited !== null || this.turnTimer !== null;
  }

  start(held: Buffer[]): void {
    for (const chunk of held) this.onClientData(chunk);
    if (this.heldInput === null) this.wire.resume();
  }

  // ---- client side ----

  private readonly onClientMessage = (type: number, payload: Buffer | null, length: number, end: number): boolean => {
    if (!FRONTEND_TYPES[type]) {
      // As Postgres answers it: FATAL, and the connection ends. Nothing of it went upstream.
      this.failClient(new AmbassadorError('PROTOCOL_VIOLATION', `invalid frontend message type ${type}`));
      return false;
    }
    // A message that lies whole in this chunk (no payload: see Framer inPlace) goes on as that
    // range of it, nothing copied; one that began in an earlier chunk was assembled, and is
    // framed again.
    const request = payload === null ? this.requests.add(type, null, this.clientChunk, end - length - 1, end) : this.requests.add(type, payload);
    if (request === null) return true;
    if (request === 'wait') return this.holdInput(type, payload, length, end);
    if (request === 'terminate') {
      this.stopped = true;
      this.options.onEnd('client sent Terminate');
      return false;
    }
    this.ready.push(request);
    this.queuedBytes += request.bytes;
    return true;
  };

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.options.meter.traffic.received += chunk.length;
    if (this.heldInput !== null) {
      // Read with what is held, in order (the socket is paused: this is what it had read).
      this.heldInput = Buffer.concat([this.heldInput, chunk]);
      return;
    }
    if (!this.frameClient(chunk)) return;
    if (this.queuedBytes > this.options.maxQueuedBytes) this.wire.pause();
    this.pump();
  };

  /** Reads the client's messages in `chunk` into requests; false when they broke the protocol (the client is failed). */
  private frameClient(chunk: Buffer): boolean {
    this.clientChunk = chunk;
    try {
      this.clientFramer.push(chunk, this.onClientMessage);
      return true;
    } catch (err) {
      const reason = err instanceof FramingError && err.reason === 'message-too-large' ? 'MESSAGE_TOO_LARGE' : 'PROTOCOL_VIOLATION';
      this.failClient(new AmbassadorError(reason, err instanceof Error ? err.message : String(err)));
      return false;
    } finally {
      this.clientChunk = null;
    }
  }

  /**
   * The message names a statement that a DEALLOCATE ALL or DISCARD ALL forgot, and one may not
   * be answered yet (RequestBuilder.add: 'wait'). Refused, it leaves the client the name, which
   * Postgres would then use; so the message, and what follows it, is read again once every drop
   * is answered (readHeldInput). Clients rarely name what they just dropped: this costs a round
   * trip only then.
   */
  private holdInput(type: number, payload: Buffer | null, length: number, end: number): boolean {
    if (!this.dropsUnanswered()) {
      this.requests.dropsAnswered();
      return this.onClientMessage(type, payload, length, end);
    }
    // A message that began in an earlier chunk was assembled (payload): framed again.
    const chunk = this.clientChunk!;
    const message = payload === null ? chunk.subarray(end - length - 1, end) : frameMessage(type, payload);
    this.heldInput = Buffer.concat([message, chunk.subarray(end)]);
    this.wire.pause();
    this.awaitingAnswers(); // an exchange left open pumps again at its last answer
    return false;
  }

  /** pump(): what holdInput held is read once no drop is left unanswered. */
  private readHeldInput(): void {
    if (this.dropsUnanswered()) return void this.awaitingAnswers();
    const held = this.heldInput!;
    this.heldInput = null;
    this.requests.dropsAnswered();
    this.frameClient(held);
  }

  /** A DEALLOCATE ALL or DISCARD ALL the client sent is in flight, or waits to be sent. */
  private dropsUnanswered(): boolean {
    if (this.plan.dropping) return true;
    for (let i = 0; i < this.ready.length; i++) if (this.ready.at(i)!.items.some(dropsServerStatements)) return true;
    return false;
  }

  // ---- dispatch ----

  private readonly pumpLater = (): void => this.pump();

  private pump(): void {
    if (this.heldInput !== null && !this.stopped) this.readHeldInput();
    // While a retried request's error or a refusal is being swallowed, nothing may go behind it
    // on the lease (watchRetry, watchFirstAnswer): it is given back, or re-run, at ReadyForQuery.
    if (this.busy || this.stopped || this.retry?.phase === 'swallow' || this.swallowing) return;
    const routing = this.options.routing;
    while (this.ready.length > 0 && !this.stopped) {
      const request = this.ready.first!;
      if (this.skipToSync || (this.lease === null && this.status !== 'I')) {
        // A lease is given back only between transactions: a status other than 'I' without one
        // means the transaction's server was lost. And after an error the ambassador gave a
        // request ending in Flush, the rest of its exchange is skipped up to its Sync.
        this.answerLost(request);
        continue;
      }
      // Whether a DEALLOCATE is answered here depends on how what is in flight ends (a failed
      // transaction refuses it): it waits for that.
      if (request.local !== null && this.inFlight > 0 && !this.unsynced && deallocates(request.local)) return;
      const command = routing.localCommand(request, this.status, this.unsynced);
      if (command !== null) {
        // Answers keep their order: after what is in flight (a ReadyForQuery pumps again), and
        // after the answers of an exchange left open so far (none comes: they pump again).
        if (this.awaitingAnswers()) return;
        // Where a write committed counts first (read-your-writes): SHOW ambassador.min_lsn and
        // the reads behind it see it. The capture pumps again once the lease is back.
        if (this.capturesCommit()) return void this.captureCommitThenRelease(this.lease!);
        this.ready.shift();
        this.queuedBytes -= request.bytes;
        this.say(routing.answer(command, this.status));
        continue;
      }
      // A server runs it after all (a failed transaction refuses it there, as Postgres does).
      if (request.local !== null) restoreDeallocated(request.local);
      let lease = this.lease;
      if (lease === null && this.answerLocally(request)) continue;
      if (this.admitted !== request && this.options.userSlot.limited && this.status === 'I' && this.inFlight === 0 && this.plan.empty) {
        const wait = this.options.userSlot.turn();
        if (wait === NO_TURN) {
          this.failHead(rateLimited(this.options.userSlot));
          continue;
        }
        this.admitted = request;
        if (wait > 0) return this.waitTurn(wait);
      }
      if (lease === null) {
        lease = this.acquire(request);
        if (lease === null) return;
      }
      if (this.leaseReplica && !this.unsynced && routing.decide(request).kind === 'write') {
        // Not on a replica: let it finish what it runs, then move to the primary. Only its
        // answers tell whether a transaction is still open there: a COMMIT in flight ends the
        // client's read-only transaction, and what it pipelined behind it goes to the primary.
        // (It goes on here inside a read-only transaction, whose server refuses it as Postgres
        // does. Inside an exchange the client left open without Sync it goes on at once, as it
        // must: a read-only refusal then re-runs it on the primary.)
        if (this.awaitingAnswers()) return;
        if (this.status === 'I' && !this.options.state.pinned) {
          this.releaseLease();
          continue;
        }
      }
      // Behind a DEALLOCATE ALL or DISCARD ALL not answered yet, what the server holds is not
      // known: it may be refused. What depends on that waits for its answer; the rest goes on
      // (Npgsql pipelines DISCARD ALL in front of the first command of a connection it reuses).
      if (this.plan.dropping && usesServerStatements(request) && this.awaitingAnswers()) return;
      const plan = this.preparation(lease, request);
      if (plan !== null) {
        if (this.awaitingAnswers()) return; // what is in flight finishes first
        // Inside an exchange the client left open without Sync, the statements are made within
        // it (with Flush: a Sync would end the client's implicit transaction), unless it failed,
        // when the server skips everything up to the client's Sync, this request too: then it
        // goes as it is.
        if (!this.unsynced || !this.exchangeFailed) return void this.prepareThenPump(lease, plan, request);
        this.ready.shift();
        this.send(lease, request);
        for (const name of plan.created) lease.statements.delete(name); // its Binds touched them; nothing made them
        continue;
      }
      // A Parse of a statement whose Parse in a request before it is still unanswered waits for
      // that answer: the statement counts as held from when its Parse went, but that Parse may
      // fail, or be skipped after an error, and then this one must go to the server.
      if (this.inFlight > 0 && this.parsesUnconfirmed(lease, request)) return;
      this.ready.shift();
      this.send(lease, request);
    }
    // What was sent ends in no ReadyForQuery and left nothing open (CopyData outside COPY, a
    // lone Flush): the lease goes back now, or an idle client would hold it indefinitely.
    if (this.lease !== null && !this.stopped && this.ready.length === 0 && this.leaseUnused) {
      if (this.capturesCommit()) return void this.captureCommitThenRelease(this.lease);
      this.releaseLease();
    }
    // Every drop answered (here too: one refused or failed by the ambassador leaves no answer to
    // pump for): what held input waited for is known, and the builder stops looking for names.
    if (this.requests.forgetting && !this.stopped && !this.dropsUnanswered()) {
      if (this.heldInput === null) this.requests.dropsAnswered();
      else deferToMicrotask(this.pumpLater);
    }
    if (this.queuedBytes <= this.options.maxQueuedBytes && this.heldInput === null) this.wire.resume();
  }

  /** Nothing is in flight or open on the lease, and no session state ties the client to it. */
  private get leaseUnused(): boolean {
    return this.inFlight === 0 && this.status === 'I' && !this.unsynced && this.plan.empty && !this.options.state.pinned;
  }

  /**
   * Whether answers are still due on the lease before pump() may go on; it runs again once they
   * are in: at ReadyForQuery, or at the last answer of an exchange left open (pumpWhenAnswered),
   * after which no ReadyForQuery comes.
   */
  private awaitingAnswers(): boolean {
    if (this.inFlight > 0) return true;
    if (this.plan.empty) return false;
    this.pumpWhenAnswered = true;
    return true;
  }

  /** Whether `request` parses a statement that `server` holds only by a Parse not answered yet. */
  private parsesUnconfirmed(server: BackendConnection, request: Request): boolean {
    for (const item of request.items) {
      if (item.kind === 'parse' && this.plan.parsing(item.statement.serverName) && server.statements.has(item.statement.serverName)) return true;
    }
    return false;
  }

  /** The lease ran a write that read-your-writes must learn the commit position of before it goes back (or anything is answered here). */
  private capturesCommit(): boolean {
    return this.leaseWrote && this.lease !== null && this.options.routing.capturesWrites && this.leaseUnused;
  }

  /** The user's rate limit gave the head request a turn `ms` from now: nothing moves until then. */
  private waitTurn(ms: number): void {
    this.busy = true;
    this.turnTimer = setTimeout(() => {
      this.turnTimer = null;
      this.busy = false;
      this.pump();
    }, ms);
  }

  /**
   * A request that only prepares named statements (libpq's PQprepare: Parse, Sync) needs no
   * server: the statements are recorded and created on a server when first used. Answering it
   * here keeps a client that prepares while every lease is taken from waiting on the pool (with
   * pgbench -M prepared, a thread blocked in PQprepare holds up its own clients' transactions,
   * and nothing moves). A mistake in such a statement is reported when it is first executed.
   */
  private answerLocally(request: Request): boolean {
    if (request.items[0]!.kind !== 'parse') return false;
    const last = request.items.at(-1);
    const endsWithSync = last?.kind === 'raw' && last.type === FrontendType.Sync;
    const endsWithFlush = last?.kind === 'raw' && last.type === FrontendType.Flush;
    if (!(endsWithSync || endsWithFlush) || request.items.length < 2) return false;
    if (!request.items.slice(0, -1).every((i) => i.kind === 'parse')) return false;
    this.ready.shift();
    this.queuedBytes -= request.bytes;
    const answers = Array<Buffer>(request.items.length - 1).fill(PARSE_COMPLETE);
    if (endsWithSync) answers.push(encodeReadyForQuery(this.status));
    this.say(Buffer.concat(answers));
    return true;
  }

  /**
   * Answers a request while no server holds the client's transaction any more (see
   * lost-transaction.ts), or skips what the client sends up to Sync after a lost exchange.
   */
  private answerLost(request: Request): void {
    this.ready.shift();
    this.queuedBytes -= request.bytes;
    this.requests.unanswered(request);
    if (this.skipToSync) {
      if (!request.completes) return;
      this.skipToSync = false;
      return void this.say(encodeReadyForQuery(this.status));
    }
    const answer = answerInLostTransaction(request, this.lostError);
    this.lostError = null;
    this.status = answer.status;
    this.skipToSync = answer.skipToSync;
    this.say(answer.bytes);
  }

  /**
   * Takes a lease where the request at the head of the queue must run: the lease when one was
   * idle and is attached now; otherwise null, and pump() runs again once the pool hands one over.
   */
  private acquire(request: Request): BackendConnection | null {
    if (this.awaited !== null) return null;
    const { pool, routing } = this.options;
    const decision = routing.decide(request);
    const shared = routing.routeRequest(decision);
    const route = request.avoid === null ? shared : { ...shared, avoid: request.avoid };
    const meter = this.options.meter;
    const now = pool.tryAcquireFor(route, this.options.request);
    if (now !== null && !isChoice(now)) {
      meter.noWait();
      this.leased(now, decision);
      return now;
    }
    meter.waitStarted();
    this.busy = true;
    this.awaited = decision;
    pool.waitFor(route, this.options.request, now, this);
    return null;
  }

  /** The pool's answer to the wait acquire() began: a server for the request at the head of the queue, or why there is none. */
  leaseSettled(err: unknown, server: BackendConnection | null): void {
    const decision = this.awaited!;
    this.awaited = null;
    this.busy = false;
    this.options.meter.waitEnded();
    if (server !== null) {
      if (this.stopped) return this.options.pool.release(server, 'reusable');
      this.leased(server, decision);
    } else if (err instanceof AmbassadorError && err.code === 'NO_REPLICA') {
      // No replica for a read: that request fails and the next may still run; anything else
      // (no primary after failover.timeout, the upstream refusing us) fails what is queued.
      this.failHead(err);
    } else {
      this.answerWithError(err);
    }
    this.pump();
  }

  private leased(server: BackendConnection, decision: RouteDecision): void {
    const { pool, log } = this.options;
    if (log.isLevelEnabled('debug')) log.debug({ route: decision.kind, reason: decision.reason, host: pool.hostIdOf(server) }, 'routing decision');
    this.leaseReplica = pool.roleOf(server) === 'replica';
    this.leaseWrote = decision.kind === 'write';
    this.leaseReason = decision.reason;
    this.attach(server);
  }

  /** Runs `request` once more, on another host than `hostId` (where it failed without running). */
  private runElsewhere(request: Request, hostId: string | null, why: string): void {
    request.retried = true;
    if (hostId !== null) request.avoid = [...(request.avoid ?? []), hostId];
    this.options.log.info({ host: hostId, reason: why }, 'running the request again on another host');
  }

  /**
   * Answers the request at the head of the queue with `err`, as a server would: the error, then
   * everything up to the next Sync skipped, then ReadyForQuery.
   */
  private failHead(err: AmbassadorError): void {
    const out: Buffer[] = [errorResponse(err)];
    this.options.meter.error(err.sqlstate);
    let open = true;
    while (this.ready.length > 0) {
      const request = this.ready.shift()!;
      this.queuedBytes -= request.bytes;
      this.requests.unanswered(request);
      if (request.completes) {
        out.push(encodeReadyForQuery(this.status));
        open = false;
        break;
      }
    }
    // Its exchange is not over (it ended in Flush): what the client sends up to its Sync is
    // skipped, as a server skips after an error. Sent on, a Bind of the unnamed statement parsed
    // in it would bind whatever a server holds.
    if (open) this.skipToSync = true;
    this.say(Buffer.concat(out));
  }

  /**
   * Answers every request queued so far with `err`: no server could be had for them (the client
   * stays connected). Each exchange is answered as a server answers one that fails: the error,
   * the rest skipped up to its Sync, ReadyForQuery. One whose Sync has not come yet (a client
   * waiting after Flush) gets the error now and ReadyForQuery at its Sync (skipToSync).
   */
  private answerWithError(err: unknown): void {
    const e = asAmbassadorError(err);
    const out: Buffer[] = [];
    let open = false;
    while (this.ready.length > 0) {
      const request = this.ready.shift()!;
      this.requests.unanswered(request);
      // A lone Flush (or CopyData outside COPY) is owed no answer.
      if (!open && !answerless(request)) {
        out.push(errorResponse(e));
        this.options.meter.error(e.sqlstate);
        open = true;
      }
      if (request.completes) {
        out.push(encodeReadyForQuery(this.status));
        open = false;
      }
    }
    this.queuedBytes = 0;
    if (open) this.skipToSync = true;
    if (out.length > 0) this.say(Buffer.concat(out));
  }

  private preparation(server: BackendConnection, request: Request): Preparation | null {
    const state = this.options.state;
    const unnamedReplayed = this.unnamedReplayed?.request === request && this.unnamedReplayed.server === server;
    if (server.stateKey === state.stateKey && readyAsItIs(server, request, unnamedReplayed)) return null;
    return preparationFor(server, request, {
      stateKey: state.stateKey,
      syncStatements: state.syncStatements,
      canSyncState: this.inFlight === 0 && this.status === 'I' && !this.unsynced,
      capacity: this.options.statementCapacity,
      unnamedReplayed,
      inExchange: this.unsynced,
    });
  }

  /** Makes the server match the client's settings and hold the request's statements. */
  private async prepareThenPump(server: BackendConnection, plan: Preparation, request: Request): Promise<void> {
    this.busy = true;
    this.ownExchange = true;
    this.detachServer(server);
    try {
      for (const name of plan.evicted) forgetStatement(server, name);
      const inExchange = this.unsynced;
      const shapes: Array<ResultShape | null> = [];
      const { error } = await server.exchange(plan.messages, inExchange ? { acknowledgements: plan.acknowledgements } : plan.readies, this.options.exchangeTimeoutMs, { shapes });
      for (const name of plan.refreshed) server.staleStatements.delete(name);
      if (error && inExchange) {
        // Its statement could not be made again: the client hears why, as the error of its
        // exchange, whose rest the server now skips up to the client's Sync (this request too),
        // and whose implicit transaction it rolls back.
        this.exchangeFailed = true;
        this.sawError = true;
        this.options.meter.serverError(error);
        this.say(frameMessage(BackendType.ErrorResponse, error));
      } else if (error) {
        // The server refused to set up the client's state or statements: the request fails
        // with that error, as it would have failed directly: at its Sync, or, ended in Flush,
        // the rest of its exchange up to the Sync is skipped (the server never saw it).
        server.stateKey = '';
        const refused = this.ready.shift()!;
        this.queuedBytes -= refused.bytes;
        this.requests.unanswered(refused);
        this.options.meter.serverError(error);
        this.status = server.transactionStatus; // a block the preparation failed in is failed
        const answer = frameMessage(BackendType.ErrorResponse, error);
        if (refused.completes) this.say(Buffer.concat([answer, encodeReadyForQuery(this.status)]));
        else {
          this.skipToSync = true;
          this.say(answer);
        }
      } else {
        if (plan.syncsState) server.stateKey = this.options.state.stateKey;
        for (const name of plan.created) madeStatement(server, name);
        this.unnamedReplayed = { request, server };
      }
      learnShapes(server, plan.described, shapes, error);
      if (error === null) judgeShapes(server, request, plan.described);
    } catch {
      if (this.ownExchangeEnded(server, true)) this.lostPreparing(request);
      return;
    }
    if (!this.ownExchangeEnded(server, false)) return;
    this.attachServer(server);
    this.pump();
  }

  /**
   * The ambassador's own exchange on the lease (a preparation, the advisory-lock check) ended,
   * `failed` when the server was lost or did not answer. False when the forwarder is done with
   * the server: the client left meanwhile (stop() leaves the lease to the exchange, which gives
   * it back now), or the lease is no longer this server.
   */
  private ownExchangeEnded(server: BackendConnection, failed: boolean): boolean {
    this.busy = false;
    this.ownExchange = false;
    if (this.lease !== server) {
      this.options.pool.release(server, 'broken'); // nothing else holds it
      return false;
    }
    if (!this.stopped) return true;
    if (failed) {
      this.lease = null;
      this.options.pool.release(server, 'broken');
    } else this.giveBack();
    return false;
  }

  /**
   * The server was lost while it was being prepared for `request`, the head of the queue. The
   * client waits for that request's answer (postgres.js waits for a Describe it sent with
   * Flush): it is answered as a request in flight on the lost server (onServerClose), with the
   * loss, and with it goes a transaction block or an exchange left open there. The requests
   * queued behind it never left the ambassador: they run on another server.
   */
  private lostPreparing(request: Request): void {
    this.ready.shift();
    this.requests.unanswered(request); // the statements it parses were not made
    this.queuedBytes -= request.bytes;
    // Counted as send() counts what it sends.
    if (request.completes) {
      this.inFlight++;
      this.unsynced = false;
    } else if (!answerless(request)) this.unsynced = true;
    this.noteBlockEnd(request.effects);
    this.onServerClose();
    this.pump();
  }

  /** Binds a request to the server and writes it; the plan learns what to expect. */
  private send(server: BackendConnection, request: Request): void {
    const routing = this.options.routing;
    this.unnamedReplayed = null;
    if (request.effects.length > 0) this.applyAtSend(request);
    if (!this.leaseWrote && !this.leaseReplica && routing.capturesWrites) this.leaseWrote = routing.decide(request).kind === 'write';
    const planWasEmpty = this.plan.empty;
    // Behind an exchange left open without Sync, a request is part of that one's implicit
    // transaction: it can be neither retried nor run again alone, unless that exchange only read
    // on a replica (not so after SET LOCAL or set_config(..., true), which a replica runs).
    const alone = !this.unsynced;
    const behindReads = this.unsynced && !this.openWrote && this.leaseReplica;
    OUTGOING.clear(); // what a send that threw half-way left
    if (request.effects.length > 0) this.materializeInOrder(server, request.items);
    else for (const item of request.items) this.materialize(server, item);
    this.queuedBytes -= request.bytes;
    const first = this.status === 'I' && planWasEmpty && this.inFlight === 0;
    if (request.completes) {
      this.inFlight++;
      this.unsynced = false;
    } else if (!answerless(request)) {
      // Extended-protocol messages sent without Sync (Flush): the rest must follow on this lease.
      this.openWrote = (this.unsynced && this.openWrote) || routing.decide(request).kind === 'write';
      this.unsynced = true;
    }
    if (request.retryable && this.status === 'I' && planWasEmpty && alone) this.retry = { request, phase: 'watch' };
    // A request sent behind a watched one: a retry would clear the plan, and the answers of this one with it.
    else if (this.retry !== null) this.retry = null;
    if (first && (alone || behindReads) && request.completes && this.watchesFirstAnswer(request)) {
      this.watched = request;
      this.held = NOTHING_HELD;
    }
    const bytes = OUTGOING.take();
    if (bytes !== null) server.write(bytes);
    // The server works on it from here: what only keeps count comes after the write.
    if (request.completes) {
      const meter = this.options.meter;
      meter.sent(this.leaseReplica ? 'replica' : 'primary', this.requestReason(), meter.wantsTexts ? textsOf(request) : null, first);
      this.leaseFresh = false;
    }
    if (bytes !== null) this.options.garbage.account(bytes.length);
    // A request that ends in Sync gets a ReadyForQuery at least: what was answered here goes with it.
    this.flushSynthesized(!request.completes);
  }

  /** The routing reason a request sent now counts under (metrics): its lease's, or why it follows it. */
  private requestReason(): string {
    if (this.leaseFresh) return this.leaseReason;
    if (this.status !== 'I') return 'in-transaction';
    return this.options.state.pinned ? 'pinned' : 'same-lease';
  }

  /** Stages the request's session effects. */
  private applyAtSend(request: Request): void {
    const effects = request.effects;
    this.options.state.stage(effects);
    this.noteBlockEnd(effects);
    if (effects.some((e) => (e.kind === 'set' || e.kind === 'reset') && e.name.startsWith('ambassador.'))) this.options.routing.applyDirectives(request);
    if (effects.some((e) => e.kind === 'reset' || e.kind === 'reset-all' || e.kind === 'discard')) this.serverReset = true;
  }

  /**
   * materialize() for each item of a request with session effects. One that runs DEALLOCATE ALL
   * or DISCARD ALL (dropsServerStatements) drops the server's statements, the shared ones too,
   * once its CommandComplete says it ran (noteDrop). In message order: a Parse before it made a
   * statement that it drops, and one behind it makes its statement again (parseBehindDrop).
   */
  private materializeInOrder(server: BackendConnection, items: readonly Item[]): void {
    let drop: StatementDrop | null = null;
    for (const item of items) {
      if (dropsServerStatements(item)) drop = this.materializeDrop(item);
      else if (drop !== null && item.kind === 'parse') this.parseBehindDrop(server, item.statement, drop);
      else this.materialize(server, item);
    }
  }

  private materializeDrop(item: DropItem): StatementDrop {
    OUTGOING.add(item.chunk, item.start, item.end);
    const drop = item.entry.drop;
    drop.ran = false; // a request is sent again after a retry, or a refusal elsewhere
    this.plan.addDrop(item.entry);
    return drop;
  }

  /**
   * A Parse behind a DEALLOCATE ALL or DISCARD ALL of its request goes to the server even when
   * that holds its statement: it is gone once the drop has run. Skipped, as when the drop did
   * not run, it leaves the server as it was.
   */
  private parseBehindDrop(server: BackendConnection, statement: ClientStatement, drop: StatementDrop): void {
    const name = statement.serverName;
    const held = server.statements.has(name);
    madeStatement(server, name);
    OUTGOING.add(statement.parse);
    this.plan.add({
      kind: 'parse',
      name,
      onError: () => {
        if (!held || drop.ran) server.statements.delete(name);
        this.requests.parseFailed(statement);
      },
    });
  }

  /**
   * A CommandComplete while a DEALLOCATE ALL or DISCARD ALL is not answered yet (payload
   * `bytes[from, to)`): that of the entry at the head (an Execute's, or a Query's with the tag)
   * says it ran. The server holds nothing from then on but what the Parses sent behind it make.
   */
  private noteDrop(bytes: Buffer, from: number, to: number): void {
    const drop = this.plan.currentDrop;
    const server = this.lease;
    if (drop === undefined || server === null || (this.plan.current!.kind === 'query' && !droppingTag(bytes, from, to))) return;
    drop.ran = true;
    server.forgetStatements();
    for (const name of this.plan.parsesBehindHead()) touchStatement(server, name);
  }

  private noteBlockEnd(effects: readonly SessionEffect[]): void {
    const ends = endsBlock(effects);
    if (ends !== null) this.blockEndSent = ends;
  }

  /** Adds an item's message to what goes out, and what the server will answer it to the plan. */
  private materialize(server: BackendConnection, item: Item): void {
    const out = OUTGOING;
    const plan = this.plan;
    switch (item.kind) {
      case 'raw':
        out.add(item.chunk, item.start, item.end);
        if (item.entry) plan.add(item.entry);
        return;
      case 'parse': {
        const statement = item.statement;
        const name = statement.serverName;
        if (server.statements.has(name)) {
          touchStatement(server, name);
          // Skipped after an error, a Parse of a name made nothing: the client may parse it again.
          if (item.unnamed) plan.addSynthesized();
          else plan.addSynthesized(() => this.requests.parseFailed(statement));
          return;
        }
        madeStatement(server, name);
        out.add(statement.parse);
        // Failed or skipped: neither the server nor the client holds it (the client may parse its name again).
        plan.add({
          kind: 'parse',
          name,
          onError: () => {
            server.statements.delete(name);
            this.requests.parseFailed(statement);
          },
        });
        return;
      }
      case 'bind':
        if (item.rename === null) {
          out.add(item.chunk, item.start, item.end);
          plan.add(PLAIN_BIND);
        } else if (item.relies && shapeRefused(server, item.source!)) {
          // Its statement's result shape is no longer the one the client reads rows by: it fails as in Postgres (result-shapes.ts).
          out.add(REFUSED_PARSE);
          plan.add(SHAPE_REFUSAL);
        } else {
          // Without a source, it names a statement nothing has (the client never prepared it).
          if (item.source !== null) touchStatement(server, item.serverName!);
          out.addRenamedBind(item, item.rename);
          plan.add(item.source === null ? PLAIN_BIND : item.source.bindEntry);
        }
        return;
      case 'describe':
        out.add(encodeTarget(FrontendType.Describe, 'S', item.serverName));
        plan.add(item.source === null ? { kind: 'describe-statement' } : { kind: 'describe-statement', shows: item.source });
        return;
    }
  }

  // ---- server side ----

  private attach(server: BackendConnection): void {
    this.lease = server;
    this.exchangeFailed = false;
    this.leaseFresh = true;
    this.catalogChanged = false;
    this.status = server.transactionStatus;
    this.attachServer(server);
  }

  private attachServer(server: BackendConnection): void {
    this.serverFramer.reset();
    server.attach(this);
  }

  private detachServer(server: BackendConnection): void {
    server.detach(this);
  }

  readonly onServerData = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.chunk = chunk;
    this.cursor = 0;
    this.serverWhole = this.serverFramer.atBoundary ? 0 : -1;
    try {
      this.serverFramer.push(chunk, this.onServerMessage);
    } catch (err) {
      return this.failServer(err);
    }
    if (this.chunk !== null) {
      this.forwardUpTo(chunk.length);
      this.chunk = null;
    }
    if (this.owed !== null && !this.stopped && !this.owedLate) this.say(NOTHING);
    if (this.pumpWhenAnswered && this.plan.empty) {
      this.pumpWhenAnswered = false;
      deferToMicrotask(this.pumpLater);
    }
    this.options.garbage.account(chunk.length);
  };

  private readonly onServerMessage = (type: number, payload: Buffer | null, length: number, end: number): boolean => {
    const goOn = this.onServerMessageOf(type, payload, length, end);
    this.serverWhole = end; // not reached when the message broke the protocol (it threw)
    return goOn;
  };

  /**
   * The server broke the protocol (a length out of bounds, an invalid ReadyForQuery): the whole
   * messages before the fault still reach the client, and the connection is dropped as a lost
   * one (onServerClose): what was in flight is answered with ERROR 08P01 and the client goes on,
   * unless part of a message already reached it (then only the close can tell).
   */
  private failServer(err: unknown): void {
    const server = this.lease!;
    const where = `${server.target.host}:${server.target.port}`;
    const message = `malformed data from the server: ${err instanceof Error ? err.message : String(err)}`;
    this.options.log.warn({ host: where, reason: message }, 'server broke the protocol: connection dropped');
    if (this.serverWhole >= 0) {
      this.forwardUpTo(this.serverWhole);
      this.serverFramer.reset();
    }
    this.chunk = null;
    this.serverFatal = encodeErrorResponse({ severity: 'FATAL', code: PROTOCOL_VIOLATION, message }).subarray(5);
    this.onServerClose();
  }

  private onServerMessageOf(type: number, given: Buffer | null, length: number, end: number): boolean {
    // An inspected message that lies whole in the chunk comes without a payload (Framer inPlace):
    // ReadyForQuery, CommandComplete, RowDescription and NoData, in every answer, are read where
    // they lie; the rarer ones, and the first two while an answer is watched, get a view.
    let payload = given;
    if (payload === null && SERVER_VIEWED_WATCHED[type] === 1 && (SERVER_VIEWED[type] === 1 || this.watched !== null || this.retry !== null)) {
      payload = this.chunk!.subarray(payloadStart(length, end), end);
    }
    if (type === BackendType.ErrorResponse && endsSession(payload!)) {
      // The server is closing (shutdown, crash, terminated backend): the client hears of it as
      // an ERROR once the connection is gone (onServerClose), and keeps its own connection.
      this.forwardUpTo(end - payload!.length - 5);
      this.cursor = end;
      this.serverFatal = Buffer.from(payload!);
      return true;
    }
    // A refusal re-run gives the lease back (rerunAfterRefusal): nothing more of this chunk is read.
    if (this.watched !== null && this.watchFirstAnswer(type, payload, end)) return this.lease !== null;
    if (this.retry !== null && this.watchRetry(type, payload, end)) return true;
    if (type === BackendType.ErrorResponse) {
      this.sawError = true;
      this.exchangeFailed = true;
      this.options.meter.serverError(this.refusalInstead(payload!, end));
      this.noteStaleStatement(payload!);
      this.plan.fail();
    } else if (type === BackendType.ReadyForQuery) {
      this.status = payload !== null ? decodeReadyForQuery(payload) : decodeReadyForQuery(this.chunk!, payloadStart(length, end), end);
      this.exchangeFailed = false;
      this.plan.complete(type);
      // The client has its answer before the ambassador counts it (or it is due in this turn).
      this.forwardUpTo(end, this.options.pool.contended);
      // A request sent behind this one may begin with a Parse the ambassador answers itself: its
      // ParseComplete comes before anything the server says next (it is owed to that write).
      if (this.plan.synthesizedPending) this.flushSynthesized(false);
      this.options.meter.answered(this.status, this.lease);
      return this.onReady();
    } else if (type === BackendType.CommandComplete) {
      const bytes = payload ?? this.chunk!;
      const from = payload !== null ? 0 : payloadStart(length, end);
      const to = payload !== null ? payload.length : end;
      const tag = transactionEndTag(bytes, from, to);
      if (tag !== null) this.endTag = tag;
      else if (changesFunctions(bytes, from, to)) this.catalogChanged = true;
      if (this.plan.dropping) this.noteDrop(bytes, from, to);
      this.plan.complete(type);
    } else if (type === BackendType.ParameterStatus) {
      const { name, value } = decodeParameterStatus(payload!);
      this.lease?.parameters.set(name, value); // in_hot_standby changes when a standby is promoted
      this.options.routing.noteParameter(name, value);
    } else if (type === BackendType.RowDescription || type === BackendType.NoData) {
      this.noteShape(type, payload, length, end);
      this.plan.complete(type);
    } else {
      this.plan.complete(type);
    }
    if (this.plan.synthesizedPending) {
      this.forwardUpTo(end);
      this.flushSynthesized(false);
    }
    return true;
  }

  /**
   * A RowDescription or NoData (`payload`, or in place in the chunk) that answers a Describe whose
   * plan entry asks for its shape: noted for the client statement and the lease (result-shapes.ts).
   */
  private noteShape(type: number, payload: Buffer | null, length: number, end: number): void {
    const entry = this.plan.current;
    if ((entry?.kind !== 'describe-statement' && entry?.kind !== 'describe-portal') || entry.shows === undefined || this.lease === null) return;
    if (payload !== null) noteDescribed(this.lease, entry.shows, type, payload, 0, payload.length);
    else noteDescribed(this.lease, entry.shows, type, this.chunk!, payloadStart(length, end), end);
  }

  /**
   * A Parse the ambassador refused (REFUSED_PARSE, request-builder.ts refuseParse) failed on the
   * server as meant: the client gets the error Postgres gives (42P05) in place of the server's.
   * Another error of that Parse (25P02 in a failed transaction, as Postgres would say too) goes
   * on, and so does one that began in an earlier read (its first bytes went with that read).
   * Returns the payload of the error the client gets.
   */
  private refusalInstead(payload: Buffer, end: number): Buffer {
    const entry = this.plan.current;
    if (entry?.kind !== 'parse' || entry.refusal === undefined) return payload;
    const start = end - payload.length - 5;
    if (start < 0 || decodeErrorFields(payload).get('C') !== SYNTAX_ERROR) return payload;
    this.forwardUpTo(start);
    this.cursor = end;
    if (!this.toClient(entry.refusal)) this.lease?.pause();
    return entry.refusal.subarray(5);
  }

  /**
   * A Bind failed because the statement's result type changed (DDL): the server still holds it
   * in the old form, so whoever prepares it next (the client re-preparing, as postgres.js does
   * on this error) gets it closed and created again.
   */
  private noteStaleStatement(payload: Buffer): void {
    const entry = this.plan.current;
    if (entry === undefined || this.lease === null) return;
    // A Bind, or a Describe (postgres.js describes a statement it has just parsed, which the
    // ambassador answered here as one the server holds), of a statement outdated there.
    const name = entry.kind === 'bind' ? entry.statement : entry.kind === 'describe-statement' ? entry.shows?.serverName : undefined;
    if (name === undefined || !isCachedPlanError(payload)) return;
    markStale(this.lease, name);
  }

  /**
   * Whether the first answer of a request sent on a fresh lease is held back (watchFirstAnswer):
   * a read on a replica (a read-only refusal sends it to the primary), and any request that may
   * run once more if its server fails it first.
   */
  private watchesFirstAnswer(request: Request): boolean {
    if (this.leaseReplica) return request.texts !== null;
    return !request.retried && this.options.routing.mayRetry(request);
  }

  /**
   * The first answer of a watched request: messages that only acknowledge (ParseComplete,
   * RowDescription and the like) are held back, so that until a result arrives nothing has
   * reached the client and the request can still run elsewhere. A read-only refusal (25006) from
   * a replica, or from a "primary" that is a standby now (demoted), drops them and everything
   * up to ReadyForQuery, and the request runs again on the primary; a lost connection may run it
   * again too (onServerClose). Anything else releases them and forwarding goes on as usual.
   * Only while nothing was sent behind the request on the lease: a client that pipelines gets the
   * refusal as its answer (a replica's refusal still sends the text to the primary from then on),
   * since what follows it on the lease must be answered there, in order.
   */
  private watchFirstAnswer(type: number, payload: Buffer | null, end: number): boolean {
    const watched = this.watched!;
    if (this.swallowing) {
      this.cursor = end; // dropped
      if (type === BackendType.ReadyForQuery) this.rerunAfterRefusal(watched, payload!);
      return true;
    }
    if (type === BackendType.ErrorResponse && decodeErrorFields(payload!).get('C') === READ_ONLY_TRANSACTION && this.refusalRunsElsewhere(watched)) {
      if (this.inFlight === 1 && !this.unsynced && standAlone(watched)) {
        this.cursor = end;
        this.held = null;
        this.swallowing = true;
        return true;
      }
      if (this.leaseReplica) {
        this.options.log.info({ host: this.lease?.target.host, port: this.lease?.target.port }, 'a replica refused a read as read-only with more requests sent behind it: the client gets the error, and its text goes to the primary from now on');
        this.options.routing.forceWrite(watched);
      }
    }
    if (ACKNOWLEDGEMENTS[type] !== 1) this.releaseHeld();
    return false;
  }

  /**
   * A read-only refusal runs the request again: always from a replica (the classifier was
   * wrong); from the primary's lease only when the server is a standby now, which proves the
   * write did not run there (a client's own read-only transaction gets its error).
   */
  private refusalRunsElsewhere(request: Request): boolean {
    if (this.leaseReplica) return true;
    return !request.retried && this.lease !== null && this.options.pool.demoted(this.lease);
  }

  private releaseHeld(): void {
    const held = this.held;
    this.held = null;
    this.watched = null;
    if (held !== null && held.length > 0) this.owe(held.length === 1 ? held[0]! : Buffer.concat(held));
  }

  private rerunAfterRefusal(request: Request, ready: Buffer): void {
    this.watched = null;
    this.swallowing = false;
    this.held = null;
    this.status = decodeReadyForQuery(ready);
    this.inFlight--;
    this.options.meter.dropped();
    this.plan.clear();
    this.sawError = true;
    this.endTransaction();
    if (this.leaseReplica) {
      this.options.log.info({ host: this.lease?.target.host, port: this.lease?.target.port }, 'a replica refused a read as read-only: re-running it on the primary and routing its text there from now on');
      this.options.routing.forceWrite(request);
    } else if (this.lease !== null) {
      this.options.pool.suspect(this.lease, 'refused a write as read-only');
      this.runElsewhere(request, this.options.pool.hostIdOf(this.lease), 'the primary refused a write as read-only: it is a standby now');
    }
    this.releaseLease(this.leaseReplica ? 'reusable' : 'broken');
    this.requeue(request);
  }

  /** Puts a request that did not run back at the head of the queue. */
  private requeue(request: Request): void {
    this.ready.unshift(request);
    this.queuedBytes += request.bytes;
    queueMicrotask(() => this.pump());
  }

  /** The cached-plan retry: watches the first response of a retryable request. */
  private watchRetry(type: number, payload: Buffer | null, end: number): boolean {
    const retry = this.retry!;
    if (retry.phase === 'swallow') {
      this.cursor = end; // dropped
      if (type === BackendType.ReadyForQuery) {
        this.retry = null;
        this.status = decodeReadyForQuery(payload!);
        // Which of its statements failed is not known: every one it uses is closed and created again.
        for (const name of serverNamesOf(retry.request)) markStale(this.lease!, name);
        this.inFlight--;
        this.options.meter.dropped();
        this.plan.clear();
        const again = retriedOnce(retry.request);
        if (this.admitted === retry.request) this.admitted = again; // its turn under the rate limit was taken
        this.ready.unshift(again);
        this.queuedBytes += again.bytes;
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
    // Nothing is in flight below: whatever follows this ReadyForQuery in the chunk answers no
    // request (a FATAL from a server shutting down) and never reaches the client; returning
    // false stops the framer there.
    if (state.advisoryRecheck && this.inFlight === 0 && this.status === 'I' && this.ready.length === 0 && this.lease) {
      void this.recheckAdvisoryLocks(this.lease);
      return false;
    }
    let goOn = true;
    if (this.inFlight === 0 && this.status === 'I' && !this.unsynced && this.plan.empty && !this.options.state.pinned) {
      if (this.ready.length === 0) {
        if (this.capturesCommit()) {
          void this.captureCommitThenRelease(this.lease!);
          return false;
        }
        goOn = this.lease === null;
        this.releaseLease();
      }
      this.options.onIdle();
    }
    // What the client sent meanwhile goes next (after this chunk is handled), a client paused
    // for queueing too much resumes, and what waited for a drop's answer is read.
    if (this.ready.length > 0 || this.wire.paused || this.heldInput !== null) deferToMicrotask(this.pumpLater);
    return goOn;
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
    if (this.catalogChanged && !rolledBack) this.options.onCatalogChange();
    this.catalogChanged = false;
    this.serverReset = false;
    this.endTag = null;
    this.sawError = false;
  }

  /** Asks the server whether this session still holds advisory locks before unpinning. */
  private async recheckAdvisoryLocks(server: BackendConnection): Promise<void> {
    this.busy = true;
    this.ownExchange = true;
    this.chunk = null;
    this.detachServer(server);
    try {
      const { error } = await server.exchange([encodeQuery(ADVISORY_LOCKS_HELD)], 1, this.options.exchangeTimeoutMs);
      this.options.state.advisoryChecked(error === null);
    } catch {
      if (!this.ownExchangeEnded(server, true)) return;
      // Lost as any server holding the client's session state is (onServerClose: the client is
      // pinned to it). What the client sent meanwhile never left the ambassador.
      this.onServerClose();
      return this.pump();
    }
    if (!this.ownExchangeEnded(server, false)) return;
    this.attachServer(server);
    this.onReady();
  }

  /**
   * Read-your-writes: the lease ran a write; its server's WAL insert position (at or past the
   * commit) becomes this client's minimum for reads, then the lease goes back.
   */
  private async captureCommitThenRelease(server: BackendConnection): Promise<void> {
    this.busy = true;
    this.chunk = null;
    this.detachServer(server);
    this.lease = null;
    this.leaseWrote = false;
    let outcome: ReleaseOutcome = 'reusable';
    try {
      const rows = await server.query(CURRENT_WAL_POSITION, this.options.exchangeTimeoutMs);
      const lsn = rows[0]?.[0];
      if (lsn) this.options.routing.noteCommit(parseLsn(lsn));
    } catch (err) {
      if (server.isClosed) outcome = 'broken';
      this.options.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'could not read the WAL position after a write');
    }
    server.transactionStatus = 'I';
    this.options.pool.release(server, outcome);
    this.busy = false;
    if (this.stopped) return;
    this.options.onIdle();
    this.pump();
  }

  private releaseLease(outcome: ReleaseOutcome = 'reusable'): void {
    const server = this.lease;
    if (server === null) return;
    // Bytes after the last answer forwarded belong to no request (a server that is shutting down
    // sends its FATAL to an idle session): they are dropped, and so is the connection.
    const chunk = this.chunk;
    if (chunk !== null && this.cursor < chunk.length) outcome = 'broken';
    this.chunk = null;
    this.detachServer(server);
    this.lease = null;
    this.leaseReplica = false;
    this.leaseWrote = false;
    server.transactionStatus = 'I';
    this.options.pool.release(server, outcome);
  }

  /** Forwards the current server chunk up to `end`: written now, or with the turn's other answers (`later`, see say). */
  private forwardUpTo(end: number, later = false): void {
    const chunk = this.chunk;
    if (chunk === null || end <= this.cursor) return;
    const slice = this.cursor === 0 && end === chunk.length ? chunk : chunk.subarray(this.cursor, end);
    this.cursor = end;
    if (!this.toClient(slice, later)) this.lease?.pause();
  }

  /** The ParseCompletes due now: written `now`, or owed to the next write (a server answer is due). */
  private flushSynthesized(now: boolean): void {
    const count = this.plan.takeSynthesized();
    if (count === 0) return;
    const answers = count === 1 ? PARSE_COMPLETE : Buffer.concat(Array<Buffer>(count).fill(PARSE_COMPLETE));
    if (this.held !== null) this.hold(answers);
    else if (now) this.say(answers);
    else this.owe(answers);
  }

  private owe(bytes: Buffer): void {
    this.owed = this.owed === null ? bytes : Buffer.concat([this.owed, bytes]);
  }

  /** Writes server-bound-for-client bytes, or holds a copy while a replica read is watched. */
  private toClient(bytes: Buffer, later = false): boolean {
    if (this.held === null) return this.say(bytes, later);
    this.hold(Buffer.from(bytes));
    return true;
  }

  /** Holds back client-bound bytes while a first answer is watched (held is not null). */
  private hold(bytes: Buffer): void {
    if (this.held === NOTHING_HELD) this.held = [bytes];
    else this.held!.push(bytes);
  }

  /**
   * Every write to the client goes through here (bytes sent are counted). `later`: an answer that
   * ends at ReadyForQuery while other clients wait for the pool is written in the event loop's
   * check phase with every other such answer of this turn (owed, LATE_PAYMENTS), after the turn's
   * reads, as the pool's hand-offs are (pooler.ts, HandOffs). At 256 pgbench clients on 20
   * connections that gave 1.03-1.04 times the throughput at 0.90-0.96 times the CPU per
   * transaction and 0.67-0.91 times the p99 latency (medians of 4 paired rounds per protocol);
   * at 32 clients 0.97-1.03 times the throughput. With nobody waiting it only delays the answer
   * (deferring every answer gave 0.97-0.99 of the throughput at 1 client), so then it goes at
   * once. Nothing is deferred with more to come: the answer is whole, and the lease needs no
   * backpressure from it.
   */
  private say(bytes: Buffer, later = false): boolean {
    if (later) {
      this.owe(bytes);
      if (!this.owedLate) {
        this.owedLate = true;
        LATE_PAYMENTS.add(this);
      }
      return true;
    }
    if (this.owed !== null) bytes = this.withOwed(bytes);
    this.options.meter.traffic.sent += bytes.length;
    return this.wire.write(bytes);
  }

  /**
   * Writes what is owed now, if the client can still take it: in the check phase for an answer
   * owed late, and before the forwarder stops or the session tells the client an error itself
   * (anything the forwarder says goes behind it anyway).
   */
  payOwed(): void {
    this.owedLate = false;
    if (this.owed === null) return;
    if (!this.client.destroyed && this.client.writable) this.say(NOTHING);
    else this.owed = null;
  }

  /** `bytes` behind what is owed: one buffer, unless copying `bytes` would cost more than a write. */
  private withOwed(bytes: Buffer): Buffer {
    const owed = this.owed!;
    this.owed = null;
    this.owedLate = false;
    if (bytes.length === 0) return owed;
    if (bytes.length <= OWED_COPY_LIMIT) return Buffer.concat([owed, bytes], owed.length + bytes.length);
    this.options.meter.traffic.sent += owed.length;
    this.wire.write(owed);
    return bytes;
  }

  private readonly onClientDrain = (): void => {
    if (!this.stopped) this.lease?.resume();
  };

  readonly onServerDrain = (): void => {
    if (!this.stopped && this.heldInput === null) this.wire.resume();
  };

  /**
   * The lease's server connection closed under us. Nothing in flight and nothing held there: the
   * next request simply takes a new lease. Otherwise see the top of this file: the first request
   * may run again elsewhere, or every in-flight request is answered with the loss.
   */
  readonly onServerClose = (): void => {
    if (this.stopped) return;
    const server = this.lease;
    if (server === null) return;
    const { pool, state, log } = this.options;
    this.detachServer(server);
    this.lease = null;
    this.leaseReplica = false;
    this.leaseWrote = false;
    const watched = this.watched;
    const unanswered = watched !== null && this.held !== null && !this.swallowing;
    const fatal = this.serverFatal;
    this.watched = null;
    this.swallowing = false;
    this.held = null;
    this.retry = null;
    this.serverFatal = null;
    const where = `${server.target.host}:${server.target.port}`;
    const hostId = pool.hostIdOf(server);
    pool.suspect(server, fatal === null ? 'connection lost' : 'server ended the session');
    pool.release(server, 'broken');
    const lostWork = this.inFlight > 0 || this.unsynced || this.status !== 'I';
    if (!lostWork && !state.pinned) return;
    if ((!this.serverFramer.atBoundary && !unanswered) || this.client.destroyed) {
      // Part of a message already reached the client: its stream cannot be repaired.
      this.client.destroy();
      return this.options.onEnd(`server ${where} closed the connection in the middle of a message`);
    }
    if (state.pinned) {
      this.say(encodeErrorResponse({
        severity: 'FATAL',
        code: '08006',
        message: `server connection to ${where} was lost, and with it the session state this client held there (${state.pinReasons.join(', ')})`,
      }));
      return this.options.onEnd('server closed the connection of a pinned session');
    }
    if (unanswered && this.inFlight === 1 && !this.unsynced && this.status === 'I' && this.runsAgainAfterLoss(watched) && standAlone(watched)) {
      this.runElsewhere(watched, hostId, 'server connection lost before the read was answered');
      this.forgetInFlight();
      return this.requeue(watched);
    }
    // A transaction block stays open, aborted, unless what was in flight ended it: a COMMIT lost
    // on its way may or may not have committed, and for the client the block is over either way.
    const inTransaction = this.status !== 'I' && !(this.blockEndSent && (this.inFlight > 0 || this.unsynced));
    this.blockEndSent = false;
    const error = lostServerError(where, fatal, inTransaction);
    const out: Buffer[] = [];
    for (let i = 0; i < this.inFlight; i++) out.push(error, encodeReadyForQuery(inTransaction ? 'E' : 'I'));
    if (this.unsynced) out.push(error);
    for (let i = 0; i < out.length; i += 2) this.options.meter.serverError(error.subarray(5));
    if (this.unsynced) {
      this.skipToSync = true;
    }
    // Idle inside a transaction block: its next request hears of the loss.
    if (out.length === 0) this.lostError = error;
    log.warn({ host: where, inFlight: this.inFlight, inTransaction }, 'server connection lost: in-flight requests answered with an error');
    // No Parse unanswered made a statement; nor did one whose answer was held back (watched): the
    // client never hears of it, and may parse its name again.
    this.plan.abandon();
    if (unanswered) this.requests.unanswered(watched);
    this.forgetInFlight();
    this.status = inTransaction ? 'E' : 'I';
    if (out.length > 0) this.say(Buffer.concat(out));
    queueMicrotask(() => this.pump());
  };

  /**
   * Whether a request whose server was lost before it answered may run again: a read (running
   * it twice changes nothing) that the client did not keep from retries, and only once.
   */
  private runsAgainAfterLoss(request: Request): boolean {
    const { routing } = this.options;
    return !request.retried && request.texts !== null && routing.decide(request).kind === 'read' && routing.mayRetry(request);
  }

  /** Drops what the lost server owed: the plan, the in-flight count; staged settings do not count. */
  private forgetInFlight(): void {
    this.options.meter.clear();
    this.plan.clear();
    this.inFlight = 0;
    this.unsynced = false;
    this.sawError = true;
    this.endTransaction();
  }

  private failClient(err: AmbassadorError): void {
    this.options.meter.error(err.sqlstate);
    if (this.clientAtBoundary && !this.client.destroyed) {
      this.say(encodeErrorResponse({ severity: 'FATAL', code: err.sqlstate, message: err.message }));
    }
    this.options.onEnd(err.message);
  }

  /**
   * Ends forwarding. The lease, if any, comes back: rolled back when the client left inside a
   * transaction, reset when it held session state, closed when a response was still coming or
   * an exchange was left open without Sync (its implicit transaction would run on into the next
   * client's requests, and their Sync commit it).
   */
  stop(): void {
    // An answer owed to the check phase still goes out (a client may send Terminate right behind a request).
    this.payOwed();
    if (this.stopped && this.lease === null) return;
    this.stopped = true;
    this.wire.detach();
    if (this.turnTimer !== null) clearTimeout(this.turnTimer);
    this.turnTimer = null;
    // The ambassador's own exchange on the lease gives it back when it ends (ownExchangeEnded):
    // given back now, the server could go to another client with that exchange's answers to come.
    if (!this.ownExchange) this.giveBack();
  }

  /** The client is gone: its lease goes back to the pool, cleaned (returnServer). */
  private giveBack(): void {
    const server = this.lease;
    this.lease = null;
    if (server === null) return;
    this.detachServer(server);
    server.transactionStatus = this.status;
    returnServer(this.options.pool, server, {
      quiet: this.inFlight === 0 && !this.unsynced && this.plan.empty && this.serverFramer.atBoundary,
      reset: this.options.state.pinned,
      timeoutMs: this.options.exchangeTimeoutMs,
    });
  }
}

/** Forwarders owing an answer to the check phase (say), in the order they began to owe it. */
const LATE_PAYMENTS = new CheckPhaseBatch<TxnForwarder>((forwarder) => forwarder.payOwed());

const COMMIT_TAG = Buffer.from('COMMIT\0', 'latin1');
const ROLLBACK_TAG = Buffer.from('ROLLBACK\0', 'latin1');
const DEALLOCATE_ALL_TAG = Buffer.from('DEALLOCATE ALL\0', 'latin1');
const DISCARD_ALL_TAG = Buffer.from('DISCARD ALL\0', 'latin1');
/** A Bind that goes as it came (the unnamed statement, or a name the ambassador does not hold). */
const PLAIN_BIND: PlanEntry = Object.freeze({ kind: 'bind' });
/**
 * Where send() assembles a request: one for every forwarder, as a request is assembled and taken
 * within one call, and a forwarder of its own would cost each idle client its arrays.
 */
const OUTGOING = new Outgoing();
const READ_ONLY_TRANSACTION = '25006';
const SYNTAX_ERROR = '42601';
const PROTOCOL_VIOLATION = '08P01';
/**
 * Answers that carry no result, held back while a replica read may still be refused:
 * ParseComplete, BindComplete, CloseComplete, ParameterDescription, RowDescription, NoData,
 * NoticeResponse, ParameterStatus. A table, as the framer's: it is read for every message of a
 * watched answer, which is most first answers on a lease.
 */
const ACKNOWLEDGEMENTS = typeSet('123tTnNS');
/** At or past the commit record of the transaction that just ended on this connection. */
const CURRENT_WAL_POSITION = 'SELECT pg_catalog.pg_current_wal_insert_lsn()';
const FUNCTION_DDL = /^(CREATE|ALTER|DROP) (FUNCTION|PROCEDURE|ROUTINE|AGGREGATE|EXTENSION|SCHEMA)\b|^DROP OWNED\b/;
/** Fails exactly when the session still holds a session-level advisory lock. */
const ADVISORY_LOCKS_HELD = `DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted) THEN RAISE EXCEPTION 'advisory locks held'; END IF; END $$`;
/** Messages that open no exchange on their own: COPY messages (ignored by a server not in COPY) and Flush. */
const ANSWERLESS_TYPES = new Set<number>([FrontendType.CopyData, FrontendType.CopyDone, FrontendType.CopyFail, FrontendType.Flush]);

/** COMMIT or ROLLBACK from a CommandComplete tag, the payload `bytes[from, to)` (ROLLBACK TO SAVEPOINT also says ROLLBACK,
 *  but never ends a transaction: the tag that counts is the last one before 'I'). */
function transactionEndTag(bytes: Buffer, from: number, to: number): 'COMMIT' | 'ROLLBACK' | null {
  // The first letter first: "SELECT 1" is as long as "ROLLBACK".
  if (to - from === 7 && bytes[from] === 0x43 && sameBytes(bytes, from, COMMIT_TAG, 0, 7)) return 'COMMIT';
  if (to - from === 9 && bytes[from] === 0x52 && sameBytes(bytes, from, ROLLBACK_TAG, 0, 9)) return 'ROLLBACK';
  return null;
}

/** Whether the CommandComplete payload `bytes[from, to)` is that of DEALLOCATE ALL or DISCARD ALL. */
function droppingTag(bytes: Buffer, from: number, to: number): boolean {
  const tag = to - from === DEALLOCATE_ALL_TAG.length ? DEALLOCATE_ALL_TAG : to - from === DISCARD_ALL_TAG.length ? DISCARD_ALL_TAG : null;
  return tag !== null && sameBytes(bytes, from, tag, 0, tag.length);
}

/** The ErrorResponse a request gets for an error of the ambassador's (the client stays connected). */
function errorResponse(e: AmbassadorError): Buffer {
  return encodeErrorResponse({ severity: 'ERROR', code: e.sqlstate, message: e.message, hint: e.hint, detail: e.detail });
}


/** Whether the CommandComplete payload `bytes[from, to)` is a tag of DDL that can change which functions exist or how volatile they are. */
function changesFunctions(bytes: Buffer, from: number, to: number): boolean {
  const first = to > from ? bytes[from] : -1;
  if (first !== 0x43 && first !== 0x41 && !(first === 0x44 && to - from > 1 && bytes[from + 1] === 0x52)) return false; // C, A, DR
  return FUNCTION_DDL.test(bytes.toString('latin1', from, Math.max(from, to - 1)));
}

/** Whether the last transaction-control statement among `effects` ends the block; null when there is none. */
function endsBlock(effects: readonly SessionEffect[]): boolean | null {
  for (let i = effects.length - 1; i >= 0; i--) {
    const effect = effects[i]!;
    if (effect.kind !== 'transaction') continue;
    if (effect.action === 'begin') return false;
    if (effect.action === 'commit' || effect.action === 'rollback' || effect.action === 'prepare-transaction') return true;
  }
  return null;
}

/** The request holds only messages that open no exchange (COPY messages outside COPY, Flush). */
function answerless(request: Request): boolean {
  for (const item of request.items) if (item.kind !== 'raw' || !ANSWERLESS_TYPES.has(item.type)) return false;
  return true;
}

function isChoice(value: BackendConnection | Choice): value is Choice {
  return 'reason' in value;
}

/** The shared statements a request parses, binds or describes (server names). */
function serverNamesOf(request: Request): Set<string> {
  const names = new Set<string>();
  for (const item of request.items) {
    if (item.kind === 'parse') names.add(item.statement.serverName);
    else if ((item.kind === 'bind' || item.kind === 'describe') && item.source !== null) names.add(item.source.serverName);
  }
  return names;
}

/**
 * A request to run once more after a cached-plan error (and not again). The Parses it began
 * with were answered by the ambassador (the first answer from the server was the error, so the
 * server held each of them): the client has their ParseCompletes, or gets them in front of the
 * retry's answers (owed), so they are left out; the Binds re-create their statements.
 */
function retriedOnce(request: Request): Request {
  let answered = 0;
  while (request.items[answered]?.kind === 'parse') answered++;
  return { ...request, items: answered === 0 ? request.items : request.items.slice(answered), retryable: false };
}
