// A scriptable fake PostgreSQL server for hostile-server tests: a real TCP server on 127.0.0.1
// (OS-chosen port) that speaks real protocol bytes, built from the ambassador's own encoders
// (src/protocol/backend.ts) and SCRAM server (src/protocol/scram.ts).
//
// Each accepted connection goes through the startup phase here: SSLRequest is answered as
// `sslAnswer` says (changeable at run time), GSSENCRequest with 'N', CancelRequest is recorded
// and handed to the connection it names (FakeConnection.cancelled). After the StartupMessage,
// `scriptFor` picks the connection's script from its startup parameters (tests key it by
// database name). A script is an async function over a FakeConnection: pull-based reads
// (nextMessage, nextQuery), honest logins (loginScram, loginCleartext) with hooks to tamper with
// them, writes of any bytes, and `proxy` to hand the connection to a real server unchanged.
//
// Invariants: a script never throws out of the fake (its error is recorded on the connection:
// a script waiting on a peer that hung up ends there); every socket, proxied ones included, is
// destroyed by close(); every connection is recorded with what it received, in order.

import net from 'node:net';
import {
  encodeAuthenticationCleartext,
  encodeAuthenticationOk,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeErrorResponse,
  encodeParameterStatus,
  encodeReadyForQuery,
  encodeTextRowDescription,
  encodeDataRow,
} from '../../src/protocol/backend.ts';
import { ALL_TYPES, Framer } from '../../src/protocol/framer.ts';
import { decodePasswordMessage, decodeSASLInitialResponse } from '../../src/protocol/frontend.ts';
import { buildScramVerifier, ScramServer, type ScramVerifier } from '../../src/protocol/scram.ts';
import { encodeStartupMessage, StartupReader, type StartupPacket } from '../../src/protocol/startup.ts';
import { sleepUntilWoken } from './raw-client.ts';

/** How the fake answers SSLRequest. */
export type SslAnswer =
  /** 'N': no TLS here; the login goes on in plaintext. */
  | { kind: 'refuse' }
  /** These bytes in one write (e.g. 'S' and plaintext after it), then nothing more. */
  | { kind: 'bytes'; bytes: Buffer }
  /** 'S', then, once the client's TLS ClientHello arrived, these plaintext bytes instead of a TLS answer. */
  | { kind: 'accept-then-plaintext'; bytes: Buffer };

export type Script = (connection: FakeConnection) => Promise<void>;

export interface FakeUpstreamOptions {
  /** The script of a connection, chosen from its StartupMessage parameters. */
  scriptFor: (startup: ReadonlyMap<string, string>) => Script;
  sslAnswer?: SslAnswer;
}

export interface FrontendMessage {
  /** The type byte as a character ('Q', 'p', 'X', ...). */
  type: string;
  payload: Buffer;
}

