// One upstream server connection: connect (via a Connector), send the StartupMessage,
// authenticate as a client (cleartext, MD5, SCRAM-SHA-256 with channel binding when TLS allows),
// and collect ParameterStatus and BackendKeyData up to the first ReadyForQuery. After that the
// connection is handed to a session, which forwards raw bytes; this class then only knows the
// socket, the server's identity and how to cancel or close it. A server that speaks while no one
// reads (idle in the pool) is closed: its bytes would reach the next client out of place.

import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type tls from 'node:tls';
import { AmbassadorError } from '../errors.ts';
import {
  AuthCode,
  BackendType,
  decodeAuthentication,
  decodeBackendKeyData,
  decodeDataRow,
  decodeErrorFields,
  decodeParameterStatus,
  decodeReadyForQuery,
  decodeResultShape,
  encodeErrorResponse,
  NO_RESULT,
  type ResultShape,
  summarizeError,
  type TransactionStatus,
} from '../protocol/backend.ts';
import { ALL_TYPES, Framer, FramingError, typeSet } from '../protocol/framer.ts';
import { encodePasswordMessage, encodeQuery, encodeSASLInitialResponse, encodeSASLResponse, encodeTerminate } from '../protocol/frontend.ts';
import { md5AuthResponse } from '../protocol/md5.ts';
import { certificateChannelBindingHash, SaltedKeyCache, ScramClient, ScramError } from '../protocol/scram.ts';
import { encodeCancelRequest, encodeStartupMessage } from '../protocol/startup.ts';
import { openWire, type Wire } from '../lib/wire.ts';
import type { Connector, UpstreamTarget, UpstreamTlsSettings } from './connector.ts';

export interface BackendConnectOptions {
  connector: Connector;
  target: UpstreamTarget;
  /** The current TLS material: read at connect, and again for each cancel (it may have rotated since). */
  tls: () => UpstreamTlsSettings;
  connectTimeoutMs: number;
  user: string;
  database: string;
  /** Further startup parameters carried from the client (application_name, options, DateStyle, ...). */
  params: ReadonlyMap<string, string>;
  /** The upstream password (rotating credentials are a function); null when none is configured. */
  password: () => Promise<string | null>;
  maxMessageSize: number;
}

/**
 * The server refused the login with an ErrorResponse: its payload is relayed to the client. One
 * without a valid SQLSTATE (Postgres always sends one) is a protocol violation: it becomes an
 * 08P01 of the ambassador's that quotes the server's message, so no client gets an error without
 * a code.
 */
export class UpstreamLoginError extends AmbassadorError {
  readonly serverPayload: Buffer;
  readonly serverCode: string;

  constructor(payload: Buffer, target: UpstreamTarget) {
    const fields = safeFields(payload);
    const given = fields.get('C');
    const valid = given !== undefined && SQLSTATE.test(given);
    const serverCode = valid ? given : PROTOCOL_VIOLATION;
    const message = valid
      ? (fields.get('M') ?? 'server refused the connection')
      : `server ${target.host}:${target.port} refused the login without a SQLSTATE: ${fields.get('M') ?? '(no message)'}`;
    const authProblem = serverCode.startsWith('28');
    super(
      authProblem ? 'UPSTREAM_AUTH_FAILED' : valid ? 'UPSTREAM_CONNECT_FAILED' : 'UPSTREAM_PROTOCOL',
      authProblem ? `upstream authentication to ${target.host}:${target.port} failed: ${message}` : message,
      authProblem ? { hint: serverCode === INVALID_PASSWORD ? REJECTED_PASSWORD_HINT : 'The ambassador could not log in upstream: check upstream.credentials.' } : {},
    );
    this.serverPayload = valid ? Buffer.from(payload) : encodeErrorResponse({ severity: 'FATAL', code: PROTOCOL_VIOLATION, message }).subarray(5);
    this.serverCode = serverCode;
  }
}

