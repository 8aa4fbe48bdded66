// One client connection, from its first byte to its close.
//
// States: startup -> (tls) -> auth -> connecting -> forwarding -> closed; startup -> cancel -> closed.
// - startup: untyped packets; SSLRequest answered 'S' (then TLS) or 'N'; GSSENCRequest 'N';
//   bytes sent after an encryption request and before our answer are a protocol violation
//   (never processed).
// - cancel: a CancelRequest was forwarded; nothing more is read, nothing is ever said, and the
//   socket closes once the cancel has reached the server (as Postgres closes it).
// - auth: trust / md5 / SCRAM against clientAuth.users; nothing upstream is opened before the
//   client has proven who it is.
// - connecting: a server connection is acquired; client bytes arriving meanwhile are held
//   (bounded: the client socket is paused past a limit).
// - forwarding: raw chunks relayed both ways (see forwarder.ts).
// Every failure ends in one ErrorResponse (when the stream is at a message boundary) and a close.

import { Buffer } from 'node:buffer';
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { AmbassadorError, asAmbassadorError } from '../errors.ts';
import type { BackendConnection } from '../backend/connection.ts';
import { UpstreamLoginError } from '../backend/connection.ts';
import {
  BackendType,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeNegotiateProtocolVersion,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../protocol/backend.ts';
import { ALL_TYPES, Framer, FramingError } from '../protocol/framer.ts';
import { frameMessage } from '../protocol/writer.ts';
import { StartupError, StartupReader, SUPPORTED_MINOR, type StartupLimits, type StartupPacket } from '../protocol/startup.ts';
import type { ServerPool, ServerRequest } from '../pool/server-pool.ts';
import type { GarbageBound } from '../lib/garbage-bound.ts';
import type { CancelRegistry } from './cancel-registry.ts';
import { authenticateClient, type AuthMechanism, type ClientAuthSettings } from './client-auth.ts';
import { Forwarder, SERVER_CLOSED } from './forwarder.ts';
import { ClientSessionState } from './session-state.ts';
import { TxnForwarder } from './txn-forwarder.ts';
import { returnServer } from '../pool/server-return.ts';
import type { PinReason, SessionEffectsCache } from '../router/session-effects.ts';
import { encodeQuery } from '../protocol/frontend.ts';
import { errorResponseFor } from './wire-errors.ts';
import { ClientRouting, type RoutingContext } from './client-routing.ts';
import { routeFromTargetSessionAttrs, type SessionRoute } from '../router/route-decision.ts';
import { ADMIN_DATABASE, startConsole, type ConsoleAccess } from './console-session.ts';
import { RequestMeter, type QueryLogSettings } from './request-meter.ts';
import type { UserLimits, UserLimitSettings, UserSlot } from './user-limits.ts';
import type { TrafficStats } from './traffic.ts';

export type SessionState = 'startup' | 'cancel' | 'auth' | 'connecting' | 'forwarding' | 'console' | 'closed';

/** What a client is doing, as metrics and SHOW CLIENTS count it. */
export type ClientActivity = 'login' | 'active' | 'idle' | 'waiting';

export interface FrontendSettings {
  loginTimeoutMs: number;
  maxMessageSize: number;
  startupLimits: StartupLimits;
  /** The listener's TLS context, or null when client TLS is not configured. */
  tlsContext: tls.SecureContext | null;
  tlsRequired: boolean;
  auth: ClientAuthSettings;
  upstreamUser: string | undefined;
  upstreamDatabase: string | undefined;
  poolMode: 'session' | 'transaction';
  /** Prepared statements kept per server connection in transaction mode (LRU beyond). */
  statementCapacity: number;
  /** pool.cacheUnnamedStatements: unnamed statements shared and kept on servers like named ones. */
  cacheUnnamedStatements: boolean;
  /** Deadline for the ambassador's own exchanges with a server (state sync, cleanup). */
  exchangeTimeoutMs: number;
  /** Query logging (logging.queries, logging.slowQueryThreshold). */
  queryLog: QueryLogSettings;
  /** Log each client's login and disconnection at info (logging.connections). */
  logConnections: boolean;
  /** Who may use the admin console (database "ambassador"); null: nobody. */
  console: ConsoleAccess | null;
  /** Client bytes read ahead of the server before the client socket is paused (listen.maxClientBuffer). */
  maxClientBuffer: number;
  /** listen.clientIdleTimeout and listen.idleInTransactionTimeout; 0: off. */
  clientIdleTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
  /** Per-user connection and transaction-rate limits (listen.maxClientConnectionsPerUser, listen.rateLimit). */
  userLimits: UserLimitSettings;
  /** listen.maxConcurrentCancels. */
  maxConcurrentCancels: number;
}

export interface SessionDeps {
  id: number;
  effects: SessionEffectsCache;
  onPin: (reason: PinReason) => void;
  garbage: GarbageBound;
  logger: Logger;
  settings: FrontendSettings;
  pool: ServerPool;
  routing: RoutingContext;
  cancels: CancelRegistry;
  userLimits: UserLimits;
  /** Per-database totals and the metrics observer. */
  traffic: TrafficStats;
  onClose: (session: ClientSession) => void;
}

/** Startup parameters that describe the connection itself rather than session settings. */
const NOT_CARRIED = new Set(['user', 'database', 'replication']);
/** Messages during authentication are small; anything larger is hostile. */
const MAX_AUTH_MESSAGE = 64 * 1024;

export class ClientSession {
  state: SessionState = 'startup';
  user = '';
  database = '';
  readonly connectedAt = Date.now();
  private socket: net.Socket;
  private readonly startup: StartupReader;
  private readonly loginTimer: NodeJS.Timeout;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private authInbox: Buffer[] = [];
  private authWaiter: (() => void) | null = null;
  private authFramer = new Framer(MAX_AUTH_MESSAGE, ALL_TYPES);
  private forwarder: Forwarder | TxnForwarder | null = null;
  private sessionState: ClientSessionState | null = null;
  private server: BackendConnection | null = null;
  private cancelKey: { processId: number; secretKey: number } | null = null;
  /** What target_session_attrs asked for ('auto' when absent). */
  private sessionRoute: SessionRoute = 'auto';
  private draining = false;
  /** This client's place in its user's limits, once logged in. */
  private userSlot: UserSlot | null = null;
  /** What the idle sweep saw last (see sweepIdle). */
  private quiet: { kind: 'idle' | 'in-transaction' | null; signature: number; since: number } = { kind: null, signature: -1, since: 0 };
  authMechanism: AuthMechanism | null = null;
  /** Set once forwarding starts: this client's measurements. */
  meter: RequestMeter | null = null;
  /** The application_name the client gave at startup. */
  applicationName = '';
  /** The login its server connections use (upstream.user/database, or the client's own). */
  upstreamLogin = { user: '', database: '' };
  private readonly log: Logger;

  constructor(
    socket: net.Socket,
    private readonly deps: SessionDeps,
  ) {
    this.socket = socket;
    this.log = deps.logger;
    this.startup = new StartupReader(deps.settings.startupLimits);
    socket.setNoDelay(true);
    this.loginTimer = setTimeout(() => this.fail(new AmbassadorError('LOGIN_TIMEOUT', 'login timed out: the client did not complete authentication in time')), deps.settings.loginTimeoutMs);
    this.attach(socket);
  }

  get id(): number {
    return this.deps.id;
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** Read through a getter so TypeScript does not narrow it across awaits. */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  /** What the client is doing now (metrics, SHOW CLIENTS). */
  get activity(): ClientActivity {
    const forwarder = this.forwarder;
    if (this.state === 'console') return 'active';
    if (forwarder === null) return 'login';
    if (forwarder instanceof TxnForwarder && forwarder.waiting) return 'waiting';
    return forwarder.idle ? 'idle' : 'active';
  }

  /** The server connection the client holds now (session mode, or a transaction's lease). */
  get serverConnection(): BackendConnection | null {
    return this.forwarder instanceof TxnForwarder ? this.forwarder.server : this.server;
  }

  /** Why the client is pinned to its server now (transaction mode), if it is. */
  get pinReasons(): readonly string[] {
    return this.sessionState?.pinned ? this.sessionState.pinReasons : [];
  }

  get tls(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  get localAddress(): { address: string; port: number } {
    return { address: this.socket.localAddress ?? '', port: this.socket.localPort ?? 0 };
  }

  get remote(): { address: string; port: number } {
    return { address: this.socket.remoteAddress ?? '', port: this.socket.remotePort ?? 0 };
  }

  /** A config reload changed query logging: applies from the next request on. */
  configureQueryLog(settings: QueryLogSettings): void {
    this.meter?.configure(settings);
    if (this.forwarder instanceof Forwarder) this.forwarder.readTexts(settings.queries !== 'off');
  }

  /** Whether the client is between transactions with nothing in flight. */
  get idle(): boolean {
    return this.forwarder === null ? this.state !== 'connecting' : this.forwarder.idle;
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'client socket error'));
    socket.on('end', this.onClientEnd);
    socket.on('close', () => this.close('client closed the connection'));
  }

  /**
   * The client half-closed (the listener's sockets are half-open): the session ends, as at a
   * close, unless it is a cancel connection, which the client may half-close right after its
   * CancelRequest and still wait for the close that says the cancel has landed.
   */
  private readonly onClientEnd = (): void => {
    if (this.state !== 'cancel') this.close('client closed the connection');
  };

  private onData(chunk: Buffer): void {
    try {
      switch (this.state) {
        case 'console':
        case 'cancel':
          return;
        case 'startup':
          return this.onStartupData(chunk);
        case 'auth':
          // Each step of the exchange consumes the next message as it arrives, and a message
          // out of place fails the login, so this queue stays small.
          this.authInbox.push(chunk);
          this.authWaiter?.();
          return;
        case 'connecting':
          return this.hold(chunk);
        case 'forwarding':
        case 'closed':
          return;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private onStartupData(chunk: Buffer): void {
    let result: { packet: StartupPacket; rest: Buffer } | null;
    try {
      result = this.startup.push(chunk);
    } catch (err) {
      if (err instanceof StartupError) {
        const code = err.reason === 'unsupported-protocol' ? 'UNSUPPORTED_PROTOCOL' : 'STARTUP_INVALID';
        throw new AmbassadorError(code, err.message);
      }
      throw err;
    }
    if (result === null) return;
    const { packet, rest } = result;
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc':
        if (rest.length > 0) {
          throw new AmbassadorError('PROTOCOL_VIOLATION', `received unencrypted data after ${packet.kind === 'ssl' ? 'SSL' : 'GSSAPI encryption'} request`);
        }
        return packet.kind === 'ssl' ? this.answerSslRequest() : void this.socket.write('N');
      case 'cancel': {
        // Closed through close(), so the session leaves the registry, once the cancel has reached
        // the server (see CancelRegistry.cancel). Until then nothing more is read (paused, and
        // ignored): bytes behind a CancelRequest are never a login.
        this.state = 'cancel';
        clearTimeout(this.loginTimer);
        this.socket.pause();
        const done = (): void => {
          this.close('cancel request handled');
          this.socket.destroy();
        };
        const outcome = this.deps.cancels.cancel(packet.processId, packet.secretKey, done);
        if (outcome === 'too-many') {
          this.log.warn({ limit: this.deps.settings.maxConcurrentCancels }, 'cancel request dropped: too many cancels on their way (listen.maxConcurrentCancels)');
        }
        if (outcome !== 'sent') done();
        return;
      }
      case 'startup':
        return this.begin(packet, rest);
    }
  }

  private answerSslRequest(): void {
    const context = this.deps.settings.tlsContext;
    if (context === null || this.socket instanceof tls.TLSSocket) {
      this.socket.write('N');
      return;
    }
    this.socket.write('S');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => {}); // reported through the TLS socket
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: context });
    this.socket = secure;
    secure.on('error', (err) => {
      this.log.debug({ err: err.message }, 'client TLS error');
      this.close('client TLS failed');
    });
    secure.on('end', this.onClientEnd);
    secure.on('close', () => this.close('client closed the connection'));
    secure.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  private begin(packet: Extract<StartupPacket, { kind: 'startup' }>, rest: Buffer): void {
    const settings = this.deps.settings;
    if (settings.tlsRequired && !(this.socket instanceof tls.TLSSocket)) {
      throw new AmbassadorError('TLS_REQUIRED', 'this ambassador accepts TLS connections only', { hint: 'Connect with sslmode=require.' });
    }
    if (packet.params.has('replication') && !['false', 'off', '0', 'no'].includes(packet.params.get('replication')!)) {
      throw new AmbassadorError('UNSUPPORTED_PROTOCOL', 'replication connections are not supported through the ambassador');
    }
    const user = packet.params.get('user');
    if (!user) throw new AmbassadorError('STARTUP_INVALID', 'no PostgreSQL user name specified in startup packet');
    this.user = user;
    this.database = packet.params.get('database') || user;
    this.applicationName = packet.params.get('application_name') ?? '';
    const carried = new Map<string, string>();
    for (const [name, value] of packet.params) if (!NOT_CARRIED.has(name)) carried.set(name, value);
    if (packet.minor > SUPPORTED_MINOR || packet.protocolOptions.length > 0) {
      this.socket.write(encodeNegotiateProtocolVersion(SUPPORTED_MINOR, packet.protocolOptions));
    }
    this.state = 'auth';
    if (rest.length > 0) this.authInbox.push(rest);
    void this.authenticateThenConnect(carried);
  }

  private async authenticateThenConnect(params: Map<string, string>): Promise<void> {
    try {
      const certificate = this.socket instanceof tls.TLSSocket ? (this.socket.getX509Certificate()?.raw ?? null) : null;
      this.authMechanism = await authenticateClient(
        { send: (m) => this.socket.write(m), next: () => this.nextAuthMessage(), serverCertificate: certificate },
        this.user,
        this.deps.settings.auth,
      );
      if (this.closed) return;
      if (this.database === ADMIN_DATABASE) return this.openConsole();
      this.userSlot = this.deps.userLimits.admit(this.user);
      if (this.userSlot === null) {
        throw new AmbassadorError('TOO_MANY_CLIENTS', `too many connections for role "${this.user}"`, {
          hint: 'listen.maxClientConnectionsPerUser limits the connections each user may hold.',
        });
      }
      this.socket.write(encodeAuthenticationOk());
      // The client has done its part; the upstream connect has its own timeout.
      clearTimeout(this.loginTimer);
      this.state = 'connecting';
      for (const chunk of this.remainingAuthBytes()) this.hold(chunk);
      if (this.draining) throw new AmbassadorError('SHUTTING_DOWN', 'the ambassador is shutting down');
      const settings = this.deps.settings;
      this.sessionRoute = takeTargetSessionAttrs(params);
      const request = { user: settings.upstreamUser ?? this.user, database: settings.upstreamDatabase ?? this.database, params };
      this.upstreamLogin = { user: request.user, database: request.database };
      this.sessionState = new ClientSessionState(params, this.deps.onPin);
      // Roles known (first health round) and, when splitting, the database's functions read,
      // so that the first statement is already routed as well as the later ones.
      await this.deps.pool.ready(request);
      if (settings.poolMode === 'transaction') await this.deps.routing.catalogs?.ready(request);
      // Logging in takes a server even in transaction mode: it proves the upstream login works
      // and gives the client real ParameterStatus values for its settings.
      // The server is the session's only once set up: a client that hangs up meanwhile leaves
      // it to this function (close() would hand back a connection still in the exchange).
      const server = await this.loginServer(request);
      await this.syncState(server, this.sessionState);
      if (this.closed) {
        this.deps.pool.release(server, 'reusable');
        return;
      }
      this.server = server;
      this.startForwarding(server, request);
      // A drain that began while this client was logging in ends it as soon as it is ready.
      if (this.draining && this.idle) this.endForShutdown();
    } catch (err) {
      this.logLoginFailure(err);
      // A server's own refusal (database does not exist, too many connections) reaches the
      // client as the server worded it; upstream auth problems are the ambassador's to explain.
      const relay = err instanceof UpstreamLoginError && !err.serverCode.startsWith('28');
      this.fail(relay ? frameMessage(BackendType.ErrorResponse, err.serverPayload) : err);
    }
  }

  /** The admin console (database "ambassador"): answered here, nothing goes upstream. */
  private openConsole(): void {
    clearTimeout(this.loginTimer);
    const rest = this.remainingAuthBytes();
    this.state = 'console';
    this.socket.removeAllListeners('data');
    startConsole(this.socket, this.user, this.deps.settings.console, rest, {
      log: this.log,
      end: (reason) => this.close(reason),
    });
    this.log.info({ user: this.user, client: this.remoteAddress }, 'admin console session opened');
  }

  /**
   * The server a login uses: the primary, or in session mode a replica when target_session_attrs
   * asked for a standby (the whole session then runs there).
   */
  private loginServer(request: ServerRequest): Promise<BackendConnection> {
    const pool = this.deps.pool;
    if (this.deps.settings.poolMode === 'transaction' || this.sessionRoute !== 'replica') return pool.acquire(request);
    return pool.acquireFor({ kind: 'read' }, request);
  }

  private logLoginFailure(err: unknown): void {
    const e = asAmbassadorError(err);
    this.deps.traffic.unattributed.error(e.sqlstate);
    const fields = { user: this.user, database: this.database, code: e.code, sqlstate: e.sqlstate, reason: e.message };
    if (e.code === 'AUTH_FAILED' || e.code === 'PROTOCOL_VIOLATION' || e.code === 'LOGIN_TIMEOUT') this.log.info(fields, 'client login failed');
    else this.log.warn(fields, 'client could not be connected upstream');
  }

  /** The next complete message of the auth phase; bytes after it stay queued. */
  private async nextAuthMessage(): Promise<{ type: number; payload: Buffer }> {
    for (;;) {
      if (this.closed) throw new AmbassadorError('AUTH_FAILED', 'client disconnected during authentication');
      const message = this.authFramer.shift(this.authInbox);
      if (message !== undefined) return message;
      await new Promise<void>((resolve) => (this.authWaiter = resolve));
      this.authWaiter = null;
    }
  }

  private remainingAuthBytes(): Buffer[] {
    if (!this.authFramer.atBoundary) throw new AmbassadorError('PROTOCOL_VIOLATION', 'partial message after authentication');
    const rest = this.authInbox;
    this.authInbox = [];
    return rest;
  }

  private hold(chunk: Buffer): void {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes > this.deps.settings.maxClientBuffer) this.socket.pause();
  }

  /** Makes a pooled server carry the client's startup settings (RESET ALL, then SETs). */
  private async syncState(server: BackendConnection, state: ClientSessionState): Promise<void> {
    if (server.stateKey === state.stateKey) return;
    const sql = ['RESET ALL', ...state.syncStatements].join(';\n');
    let error: Buffer | null;
    try {
      ({ error } = await server.exchange([encodeQuery(sql)], 1, this.deps.settings.exchangeTimeoutMs));
    } catch (err) {
      this.deps.pool.release(server, 'broken');
      throw err;
    }
    if (error) {
      this.deps.pool.release(server, 'reusable');
      throw new UpstreamLoginError(error, server.target);
    }
    server.stateKey = state.stateKey;
  }

  private startForwarding(server: BackendConnection, request: ServerRequest): void {
    clearTimeout(this.loginTimer);
    this.cancelKey = this.deps.cancels.register(this);
    const hello: Buffer[] = [];
    for (const [name, value] of server.parameters) hello.push(encodeParameterStatus(name, value));
    hello.push(encodeBackendKeyData(this.cancelKey.processId, this.cancelKey.secretKey));
    hello.push(encodeReadyForQuery(server.transactionStatus));
    this.socket.write(Buffer.concat(hello));
    this.state = 'forwarding';
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    this.socket.removeAllListeners('data');
    const settings = this.deps.settings;
    this.meter = new RequestMeter(this.deps.traffic.forDatabase(request.database), this.log, settings.queryLog);
    if (settings.poolMode === 'transaction') {
      this.deps.pool.release(server, 'reusable');
      this.server = null;
      this.forwarder = this.transactionForwarder(request, server, this.meter);
    } else {
      this.forwarder = this.sessionForwarder(server, this.meter);
    }
    this.forwarder.start(held);
    this.log[settings.logConnections ? 'info' : 'debug'](
      {
        user: this.user,
        database: this.database,
        auth: this.authMechanism,
        tls: this.socket instanceof tls.TLSSocket,
        client: this.remoteAddress,
        server: `${server.target.host}:${server.target.port}`,
        mode: this.deps.settings.poolMode,
      },
      'client logged in',
    );
  }

  private sessionForwarder(server: BackendConnection, meter: RequestMeter): Forwarder {
    return new Forwarder(this.socket, server, {
      meter,
      route: this.deps.pool.roleOf(server) === 'replica' ? 'replica' : 'primary',
      maxMessageSize: this.deps.settings.maxMessageSize,
      userSlot: this.userSlot!,
      garbage: this.deps.garbage,
      onEnd: (reason, error) => {
        if (error) this.log.warn({ reason }, 'session ended with an error');
        if (reason === SERVER_CLOSED && this.server !== null) this.deps.pool.suspect(this.server, 'connection lost');
        this.close(reason, error ? 'broken' : 'reusable');
      },
      onIdle: () => {
        if (this.draining) this.endForShutdown();
      },
    });
  }

  private transactionForwarder(request: ServerRequest, server: BackendConnection, meter: RequestMeter): TxnForwarder {
    const { settings, routing: context } = this.deps;
    const catalogs = context.catalogs;
    const routing = new ClientRouting({
      classifier: catalogs ? catalogs.classifierFor(request) : null,
      readYourWrites: context.readYourWrites,
      route: this.sessionRoute,
      readOnlyDefault: server.parameters.get('default_transaction_read_only') === 'on',
    });
    return new TxnForwarder(this.socket, {
      routing,
      meter,
      onCatalogChange: () => catalogs?.invalidate(request.database),
      pool: this.deps.pool,
      request,
      state: this.sessionState!,
      effects: this.deps.effects,
      maxMessageSize: settings.maxMessageSize,
      maxQueuedBytes: settings.maxClientBuffer,
      userSlot: this.userSlot!,
      statementCapacity: settings.statementCapacity,
      cacheUnnamedStatements: settings.cacheUnnamedStatements,
      exchangeTimeoutMs: settings.exchangeTimeoutMs,
      garbage: this.deps.garbage,
      log: this.log,
      onEnd: (reason) => this.close(reason),
      onIdle: () => {
        if (this.draining) this.endForShutdown();
      },
    });
  }

  /**
   * From the cancel registry: forward a cancel to this session's server; settles when sent (never
   * rejects). Under transaction pooling a client whose request still waits for a server has it
   * canceled here instead (TxnForwarder.cancelWaiting).
   */
  cancelUpstream(): Promise<void> | null {
    if (this.state !== 'forwarding') return null;
    const txn = this.forwarder instanceof TxnForwarder ? this.forwarder : null;
    const server = txn !== null ? txn.server : this.server;
    if (server === null) {
      txn?.cancelWaiting();
      return null;
    }
    return server.cancel().catch((err) => this.log.debug({ err: String(err) }, 'cancel request to server failed'));
  }

  /**
   * The listener's idle sweep (listen.clientIdleTimeout, listen.idleInTransactionTimeout): a
   * client found idle, with no byte moved either way, on every sweep for the timeout is
   * disconnected the way Postgres does it (FATAL 57P05 / 25P03). Socket byte counts tell
   * whether anything moved, so the hot path keeps no clock.
   */
  sweepIdle(now: number): void {
    const forwarder = this.forwarder;
    if (forwarder === null || this.state !== 'forwarding') return;
    const kind = forwarder.idle ? 'idle' : forwarder.idleInTransaction ? 'in-transaction' : null;
    const signature = this.socket.bytesRead + this.socket.bytesWritten;
    const quiet = this.quiet;
    if (kind === null || kind !== quiet.kind || signature !== quiet.signature) {
      this.quiet = { kind, signature, since: now };
      return;
    }
    const settings = this.deps.settings;
    const limit = kind === 'idle' ? settings.clientIdleTimeoutMs : settings.idleInTransactionTimeoutMs;
    if (limit === 0 || now - quiet.since < limit) return;
    const err =
      kind === 'idle'
        ? new AmbassadorError('CLIENT_IDLE_TIMEOUT', 'terminating connection due to idle-session timeout', { hint: 'listen.clientIdleTimeout' })
        : new AmbassadorError('IDLE_IN_TRANSACTION_TIMEOUT', 'terminating connection due to idle-in-transaction timeout', { hint: 'listen.idleInTransactionTimeout' });
    this.meter?.error(err.sqlstate);
    if (forwarder.clientAtBoundary) this.writeError(errorResponseFor(err));
    this.log.info({ reason: err.message }, 'idle client disconnected');
    // Nothing is in flight: the server is rolled back or reset and goes back to the pool.
    this.close(err.message);
  }

  /**
   * Graceful shutdown: end the session as soon as it is between transactions. A cancel on its
   * way is left to land (it closes its session then, within upstream.connectTimeout twice).
   */
  drain(): void {
    this.draining = true;
    if (this.state === 'cancel') return;
    if (this.state === 'forwarding') {
      if (this.idle) this.endForShutdown();
    } else if (this.state !== 'connecting') {
      this.fail(new AmbassadorError('SHUTTING_DOWN', 'the ambassador is shutting down'));
    }
  }

  /** Ends the session now with 57P01, whatever it is doing. */
  terminate(): void {
    this.endForShutdown();
  }

  private endForShutdown(): void {
    this.fail(new AmbassadorError('SHUTTING_DOWN', 'terminating connection due to administrator command'));
  }

  /** Sends the error when the client stream is at a message boundary, then closes. */
  private fail(err: unknown): void {
    if (this.state === 'closed') return;
    if (err instanceof FramingError) err = new AmbassadorError('MESSAGE_TOO_LARGE', err.message);
    // A cancel connection never hears anything, as from Postgres.
    const canSpeak = (this.state !== 'startup' || err instanceof AmbassadorError) && this.state !== 'cancel';
    if (canSpeak && (this.forwarder === null || this.forwarder.clientAtBoundary) && !this.socket.destroyed) {
      this.writeError(Buffer.isBuffer(err) ? err : errorResponseFor(err));
      if (this.forwarder !== null && !Buffer.isBuffer(err)) this.meter?.error(asAmbassadorError(err).sqlstate);
    }
    this.close(Buffer.isBuffer(err) ? 'upstream refused the login' : asAmbassadorError(err).message, 'broken');
  }

  /** An error the session itself tells the client: behind an answer the forwarder owes, if any. */
  private writeError(bytes: Buffer): void {
    if (this.forwarder instanceof TxnForwarder) this.forwarder.payOwed();
    this.socket.write(bytes);
  }

  close(reason: string, outcome: 'reusable' | 'broken' = 'reusable'): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.loginTimer);
    this.authWaiter?.();
    if (this.cancelKey) this.deps.cancels.unregister(this.cancelKey.processId);
    this.userSlot?.release();
    const forwarder = this.forwarder;
    forwarder?.stop();
    if (this.server) {
      // Session mode: the server goes back to the pool reset (DISCARD ALL), or closed when the
      // session broke or a response was still coming.
      const quiet = outcome === 'reusable' && forwarder instanceof Forwarder && forwarder.quiet;
      returnServer(this.deps.pool, this.server, { quiet, reset: true, timeoutMs: this.deps.settings.exchangeTimeoutMs });
      this.server = null;
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    const loggedIn = this.meter !== null;
    this.log[loggedIn && this.deps.settings.logConnections ? 'info' : 'debug']({ reason, durationMs: Date.now() - this.connectedAt }, 'client disconnected');
    this.deps.onClose(this);
  }
}

/**
 * target_session_attrs (libpq's connection option; some drivers send it as a startup parameter)
 * chooses the session's route; it is not a server setting, so it is taken out of the parameters.
 */
function takeTargetSessionAttrs(params: Map<string, string>): SessionRoute {
  const value = params.get('target_session_attrs');
  params.delete('target_session_attrs');
  const route = routeFromTargetSessionAttrs(value);
  if (route === 'invalid') {
    throw new AmbassadorError('STARTUP_INVALID', `invalid target_session_attrs value: "${value}"`, {
      hint: 'Use any, read-write, read-only, primary, standby or prefer-standby.',
    });
  }
  return route;
}