/** Tampering with an honest SCRAM exchange (loginScram). */
export interface ScramTampering {
  /** The server-first-message to send instead of the honest one (the exchange then stops). */
  serverFirst?: (clientNonce: string, honest: string) => string;
  /** The server-final-message to send instead of the honest one (the exchange then stops). */
  serverFinal?: (honest: string) => string;
  /** Messages to send instead of the server-final-message (say, AuthenticationOk: a server that never proves it knows the password). */
  instead?: Buffer[];
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** ParameterStatus values a Postgres 16 server reports at login. */
const SERVER_PARAMETERS: ReadonlyArray<[string, string]> = [
  ['server_version', '16.0 (fake)'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO, MDY'],
  ['integer_datetimes', 'on'],
  ['standard_conforming_strings', 'on'],
  ['TimeZone', 'UTC'],
];

export class PeerClosedError extends Error {
  constructor(what: string) {
    super(`the peer closed the connection while the fake waited for ${what}`);
    this.name = 'PeerClosedError';
  }
}

/** One accepted connection, from the fake's side. */
export class FakeConnection {
  /** Startup parameters (empty until the StartupMessage arrived). */
  startup: ReadonlyMap<string, string> = new Map();
  /** Every typed message received after the StartupMessage, in order. */
  readonly received: FrontendMessage[] = [];
  /** 'session' once a StartupMessage arrived; 'cancel' for a CancelRequest; 'startup' before either. */
  kind: 'startup' | 'session' | 'cancel' = 'startup';
  /** What ended the script early (the peer hung up while it waited, or a failed check). */
  scriptError: Error | null = null;
  /** The key this connection hands out in BackendKeyData. */
  readonly processId: number;
  readonly secretKey: number;
  /** CancelRequests that named this connection's key. */
  cancels = 0;
  closedAt: number | null = null;
  readonly closed: Promise<void>;
  private readonly chunks: Buffer[] = [];
  private readonly startupReader = new StartupReader({ maxPacketSize: 10_000, maxParameters: 64 });
  private readonly framer = new Framer(1 << 30, ALL_TYPES);
  private wake: (() => void) | null = null;
  private onCancel: (() => void) | null = null;
  private peer: net.Socket | null = null;

  constructor(
    readonly socket: net.Socket,
    readonly id: number,
  ) {
    this.processId = 40_000 + id;
    this.secretKey = (0x5eed0000 + id) | 0;
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', () => {}); // a reset from the ambassador: 'close' follows
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedAt = Date.now();
        this.peer?.destroy();
        this.wake?.();
        resolve();
      }),
    );
  }

  get database(): string | undefined {
    return this.startup.get('database');
  }

  get isClosed(): boolean {
    return this.closedAt !== null;
  }

  /** Writes bytes in one call (one segment on loopback); a no-op once the socket is gone. */
  send(...messages: Buffer[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(messages.length === 1 ? messages[0]! : Buffer.concat(messages));
  }

  /** Closes the connection (FIN) after what was written. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when a CancelRequest names this connection (see FakeUpstream). */
  cancelled(): Promise<void> {
    return new Promise((resolve) => (this.onCancel = resolve));
  }

  /** Called by FakeUpstream when a CancelRequest carries this connection's key. */
  noteCancel(): void {
    this.cancels++;
    this.onCancel?.();
  }

  /** The next raw chunk, whatever it is (after 'S': the client's TLS ClientHello). */
  nextChunk(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Buffer> {
    return this.until(timeoutMs, 'a chunk', () => this.chunks.shift());
  }

  /** The next startup-phase packet (SSLRequest, CancelRequest, StartupMessage). */
  nextStartupPacket(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<StartupPacket> {
    return this.until(timeoutMs, 'a startup packet', () => {
      while (this.chunks.length > 0) {
        const result = this.startupReader.push(this.chunks.shift()!);
        if (result !== null) {
          if (result.rest.length > 0) this.chunks.unshift(result.rest);
          return result.packet;
        }
      }
      return undefined;
    });
  }

  /** The next typed message from the client. */
  nextMessage(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<FrontendMessage> {
    return this.until(timeoutMs, 'a message', () => {
      const framed = this.framer.shift(this.chunks);
      if (framed === undefined) return undefined;
      const message: FrontendMessage = { type: String.fromCharCode(framed.type), payload: framed.payload };
      this.received.push(message);
      return message;
    });
  }

  /** The next message, which must be of `type`. */
  async expect(type: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<FrontendMessage> {
    const message = await this.nextMessage(timeoutMs);
    if (message.type !== type) throw new Error(`fake upstream expected '${type}', got '${message.type}'`);
    return message;
  }

  /** The SQL of the next simple Query; null when the client sent Terminate instead. */
  async nextQuery(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
    for (;;) {
      const message = await this.nextMessage(timeoutMs);
      if (message.type === 'X') return null;
      if (message.type === 'Q') return message.payload.toString('utf8', 0, message.payload.length - 1);
      throw new Error(`fake upstream expected a simple Query, got '${message.type}'`);
    }
  }

  /** A cleartext password login; a wrong password gets 28P01 and the connection is closed. */
  async loginCleartext(password: string): Promise<void> {
    this.send(encodeAuthenticationCleartext());
    const given = decodePasswordMessage((await this.expect('p')).payload);
    if (given !== password) return this.refuse('28P01', 'password authentication failed');
    this.send(encodeAuthenticationOk());
  }

  /**
   * An honest SCRAM-SHA-256 exchange up to AuthenticationOk (not sent when tampered with: a
   * tampered exchange stops after the tampered message, and the client is expected to give up).
   * Returns whether the exchange completed honestly.
   */
  async loginScram(password: string | ScramVerifier, tamper: ScramTampering = {}): Promise<boolean> {
    const verifier = typeof password === 'string' ? buildScramVerifier(password) : password;
    this.send(encodeAuthenticationSASL(['SCRAM-SHA-256']));
    const initial = decodeSASLInitialResponse((await this.expect('p')).payload);
    const server = new ScramServer({ verifier, mechanism: initial.mechanism });
    const honestFirst = server.handleClientFirst(initial.data).toString('latin1');
    if (tamper.serverFirst) {
      const clientNonce = /(?:^|,)r=([^,]*)/.exec(initial.data.toString('latin1'))?.[1] ?? '';
      this.send(encodeAuthenticationSASLContinue(Buffer.from(tamper.serverFirst(clientNonce, honestFirst), 'latin1')));
      return false;
    }
    this.send(encodeAuthenticationSASLContinue(Buffer.from(honestFirst, 'latin1')));
    const final = (await this.expect('p')).payload;
    let honestFinal: string;
    try {
      honestFinal = server.handleClientFinal(final).toString('latin1');
    } catch {
      await this.refuse('28P01', 'password authentication failed');
      return false;
    }
    if (tamper.serverFinal) {
      this.send(encodeAuthenticationSASLFinal(Buffer.from(tamper.serverFinal(honestFinal), 'latin1')));
      return false;
    }
    if (tamper.instead) {
      this.send(...tamper.instead);
      return false;
    }
    this.send(encodeAuthenticationSASLFinal(Buffer.from(honestFinal, 'latin1')), encodeAuthenticationOk());
    return true;
  }

  /** What a server sends after AuthenticationOk: ParameterStatus, BackendKeyData, ReadyForQuery (and `extra` in the same write). */
  ready(...extra: Buffer[]): void {
    this.send(...readyMessages(this.processId, this.secretKey), ...extra);
  }

  /**
   * Answers queries as a plain server would until `hostile` returns true for one (then returns
   * its SQL) or the client sends Terminate (then returns null): `select 1` gets one row, anything
   * else (RESET ALL, DISCARD ALL, ROLLBACK) a CommandComplete; every answer ends with 'I'.
   */
  async serveUntil(hostile: (sql: string) => boolean, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
    for (;;) {
      const sql = await this.nextQuery(timeoutMs);
      if (sql === null) return null;
      if (hostile(sql)) return sql;
      this.send(...plainAnswer(sql));
    }
  }

  /** ErrorResponse (FATAL) and close, as a server refusing a login. */
  async refuse(code: string, message: string): Promise<void> {
    this.send(encodeErrorResponse({ severity: 'FATAL', code, message }));
    this.end();
    await this.closed;
  }

  /** Hands the connection to a real server: the StartupMessage is sent there, then bytes flow both ways unchanged. */
  proxy(target: { host: string; port: number }): Promise<void> {
    const peer = net.connect({ host: target.host, port: target.port, noDelay: true });
    this.peer = peer;
    peer.on('error', () => this.socket.destroy());
    peer.on('close', () => this.socket.destroy());
    peer.on('data', (chunk: Buffer) => {
      if (!this.socket.write(chunk)) peer.pause();
    });
    this.socket.on('drain', () => peer.resume());
    peer.on('drain', () => this.socket.resume());
    this.socket.off('data', this.onData);
    this.socket.on('data', (chunk: Buffer) => {
      if (!peer.write(chunk)) this.socket.pause();
    });
    peer.write(Buffer.concat([encodeStartupMessage(this.startup), ...this.chunks.splice(0)]));
    if (this.isClosed) peer.destroy();
    return this.closed;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.wake?.();
  };

  private async until<T>(timeoutMs: number, what: string, check: () => T | undefined): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      if (this.isClosed) throw new PeerClosedError(what);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake upstream timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleepUntilWoken(left, (wake) => (this.wake = wake));
      this.wake = null;
    }
  }
}

/** ParameterStatus, BackendKeyData and ReadyForQuery, as a server ends its login. */
export function readyMessages(processId: number, secretKey: number): Buffer[] {
  const status = SERVER_PARAMETERS.map(([name, value]) => encodeParameterStatus(name, value));
  return [...status, encodeBackendKeyData(processId, secretKey), encodeReadyForQuery('I')];
}

/** The answer of a plain server to a simple Query (see serveUntil). */
export function plainAnswer(sql: string): Buffer[] {
  if (/^\s*select 1\s*;?\s*$/i.test(sql)) {
    return [encodeTextRowDescription(['?column?']), encodeDataRow(['1']), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')];
  }
  const tag = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? 'OK';
  return [encodeCommandComplete(tag), encodeReadyForQuery('I')];
}

export class FakeUpstream {
  readonly connections: FakeConnection[] = [];
  /** CancelRequests received: the key they carried and whether it named a connection. */
  readonly cancels: Array<{ processId: number; secretKey: Buffer; matched: boolean }> = [];
  sslAnswer: SslAnswer;
  private readonly scripts = new Set<Promise<void>>();
  private closing = false;

  private constructor(
    private readonly server: net.Server,
    private readonly options: FakeUpstreamOptions,
  ) {
    this.sslAnswer = options.sslAnswer ?? { kind: 'refuse' };
  }

  static async start(options: FakeUpstreamOptions): Promise<FakeUpstream> {
    const server = net.createServer({ noDelay: true });
    const fake = new FakeUpstream(server, options);
    server.on('connection', (socket) => fake.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return fake;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Connections that sent a StartupMessage for `database`, in the order they came. */
  sessions(database: string): FakeConnection[] {
    return this.connections.filter((c) => c.kind === 'session' && c.database === database);
  }

  /** Of those, the ones still open. */
  openSessions(database: string): FakeConnection[] {
    return this.sessions(database).filter((c) => !c.isClosed);
  }

  /** Stops listening and destroys every connection (proxied ones too); waits for the scripts to end. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const connection of this.connections) connection.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all(this.scripts);
  }

  private accept(socket: net.Socket): void {
    const connection = new FakeConnection(socket, this.connections.length + 1);
    this.connections.push(connection);
    if (this.closing) return connection.destroy();
    const run = this.run(connection).catch((err: unknown) => {
      connection.scriptError = err instanceof Error ? err : new Error(String(err));
      connection.destroy();
    });
    this.scripts.add(run);
    void run.then(() => this.scripts.delete(run));
  }

  private async run(connection: FakeConnection): Promise<void> {
    for (;;) {
      const packet = await connection.nextStartupPacket();
      switch (packet.kind) {
        case 'gssenc':
          connection.send(Buffer.from('N'));
          continue;
        case 'ssl':
          if (await this.answerSsl(connection)) continue;
          return;
        case 'cancel':
          return this.cancel(connection, packet.processId, packet.secretKey);
        case 'startup':
          connection.kind = 'session';
          connection.startup = packet.params;
          return this.options.scriptFor(packet.params)(connection);
      }
    }
  }

  /** True when the login goes on in plaintext. */
  private async answerSsl(connection: FakeConnection): Promise<boolean> {
    const answer = this.sslAnswer;
    switch (answer.kind) {
      case 'refuse':
        connection.send(Buffer.from('N'));
        return true;
      case 'bytes':
        connection.send(answer.bytes);
        await connection.closed;
        return false;
      case 'accept-then-plaintext':
        connection.send(Buffer.from('S'));
        await connection.nextChunk();
        connection.send(answer.bytes);
        await connection.closed;
        return false;
    }
  }

  private cancel(connection: FakeConnection, processId: number, secretKey: Buffer): void {
    connection.kind = 'cancel';
    const target = this.connections.find((c) => c.kind === 'session' && c.processId === processId && secretKey.length === 4 && secretKey.readInt32BE(0) === c.secretKey);
    this.cancels.push({ processId, secretKey, matched: target !== undefined });
    connection.destroy();
    target?.noteCancel();
  }
}