const SQLSTATE = /^[0-9A-Z]{5}$/;
const INVALID_PASSWORD = '28P01';
/**
 * Postgres answers a wrong password, an expired one (the role's VALID UNTIL has passed), a role
 * without a password and a missing role alike, and keeps the reason for its own log: the hint
 * says so, so nobody hunts for a typo in a valid password.
 */
const REJECTED_PASSWORD_HINT =
  'The server refused the password upstream.credentials gave for this user. Postgres reports a wrong password, an expired one ' +
  "(the role's VALID UNTIL has passed), a role without a password and a missing role alike; the server's log says which.";
const PROTOCOL_VIOLATION = '08P01';

/**
 * A login failure as a catalogue error: a malformed message or a SCRAM exchange the server got
 * wrong is a protocol violation (not retried), a server that cannot prove it knows the password
 * (or reports the exchange failed) an authentication failure.
 */
function loginFailure(err: unknown, where: string): unknown {
  if (err instanceof ScramError) {
    const refused = err.reason === 'bad-server-signature' || err.reason === 'server-error';
    return new AmbassadorError(refused ? 'UPSTREAM_AUTH_FAILED' : 'UPSTREAM_PROTOCOL', `SCRAM authentication with ${where} failed: ${err.message}`, { cause: err });
  }
  if (err instanceof FramingError || err instanceof RangeError) {
    return new AmbassadorError('UPSTREAM_PROTOCOL', `malformed message from server ${where} during login: ${err.message}`);
  }
  return err;
}

function safeFields(payload: Buffer): Map<string, string> {
  try {
    return decodeErrorFields(payload);
  } catch {
    return new Map();
  }
}

/** Reads a connection while a transaction-pooling client holds it (BackendConnection.attach). */
export interface ServerSink {
  onServerData(chunk: Buffer): void;
  onServerDrain(): void;
  onServerClose(): void;
}

/** Postgres builds every message in a buffer of at most MaxAllocSize (1 GiB - 1): a longer one is not from Postgres. */
export const SERVER_MAX_MESSAGE = 0x3fffffff;
/**
 * SCRAM keys of the upstream passwords, shared by every server login of the process: a pool that
 * grows, refills after a failover or opens a connection per session (session pooling) derives a
 * password's keys once per server salt, and never on the event loop.
 */
const SALTED_KEYS = new SaltedKeyCache();
const EXCHANGE_INSPECT = typeSet('EZSDTn');

/** What an exchange() keeps of the answers besides the first error. */
export interface ExchangeAnswers {
  /** Each DataRow, as text. */
  rows?: Array<Array<string | null>>;
  /** The shape of each RowDescription or NoData (NO_RESULT), in order; null for a malformed one. */
  shapes?: Array<ResultShape | null>;
}

export class BackendConnection {
  readonly parameters = new Map<string, string>();
  /** Pooling state: prepared statements this server holds (with when each was last used) and the session state applied. */
  readonly statements = new Map<string, number>();
  /** Statements the server still holds in an outdated form (cached plan changed): close first. */
  readonly staleStatements = new Set<string>();
  /**
   * The result shapes of statements it holds, where a Describe answered on this connection told
   * (frontend/result-shapes.ts): a statement made again has no entry until it is described again.
   */
  readonly statementShapes = new Map<string, ResultShape>();
  stateKey = '';
  /**
   * Settles once every cancel sent for this connection (cancel()) has reached its end: the
   * server closed that cancel connection, or it failed. Null while none is on its way.
   */
  cancelling: Promise<void> | null = null;
  readonly createdAt = Date.now();
  processId = 0;
  secretKey: Buffer = Buffer.alloc(0);
  transactionStatus: TransactionStatus = 'I';
  /**
   * The pool this connection was opened for, set once by the Pooler that opened it (opaque here):
   * kept on the connection, where a map from connection to pool cost a hash lookup at every
   * lease and release.
   */
  pooledBy: object | null = null;
  private closed = false;

