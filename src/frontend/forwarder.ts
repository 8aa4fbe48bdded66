// The forwarding phase of a session: raw chunks relayed between the client and its server.
//
// Hot path: each chunk is scanned by message headers only (a Framer that inspects just the
// few types it must see) and written on as the same Buffer; nothing is decoded or re-encoded.
// Backpressure is honoured both ways: when one side's write buffer is full, the other side's
// socket stops being read until 'drain', so memory stays bounded whatever the result size.
//
// Accounting: requests that end in ReadyForQuery (Query, Sync, FunctionCall) are counted going
// out and matched by ReadyForQuery coming back; together with the transaction status this tells
// when the client is idle between transactions (graceful shutdown waits for that moment).
//
// Rate limit (listen.rateLimit): a client chunk that starts a transaction while the client is
// idle asks the user's bucket for a turn first. Waiting holds that chunk and what follows (the
// client socket paused); no turn in time drops the request up to its end (Query, Sync or
// FunctionCall) and answers it with 53400, as a server would answer a failed request.

import { Buffer } from 'node:buffer';
import type net from 'node:net';
import { AmbassadorError } from '../errors.ts';
import { SERVER_MAX_MESSAGE, type BackendConnection, type ServerSink } from '../backend/connection.ts';
import { BackendType, decodeReadyForQuery, encodeErrorResponse, encodeReadyForQuery, type TransactionStatus } from '../protocol/backend.ts';
import { Framer, FramingError, payloadStart, typeSet } from '../protocol/framer.ts';
import { FrontendType } from '../protocol/frontend.ts';
import type { GarbageBound } from '../lib/garbage-bound.ts';
import { openWire, type Wire } from '../lib/wire.ts';
import type { RequestMeter } from './request-meter.ts';
import type { TrafficRoute } from './traffic.ts';
import { NO_TURN, rateLimited, type UserSlot } from './user-limits.ts';
import { errorResponseFor } from './wire-errors.ts';
import { endsSession } from './lost-transaction.ts';

export interface ForwarderOptions {
  maxMessageSize: number;
  /** Bounds dead forwarded buffers (shared by every session). */
  garbage: GarbageBound;
  /** The session is over; `error` says whether the server connection must not be reused. */
  onEnd: (reason: string, error: boolean) => void;
  /** Called after each ReadyForQuery that leaves the client idle. */
  onIdle: () => void;
  /** Times requests, counts bytes and errors, logs queries (request-meter.ts). */
  meter: RequestMeter;
  /** The role of the session's server, for metrics. */
  route: TrafficRoute;
  /** The client's user: its rate limit on new transactions (listen.rateLimit). */
  userSlot: UserSlot;
}

/** The onEnd reason when the server connection closed under the session. */
export const SERVER_CLOSED = 'server closed the connection';
const CLIENT_INSPECT = typeSet('');
/** With query logging on, the SQL of Query and Parse messages is read too. */
const CLIENT_INSPECT_TEXTS = typeSet('QP');
const TERMINATE_LENGTH = 5;
const EMPTY = Buffer.alloc(0);
/** connection_failure: the session's server went away. */
const LOST = '08006';
const SERVER_INSPECT = typeSet('ZE');

export class Forwarder implements ServerSink {
  private readonly clientFramer: Framer;
  /** In place: a ReadyForQuery that lies whole in its chunk is read there (see onServerMessage). */
  private readonly serverFramer = new Framer(SERVER_MAX_MESSAGE, SERVER_INSPECT, true);
  /** The server chunk being framed (onServerData). */
  private serverChunk: Buffer = EMPTY;
  private pendingRequests = 0;
  private status: TransactionStatus;
  private stopped = false;
  private terminating = false;
  /** The client sent part of a request (extended protocol before its Sync). */
  private open = false;
  /** Chunks held until the user's next turn. */
  private gate: { held: Buffer[]; timer: NodeJS.Timeout } | null = null;
  /** A request refused by the rate limit is being dropped up to its end. */
  private refusing = false;
  /** The server's last error was FATAL: its close was announced, the client hears nothing more. */
  private serverEnded = false;
  /** Offset in the server chunk being read just past its last whole message; -1: it began mid-message. */
  private serverWhole = 0;
  /** The client's bytes, both ways. */
  private readonly wire: Wire;

  constructor(
    private readonly client: net.Socket,
    private readonly server: BackendConnection,
    private readonly options: ForwarderOptions,
  ) {
    this.clientFramer = new Framer(options.maxMessageSize, options.meter.wantsTexts ? CLIENT_INSPECT_TEXTS : CLIENT_INSPECT);
    this.status = server.transactionStatus;
    this.wire = openWire(client, { onData: this.onClientData, onDrain: this.onClientDrain });
  }

  get idle(): boolean {
    return this.pendingRequests === 0 && this.status === 'I';
  }

