// A raw-socket PostgreSQL client for hostile-input tests: it writes whatever bytes a test gives it
// and reads the replies back as protocol messages (parsed with the ambassador's own Framer), or
// as single bytes where the protocol answers with one (SSLRequest / GSSENCRequest: 'S' or 'N').
//
// Reading is pull-based: bytes stay queued until a test asks for the next byte or message, so a
// reply that arrives before the test asks for it is never lost. Every wait has a deadline and
// fails with what was received so far. loginScram / loginTrust perform a full legitimate startup
// and hand back the client after ReadyForQuery, for hostile cases after authentication.

import net from 'node:net';
import { AuthCode, BackendType, decodeAuthentication, decodeBackendKeyData, decodeErrorFields } from '../../src/protocol/backend.ts';
import { ALL_TYPES, Framer } from '../../src/protocol/framer.ts';
import { encodeQuery, encodeSASLInitialResponse, encodeSASLResponse } from '../../src/protocol/frontend.ts';
import { ScramClient } from '../../src/protocol/scram.ts';
import { encodeStartupMessage } from '../../src/protocol/startup.ts';

export interface ErrorInfo {
  severity: string;
  code: string;
  message: string;
}

export interface WireMessage {
  /** The type byte as a character ('R', 'E', 'Z', ...). */
  type: string;
  payload: Buffer;
  /** Decoded fields when the message is an ErrorResponse or NoticeResponse. */
  error?: ErrorInfo;
}

export type ErrorOrClose = { kind: 'error'; code: string; message: string } | { kind: 'closed' };

const DEFAULT_TIMEOUT_MS = 5_000;