  private constructor(
    readonly socket: net.Socket,
    readonly tlsSocket: tls.TLSSocket | null,
    readonly options: BackendConnectOptions,
  ) {
    // Whoever uses the connection learns of failures through 'close'; an 'error' with no
    // listener (say, a reset after the session let go of it) must not crash the process.
    socket.on('error', (err) => (this.lastError = err));
  }

  /** The last socket error, for diagnostics. */
  lastError: Error | null = null;

  private sink: ServerSink | null = null;
  /** The readers of the exchange() calls running now. */
  private readonly exchangeReaders = new Set<(chunk: Buffer) => void>();
  /** The socket's bytes after the login (listen). */
  private wire: Wire | null = null;

  /**
   * Hands the socket's data, drain and close events to `sink` until detach(sink). The listeners
   * are added once per connection (listen): moving a pooled connection from one client to the
   * next costs a field write, not six listener changes per transaction.
   */
  attach(sink: ServerSink): void {
    this.sink = sink;
    this.wire!.resume();
  }

  /** Writes to the server; false when its buffer is full (the sink hears onServerDrain). */
  write(bytes: Uint8Array): boolean {
    return this.wire!.write(bytes);
  }

  /** Stops reading the server until resume() (the client cannot take more now). */
  pause(): void {
    this.wire!.pause();
  }

  resume(): void {
    this.wire!.resume();
  }

  /** After the login: the socket's events go to the sink; bytes that no one asked for end the connection. */
  private listen(): void {
    const readers = this.exchangeReaders;
    this.wire = openWire(this.socket, {
      onData: (chunk) => {
        if (readers.size === 0) {
          if (this.sink !== null) this.sink.onServerData(chunk);
          else this.unsolicited(chunk);
          return;
        }
        // The exchanges reading now: one the sink starts on this chunk (it stops reading first)
        // waits for the server's answer to it, which comes in a later chunk.
        const reading = [...readers];
        this.sink?.onServerData(chunk);
        for (const read of reading) read(chunk);
      },
      onDrain: () => this.sink?.onServerDrain(),
    });
    this.socket.on('close', () => this.sink?.onServerClose());
  }