  /** Inside a transaction block, waiting for the client's next request. */
  get idleInTransaction(): boolean {
    return this.pendingRequests === 0 && this.status !== 'I' && this.gate === null;
  }

  /** Query logging was turned on or off by a reload: read SQL texts from the next message on, or stop. */
  readTexts(on: boolean): void {
    this.clientFramer.setInspected(on ? CLIENT_INSPECT_TEXTS : CLIENT_INSPECT);
  }

  /**
   * No request in flight, no extended-protocol exchange left open (its implicit transaction would
   * run on into the cleanup), and both streams at a message boundary (a half-sent client message
   * would swallow the cleanup's bytes): safe to clean and reuse.
   */
  get quiet(): boolean {
    return this.pendingRequests === 0 && !this.open && this.clientFramer.atBoundary && this.serverFramer.atBoundary;
  }

  /** Whether an ambassador-made message can be written to the client without splitting one. */
  get clientAtBoundary(): boolean {
    return this.serverFramer.atBoundary;
  }

  start(held: Buffer[]): void {
    this.server.attach(this);
    for (const chunk of held) this.onClientData(chunk);
    this.wire.resume();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.gate !== null) clearTimeout(this.gate.timer);
    this.gate = null;
    this.wire.detach();
    this.server.detach(this);
  }

  private readonly onClientMessage = (type: number, payload: Buffer | null): boolean => {
    if (payload !== null) this.noteText(type, payload);
    if (type === FrontendType.Query || type === FrontendType.Sync || type === FrontendType.FunctionCall) {
      this.options.meter.sent(this.options.route, 'session', null, this.status === 'I' && this.pendingRequests === 0);
      this.pendingRequests++;
      this.open = false;
    } else if (type === FrontendType.Terminate) {
      this.terminating = true;
      return false;
    } else {
      this.open = true;
    }
    return true;
  };

  /** Query logging: the SQL of a Query, or of a Parse (after the statement name). */
  private noteText(type: number, payload: Buffer): void {
    if (type === FrontendType.Query) return this.options.meter.noteText(payload.toString('utf8', 0, Math.max(0, payload.length - 1)));
    const nameEnd = payload.indexOf(0);
    const textEnd = payload.indexOf(0, nameEnd + 1);
    if (nameEnd >= 0 && textEnd > nameEnd) this.options.meter.noteText(payload.toString('utf8', nameEnd + 1, textEnd));
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.stopped) return;
    if (this.gate !== null) {
      this.gate.held.push(chunk);
      return;
    }
    const slot = this.options.userSlot;
    let rest = chunk;
    while (this.refusing || (slot.limited && this.startsTransaction())) {
      if (!this.refusing) {
        const wait = slot.turn();
        if (wait === 0) break;
        if (wait !== NO_TURN) return this.waitTurn(rest, wait);
        this.refusing = true;
      }
      rest = this.skipRefused(rest);
      if (rest.length === 0 || this.stopped) return;
    }
    this.relay(rest);
  };

  /** The client is idle and the next message it sends begins a transaction. */
  private startsTransaction(): boolean {
    return this.pendingRequests === 0 && this.status === 'I' && !this.open && this.clientFramer.atBoundary;
  }

  private waitTurn(chunk: Buffer, ms: number): void {
    this.wire.pause();
    const gate = {
      held: [chunk],
      timer: setTimeout(() => {
        this.gate = null;
        if (this.stopped) return;
        // The first chunk had its turn; the others go through the gate as usual.
        this.relay(gate.held[0]!);
        for (const held of gate.held.slice(1)) this.onClientData(held);
        if (!this.stopped && this.gate === null) this.wire.resume();
      }, ms),
    };
    this.gate = gate;
  }

  /** Drops the refused request's messages; answers it at its end; returns the bytes after it. */
  private skipRefused(chunk: Buffer): Buffer {
    let end: number;
    try {
      end = this.clientFramer.push(chunk, this.onRefusedMessage);
    } catch (err) {
      this.failClient(new AmbassadorError('PROTOCOL_VIOLATION', err instanceof Error ? err.message : String(err)));
      return EMPTY;
    }
    return this.refusing || this.stopped ? EMPTY : chunk.subarray(end);
  }

  private readonly onRefusedMessage = (type: number): boolean => {
    if (type === FrontendType.Terminate) {
      this.options.onEnd('client sent Terminate', false);
      return false;
    }
    if (type !== FrontendType.Query && type !== FrontendType.Sync && type !== FrontendType.FunctionCall) return true;
    this.refusing = false;
    const err = rateLimited(this.options.userSlot);
    this.options.meter.error(err.sqlstate);
    if (!this.serverFramer.atBoundary) {
      this.options.onEnd(err.message, true);
      return false;
    }
    const answer = Buffer.concat([errorResponseFor(err), encodeReadyForQuery(this.status)]);
    this.options.meter.traffic.sent += answer.length;
    this.wire.write(answer);
    return false;
  };

  private relay(chunk: Buffer): void {
    this.options.meter.traffic.received += chunk.length;
    let end: number;
    try {
      end = this.clientFramer.push(chunk, this.onClientMessage);
    } catch (err) {
      const message = err instanceof FramingError ? err.message : String(err);
      this.failClient(new AmbassadorError(err instanceof FramingError && err.reason === 'message-too-large' ? 'MESSAGE_TOO_LARGE' : 'PROTOCOL_VIOLATION', message));
      return;
    }
    if (this.terminating) {
      // Everything before Terminate still goes to the server; Terminate itself does not: the
      // server connection goes back to the pool.
      if (end > TERMINATE_LENGTH) this.server.write(chunk.subarray(0, end - TERMINATE_LENGTH));
      // A Terminate split across reads had its first bytes forwarded already: not reusable.
      this.options.onEnd('client sent Terminate', end < TERMINATE_LENGTH);
      return;
    }
    if (!this.server.write(chunk)) this.wire.pause();
    this.options.garbage.account(chunk.length);
  };

  private readonly onServerMessage = (type: number, payload: Buffer | null, length: number, end: number): boolean => {
    // An inspected message that lies whole in the chunk comes without a payload (Framer inPlace).
    if (type === BackendType.ReadyForQuery) {
      this.status = payload !== null ? decodeReadyForQuery(payload) : decodeReadyForQuery(this.serverChunk, payloadStart(length, end), end);
      if (this.pendingRequests > 0) this.pendingRequests--;
      this.server.transactionStatus = this.status;
      this.options.meter.answered(this.status, this.server);
    } else if (type === BackendType.ErrorResponse) {
      const error = payload ?? this.serverChunk.subarray(payloadStart(length, end), end);
      this.options.meter.serverError(error);
      this.serverEnded = endsSession(error);
    }
    this.serverWhole = end;
    return true;
  };

  readonly onServerData = (chunk: Buffer): void => {
    if (this.stopped) return;
    const wasIdle = this.idle;
    this.serverWhole = this.serverFramer.atBoundary ? 0 : -1;
    this.serverChunk = chunk;
    try {
      this.serverFramer.push(chunk, this.onServerMessage);
    } catch (err) {
      return this.failServer(chunk, err);
    } finally {
      this.serverChunk = EMPTY;
    }
    this.options.meter.traffic.sent += chunk.length;
    if (!this.wire.write(chunk)) this.server.pause();
    this.options.garbage.account(chunk.length);
    if (!wasIdle && this.idle) this.options.onIdle();
  };

  private readonly onClientDrain = (): void => {
    if (!this.stopped) this.server.resume();
  };

  readonly onServerDrain = (): void => {
    if (!this.stopped) this.wire.resume();
  };

  readonly onServerClose = (): void => {
    if (this.stopped) return;
    this.options.meter.error(LOST);
    if (this.serverFramer.atBoundary && !this.client.destroyed && !this.serverEnded) {
      this.wire.write(
        encodeErrorResponse({
          severity: 'FATAL',
          code: LOST,
          message: `server connection to ${this.server.target.host}:${this.server.target.port} was lost`,
        }),
      );
    }
    this.options.onEnd(SERVER_CLOSED, true);
  };

  /**
   * The server broke the protocol (a length out of bounds, an invalid ReadyForQuery): its whole
   * messages before the fault still reach the client, then a FATAL 08P01 says why, unless the
   * client already has part of a message (then only the close can tell it). The server
   * connection is not reused.
   */
  private failServer(chunk: Buffer, err: unknown): void {
    const where = `${this.server.target.host}:${this.server.target.port}`;
    const failure = new AmbassadorError('UPSTREAM_PROTOCOL', `malformed data from server ${where}: ${err instanceof Error ? err.message : String(err)}`);
    this.options.meter.error(failure.sqlstate);
    if (this.serverWhole < 0 || this.client.destroyed) {
      this.client.destroy();
    } else {
      const answer = encodeErrorResponse({ severity: 'FATAL', code: failure.sqlstate, message: failure.message });
      this.wire.write(this.serverWhole === 0 ? answer : Buffer.concat([chunk.subarray(0, this.serverWhole), answer]));
    }
    this.options.onEnd(failure.message, true);
  }

  private failClient(err: AmbassadorError): void {
    this.options.meter.error(err.sqlstate);
    if (this.serverFramer.atBoundary && !this.client.destroyed) {
      this.wire.write(encodeErrorResponse({ severity: 'FATAL', code: err.sqlstate, message: err.message }));
    }
    this.options.onEnd(err.message, true);
  }
}