export class RawClient {
  /** Every message read so far, in order (including ones a helper skipped over). */
  readonly history: WireMessage[] = [];
  /** When the socket closed (Date.now()), or null while open. */
  closedAt: number | null = null;
  private readonly queue: Buffer[] = [];
  private readonly framer = new Framer(0x7fffffff, ALL_TYPES);
  private wake: (() => void) | null = null;
  /** Set by the login helpers from BackendKeyData. */
  backendKey: { processId: number; secretKey: Buffer } | null = null;

  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    this.notify();
  };

  private constructor(readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('error', () => {}); // ECONNRESET/EPIPE from a server that hung up: 'close' follows
    socket.on('close', () => {
      this.closedAt = Date.now();
      this.notify();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  get closed(): boolean {
    return this.closedAt !== null;
  }

  /** Writes bytes in one call (one segment on loopback); a no-op once the socket is gone. */
  write(bytes: Buffer | Buffer[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(Array.isArray(bytes) ? Buffer.concat(bytes) : bytes);
  }

  /**
   * Stops queueing received bytes (for streaming a large result through a caller's own parser)
   * and returns the bytes received but not yet read; the socket is left paused.
   */
  detach(): Buffer[] {
    if (!this.framer.atBoundary) throw new Error('detach in the middle of a message');
    this.socket.pause();
    this.socket.off('data', this.onData);
    return this.queue.splice(0);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The next single byte (the answer to SSLRequest / GSSENCRequest). */
  async readByte(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
    if (!this.framer.atBoundary) throw new Error('readByte in the middle of a message');
    return this.until(timeoutMs, 'a single byte', () => {
      const chunk = this.queue[0];
      if (chunk === undefined) return undefined;
      if (chunk.length === 1) this.queue.shift();
      else this.queue[0] = chunk.subarray(1);
      return chunk[0]!;
    });
  }

  /** The next whole message; throws if the socket closes (or the deadline passes) first. */
  async nextMessage(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage> {
    return this.until(timeoutMs, 'a message', () => this.parseOne());
  }

  /** Messages up to and including the first of `type`; throws on an ErrorResponse before it. */
  async readUntil(type: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const deadline = Date.now() + timeoutMs;
    const seen: WireMessage[] = [];
    for (;;) {
      const message = await this.nextMessage(Math.max(0, deadline - Date.now()));
      seen.push(message);
      if (message.type === type) return seen;
      if (message.type === 'E') throw new Error(`expected '${type}', got ErrorResponse ${describeError(message.error!)}`);
    }
  }

  /** Sends a simple Query and returns every reply up to ReadyForQuery (errors included). */
  query(sql: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    this.write(encodeQuery(sql));
    return this.answer(timeoutMs);
  }

  /** Every reply up to and including the next ReadyForQuery, errors included. */
  async answer(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    const deadline = Date.now() + timeoutMs;
    const replies: WireMessage[] = [];
    for (;;) {
      const message = await this.nextMessage(Math.max(0, deadline - Date.now()));
      replies.push(message);
      if (message.type === 'Z') return replies;
    }
  }

  /** Waits for the peer to close, then returns every whole message received and not yet read. */
  async readToClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<WireMessage[]> {
    await this.waitForClose(timeoutMs);
    const rest: WireMessage[] = [];
    for (let message = this.parseOne(); message !== undefined; message = this.parseOne()) rest.push(message);
    return rest;
  }

  /**
   * Writes `bytes` one byte per write, each once the previous one has been handed to the kernel
   * and a turn of the event loop has passed: a slow client whose messages arrive split anywhere.
   */
  async writeBytewise(bytes: Buffer): Promise<void> {
    for (let i = 0; i < bytes.length; i++) {
      if (this.socket.destroyed || this.socket.writableEnded) return;
      await new Promise<void>((resolve) => this.socket.write(bytes.subarray(i, i + 1), () => setImmediate(resolve)));
    }
  }

  /**
   * Reads until an ErrorResponse (returned) or the close of the socket, skipping other messages
   * (they stay in `history`). Fails when neither happens before the deadline.
   */
  async expectErrorOrClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ErrorOrClose> {
    return this.until(timeoutMs, 'an ErrorResponse or a close', () => {
      for (let message = this.parseOne(); message !== undefined; message = this.parseOne()) {
        if (message.type === 'E') return { kind: 'error' as const, code: message.error!.code, message: message.error!.message };
      }
      return this.closed ? { kind: 'closed' as const } : undefined;
    });
  }

  /** Resolves with the close time once the peer closed; received bytes are left unread. */
  async waitForClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
    return this.until(timeoutMs, 'the connection to close', () => this.closedAt ?? undefined, true);
  }

  /** One message from the queued bytes, or undefined when no whole message is queued. */
  private parseOne(): WireMessage | undefined {
    const framed = this.framer.shift(this.queue);
    if (framed === undefined) return undefined;
    const message = toWireMessage(framed.type, framed.payload);
    this.history.push(message);
    return message;
  }

  private async until<T>(timeoutMs: number, what: string, check: () => T | undefined, closeIsFine = false): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      if (this.closed && !closeIsFine) throw new Error(`connection closed while waiting for ${what}; received: ${this.describeHistory()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${this.describeHistory()}`);
      await sleepUntilWoken(left, (wake) => (this.wake = wake));
      this.wake = null;
    }
  }

  private notify(): void {
    this.wake?.();
  }

  private describeHistory(): string {
    const types = this.history.map((m) => (m.error ? `E(${m.error.code})` : m.type)).join(' ');
    const queued = this.queue.reduce((n, c) => n + c.length, 0);
    return `[${types}]${queued > 0 ? ` + ${queued} unparsed bytes` : ''}${this.closed ? ', closed' : ''}`;
  }
}

function toWireMessage(typeByte: number, payload: Buffer): WireMessage {
  const type = String.fromCharCode(typeByte);
  if (typeByte !== BackendType.ErrorResponse && typeByte !== BackendType.NoticeResponse) return { type, payload };
  const fields = decodeErrorFields(payload);
  return { type, payload, error: { severity: fields.get('V') ?? fields.get('S') ?? '', code: fields.get('C') ?? '', message: fields.get('M') ?? '' } };
}

/**
 * Messages as short strings for comparing whole answers: the type letter, 'Z(I)' with the
 * transaction status, 'E(ERROR 26000)' with the severity and SQLSTATE.
 */
export function summarize(messages: readonly WireMessage[]): string[] {
  return messages.map((m) => {
    if (m.error) return `${m.type}(${m.error.severity} ${m.error.code})`;
    if (m.type === 'Z') return `Z(${m.payload.toString('latin1')})`;
    return m.type;
  });
}

export function describeError(error: ErrorInfo): string {
  return `${error.severity} ${error.code}: ${error.message}`;
}

/** A StartupMessage with any protocol version (encodeStartupMessage only writes 3.0). */
export function startupPacket(params: Iterable<[string, string]>, version: { major: number; minor: number } = { major: 3, minor: 0 }): Buffer {
  const packet = encodeStartupMessage(params);
  packet.writeInt32BE((version.major << 16) | version.minor, 4);
  return packet;
}

/** Reads the next Authentication request, failing on anything else (NegotiateProtocolVersion is skipped). */
export async function expectAuthRequest(client: RawClient, code: number): Promise<ReturnType<typeof decodeAuthentication>> {
  for (;;) {
    const message = await client.nextMessage();
    if (message.type === 'v') continue;
    if (message.type !== 'R') {
      throw new Error(`expected Authentication (code ${code}), got '${message.type}'${message.error ? ` ${describeError(message.error)}` : ''}`);
    }
    const request = decodeAuthentication(message.payload);
    if (request.code !== code) throw new Error(`expected Authentication code ${code}, got ${request.code}`);
    return request;
  }
}

/** Connects and sends a StartupMessage for `user`, then waits for AuthenticationSASL. */
export async function beginScram(port: number, user: string, database = 'app'): Promise<RawClient> {
  const client = await RawClient.connect(port);
  client.write(encodeStartupMessage([['user', user], ['database', database]]));
  await expectAuthRequest(client, AuthCode.SASL);
  return client;
}

/**
 * Runs a legitimate SCRAM-SHA-256 exchange on a client whose StartupMessage was already sent,
 * then reads up to ReadyForQuery. Returns the client (backendKey set).
 */
export async function completeScram(client: RawClient, password: string): Promise<RawClient> {
  await expectAuthRequest(client, AuthCode.SASL);
  const scram = new ScramClient({ password });
  client.write(encodeSASLInitialResponse(scram.mechanism, scram.clientFirst()));
  const serverFirst = (await expectAuthRequest(client, AuthCode.SASLContinue)) as { data: Buffer };
  client.write(encodeSASLResponse(scram.handleServerFirst(serverFirst.data)));
  const serverFinal = (await expectAuthRequest(client, AuthCode.SASLFinal)) as { data: Buffer };
  scram.verifyServerFinal(serverFinal.data);
  return finishLogin(client);
}

async function finishLogin(client: RawClient): Promise<RawClient> {
  await expectAuthRequest(client, AuthCode.Ok);
  for (const message of await client.readUntil('Z', 15_000)) {
    if (message.type === 'K') client.backendKey = decodeBackendKeyData(message.payload);
  }
  return client;
}

export interface LoginOptions {
  database?: string;
  /** Extra startup parameters (application_name, options, ...). */
  params?: Array<[string, string]>;
}

function loginStartup(user: string, options: LoginOptions): Buffer {
  return encodeStartupMessage([['user', user], ['database', options.database ?? 'app'], ...(options.params ?? [])]);
}

/** A full SCRAM login; the returned client is idle after ReadyForQuery. */
export async function loginScram(port: number, user: string, password: string, options: LoginOptions = {}): Promise<RawClient> {
  const client = await RawClient.connect(port);
  client.write(loginStartup(user, options));
  try {
    return await completeScram(client, password);
  } catch (err) {
    client.destroy();
    throw err;
  }
}

/** A full login against `clientAuth.method: trust`; the returned client is idle after ReadyForQuery. */
export async function loginTrust(port: number, user: string, options: LoginOptions = {}): Promise<RawClient> {
  const client = await RawClient.connect(port);
  client.write(loginStartup(user, options));
  try {
    return await finishLogin(client);
  } catch (err) {
    client.destroy();
    throw err;
  }
}

/** Sleeps up to `ms`, or until the function handed to `setWake` is called (new bytes arrived). */
export function sleepUntilWoken(ms: number, setWake: (wake: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    setWake(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