  /**
   * The server sent bytes while no request of anyone's was in flight (idle in the pool): it broke
   * the protocol, and whatever it meant would reach the next client out of place. Closed; the
   * pool learns of it from the close.
   */
  private unsolicited(chunk: Buffer): void {
    const where = `${this.target.host}:${this.target.port}`;
    this.lastError = new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} sent ${chunk.length} bytes while no request was in flight`);
    this.close(true);
  }

  /**
   * The sink lets go. The socket is read again if the sink had paused it: a connection back in
   * the pool must notice the server closing, and bytes it sends to no one close it.
   */
  detach(sink: ServerSink): void {
    if (this.sink !== sink) return;
    this.sink = null;
    this.wire?.resume();
  }

  get target(): UpstreamTarget {
    return this.options.target;
  }

  static async connect(options: BackendConnectOptions): Promise<BackendConnection> {
    const { socket, tls } = await options.connector.connect(options.target, options.tls(), options.connectTimeoutMs);
    const conn = new BackendConnection(socket, tls, options);
    try {
      await conn.handshake();
      conn.listen();
      return conn;
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  private handshake(): Promise<void> {
    const { socket, options } = this;
    const params = new Map(options.params);
    params.set('user', options.user);
    params.set('database', options.database);
    const framer = new Framer(Math.min(options.maxMessageSize, 1 << 20), ALL_TYPES);
    let scram: ScramClient | null = null;

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let ready = false;
      /** An answer to an authentication request waits for the password: the server must wait for it too. */
      let answering = false;
      const where = `${options.target.host}:${options.target.port}`;
      const timer = setTimeout(
        () => finish(new AmbassadorError('UPSTREAM_CONNECT_TIMEOUT', `login to ${options.target.host}:${options.target.port} did not finish within ${options.connectTimeoutMs} ms`)),
        options.connectTimeoutMs,
      );
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onError = (err: NodeJS.ErrnoException): void => {
        const where = `${options.target.host}:${options.target.port}`;
        // Under TLS 1.3 the server judges the client certificate after the handshake completed:
        // its refusal arrives here as a TLS alert. Retrying cannot help; the certificate must change.
        if (err.code?.startsWith('ERR_SSL_')) {
          return finish(
            new AmbassadorError('UPSTREAM_TLS_FAILED', `server ${where} refused the TLS session during login: ${err.message}`, {
              cause: err,
              hint: 'The server did not accept the client certificate: check upstream.tls.cert and upstream.tls.key against the server\'s ssl_ca_file.',
            }),
          );
        }
        finish(new AmbassadorError('UPSTREAM_CONNECT_FAILED', `connection to ${where} failed during login: ${err.message}`));
      };
      const onClose = (): void =>
        finish(new AmbassadorError('UPSTREAM_CONNECT_FAILED', `server ${options.target.host}:${options.target.port} closed the connection during login`));

      const onMessage = (type: number, payload: Buffer | null): boolean => {
        const body = payload!;
        if (answering) {
          finish(new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} sent a message before its authentication request was answered`));
          return false;
        }
        switch (type) {
          case BackendType.Authentication: {
            const answer = this.answerAuth(body, () => scram, (s) => (scram = s));
            if (answer !== undefined) {
              answering = true;
              answer.then(
                () => (answering = false),
                (err: unknown) => finish(loginFailure(err, where)),
              );
            }
            return true;
          }
          case BackendType.ParameterStatus: {
            const { name, value } = decodeParameterStatus(body);
            this.parameters.set(name, value);
            return true;
          }
          case BackendType.BackendKeyData: {
            const key = decodeBackendKeyData(body);
            this.processId = key.processId;
            this.secretKey = key.secretKey;
            return true;
          }
          case BackendType.ReadyForQuery:
            this.transactionStatus = decodeReadyForQuery(body);
            ready = true;
            return false;
          case BackendType.ErrorResponse:
            finish(new UpstreamLoginError(body, options.target));
            return false;
          case BackendType.NoticeResponse:
          case BackendType.NegotiateProtocolVersion:
            return true;
          default:
            finish(new AmbassadorError('UPSTREAM_PROTOCOL', `unexpected message type 0x${type.toString(16)} from server during login`));
            return false;
        }
      };
      const onData = (chunk: Buffer): void => {
        try {
          const stopped = framer.push(chunk, onMessage);
          // The server speaks next when asked: bytes after ReadyForQuery would reach a client out of place.
          if (ready && stopped < chunk.length) finish(new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} sent data after ReadyForQuery before any query`));
          else if (ready) finish();
        } catch (err) {
          finish(loginFailure(err, where));
        }
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      socket.resume(); // the connector leaves a plaintext socket paused after TLS negotiation
      socket.write(encodeStartupMessage(params));
    });
  }

  /**
   * Answers one authentication request: at once, or (when the answer needs the password) by the
   * returned promise. Throws on a request it cannot or will not answer.
   */
  private answerAuth(payload: Buffer, getScram: () => ScramClient | null, setScram: (s: ScramClient) => void): Promise<void> | undefined {
    const request = decodeAuthentication(payload);
    const where = `${this.target.host}:${this.target.port}`;
    switch (request.code) {
      case AuthCode.Ok: {
        // A server that skips SCRAM's final step would never prove it knows the password.
        const client = getScram();
        if (client !== null && client.state !== 'done') {
          throw new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} reported success before completing SCRAM authentication`);
        }
        return undefined;
      }
      case AuthCode.CleartextPassword:
        return this.requirePassword().then((password) => void this.socket.write(encodePasswordMessage(password)));
      case AuthCode.MD5Password: {
        const { salt } = request as { salt: Buffer };
        return this.requirePassword().then((password) => void this.socket.write(encodePasswordMessage(md5AuthResponse(this.options.user, password, salt))));
      }
      case AuthCode.SASL: {
        const { mechanisms } = request as { mechanisms: string[] };
        const binding = this.channelBinding();
        const usePlus = binding !== null && mechanisms.includes('SCRAM-SHA-256-PLUS');
        if (!usePlus && !mechanisms.includes('SCRAM-SHA-256')) {
          throw new AmbassadorError('UPSTREAM_AUTH_FAILED', `server ${where} offers no supported SASL mechanism (${mechanisms.join(', ')})`);
        }
        return this.requirePassword().then((password) => {
          const client = new ScramClient({
            password,
            channelBinding: usePlus ? binding : null,
            // On TLS without -PLUS offered, say so ('y'), so a server that does support binding
            // can detect a stripped mechanism list (libpq does the same).
            channelBindingSupported: binding !== null && !usePlus,
          });
          setScram(client);
          this.socket.write(encodeSASLInitialResponse(usePlus ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256', client.clientFirst()));
        });
      }
      case AuthCode.SASLContinue: {
        const client = getScram();
        if (!client) throw new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} sent SASLContinue before SASL started`);
        return client
          .answerServerFirst((request as { data: Buffer }).data, SALTED_KEYS.keysFor)
          .then((clientFinal) => void this.socket.write(encodeSASLResponse(clientFinal)));
      }
      case AuthCode.SASLFinal: {
        const client = getScram();
        if (!client) throw new AmbassadorError('UPSTREAM_PROTOCOL', `server ${where} sent SASLFinal before SASL started`);
        client.verifyServerFinal((request as { data: Buffer }).data);
        return undefined;
      }
      default:
        throw new AmbassadorError('UPSTREAM_AUTH_FAILED', `server ${where} asked for an unsupported authentication method (code ${request.code})`, {
          hint: 'The ambassador authenticates upstream with password, md5 or scram-sha-256.',
        });
    }
  }

  private async requirePassword(): Promise<string> {
    const password = await this.options.password();
    if (password === null) {
      throw new AmbassadorError('UPSTREAM_AUTH_FAILED', `server ${this.target.host}:${this.target.port} asks for a password and none is configured`, {
        hint: 'Set upstream.credentials (or UPSTREAM_PASSWORD).',
      });
    }
    return password;
  }

  private channelBinding(): { type: 'tls-server-end-point'; data: Buffer } | null {
    const cert = this.tlsSocket?.getPeerX509Certificate();
    if (!cert) return null;
    return { type: 'tls-server-end-point', data: certificateChannelBindingHash(cert.raw) };
  }

  /**
   * A short exchange of the ambassador's own (state sync, statement replay, ROLLBACK, DISCARD
   * ALL) while no session reads this socket: writes `messages`, reads until `readyCount`
   * ReadyForQuery messages, and resolves with the first ErrorResponse payload (or null).
   * Rejects when the connection fails or the server takes longer than `timeoutMs`.
   *
   * `{ acknowledgements: n }` instead of a count of ReadyForQuery: Parse and Close messages sent
   * with Flush inside a client's extended-protocol exchange (no Sync, which would end it); done
   * after n ParseComplete or CloseComplete, or at the first ErrorResponse (the server then skips
   * up to the client's Sync). A Describe sent so counts too (answered by RowDescription or NoData).
   * Only for an exchange that has not failed: a failed one answers nothing. `answers` keeps rows
   * and result shapes.
   */
  exchange(messages: Buffer[], until: number | { acknowledgements: number }, timeoutMs: number, answers: ExchangeAnswers = {}): Promise<{ error: Buffer | null }> {
    const { rows, shapes } = answers;
    const readyCount = typeof until === 'number' ? until : -1;
    const acknowledgements = typeof until === 'number' ? -1 : until.acknowledgements;
    const socket = this.socket;
    const framer = new Framer(SERVER_MAX_MESSAGE, EXCHANGE_INSPECT);
    return new Promise((resolve, reject) => {
      let seen = 0;
      let error: Buffer | null = null;
      let finished = false;
      const done = (err?: Error): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.exchangeReaders.delete(onData);
        socket.off('close', onClose);
        if (err) {
          this.close(true);
          reject(err);
        } else resolve({ error });
      };
      const onMessage = (type: number, payload: Buffer | null): boolean => {
        if (type === BackendType.ErrorResponse && error === null) error = Buffer.from(payload!);
        const described = type === BackendType.RowDescription || type === BackendType.NoData;
        if (described && shapes !== undefined) shapes.push(type === BackendType.NoData ? NO_RESULT : decodeResultShape(payload!));
        if (acknowledgements >= 0 && (type === BackendType.ErrorResponse || ((type === BackendType.ParseComplete || type === BackendType.CloseComplete || described) && ++seen === acknowledgements))) {
          done();
          return false;
        }
        if (type === BackendType.DataRow && rows !== undefined) rows.push(decodeDataRow(payload!));
        if (type === BackendType.ParameterStatus) {
          const { name, value } = decodeParameterStatus(payload!);
          this.parameters.set(name, value);
        }
        if (type === BackendType.ReadyForQuery) {
          this.transactionStatus = decodeReadyForQuery(payload!);
          if (++seen === readyCount) {
            done();
            return false;
          }
        }
        return true;
      };
      const onData = (chunk: Buffer): void => {
        try {
          framer.push(chunk, onMessage);
        } catch (err) {
          done(new AmbassadorError('UPSTREAM_PROTOCOL', `malformed data from server: ${String(err)}`));
        }
      };
      const onClose = (): void => done(new AmbassadorError('UPSTREAM_LOST', `server ${this.target.host}:${this.target.port} closed the connection`));
      const timer = setTimeout(() => done(new AmbassadorError('UPSTREAM_LOST', `server ${this.target.host}:${this.target.port} did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.exchangeReaders.add(onData);
      socket.on('close', onClose);
      this.resume();
      this.write(messages.length === 1 ? messages[0]! : Buffer.concat(messages));
    });
  }

  /** The server holds no prepared statement any more (DEALLOCATE ALL or DISCARD ALL ran on it). */
  forgetStatements(): void {
    this.statements.clear();
    this.staleStatements.clear();
    this.statementShapes.clear();
  }

  /**
   * Runs one statement of the ambassador's own (health probe, catalog read) and returns its rows
   * as text; a server error rejects with UPSTREAM_QUERY_FAILED carrying the server's message.
   */
  async query(sql: string, timeoutMs: number): Promise<Array<Array<string | null>>> {
    const rows: Array<Array<string | null>> = [];
    const { error } = await this.exchange([encodeQuery(sql)], 1, timeoutMs, { rows });
    if (error !== null) {
      const { code, message } = summarizeError(error);
      throw new AmbassadorError('UPSTREAM_QUERY_FAILED', `${this.target.host}:${this.target.port} refused the ambassador's query: ${message} (${code})`);
    }
    return rows;
  }

  /**
   * Asks the server to cancel whatever this connection is running, over a new connection. Until
   * that cancel has reached its end (`cancelling`), the pool gives the connection to no one else:
   * a cancel that arrived behind its query's end would stop the next client's query (Pooler.release).
   */
  cancel(): Promise<void> {
    const sent = this.sendCancel();
    const done = sent.catch(() => {});
    const all = this.cancelling === null ? done : Promise.all([this.cancelling, done]).then(() => {});
    this.cancelling = all;
    void all.then(() => {
      if (this.cancelling === all) this.cancelling = null;
    });
    return sent;
  }

  private async sendCancel(): Promise<void> {
    const { socket } = await this.options.connector.connect(this.target, this.options.tls(), this.options.connectTimeoutMs);
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.once('error', () => resolve());
      socket.end(encodeCancelRequest(this.processId, this.secretKey));
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, this.options.connectTimeoutMs).unref();
    });
  }

  /** Ends the connection politely (Terminate), or at once when `force`. */
  close(force = false): void {
    if (this.closed) return;
    this.closed = true;
    if (force || this.socket.destroyed) {
      this.socket.destroy();
      return;
    }
    this.socket.end(encodeTerminate());
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }

  get isClosed(): boolean {
    return this.closed || this.socket.destroyed;
  }
}
