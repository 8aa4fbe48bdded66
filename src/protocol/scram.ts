// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) for both sides of the ambassador, as
// PostgreSQL speaks it: ScramServer authenticates clients against a stored verifier, ScramClient
// authenticates us to upstream. Pure: bytes in, bytes out; no sockets, timers or logging. The one
// asynchronous part is deriveScramKeys, PBKDF2 on libuv's thread pool for live upstream logins
// (ScramClient.answerServerFirst), whose results SaltedKeyCache shares between logins.
//
// Invariants:
// - Every malformed or hostile input fails with a ScramError carrying a named reason, before any
//   expensive work (PBKDF2 runs only after the server-first-message has been fully validated).
// - Messages are handled as byte strings (latin1), so the AuthMessage is built from exactly the
//   bytes that crossed the wire.
// - PostgreSQL semantics: the SCRAM username is ignored (libpq sends `n=`), authzid and mandatory
//   extensions are rejected, the only channel binding is tls-server-end-point, gs2 flag `y` is a
//   downgrade when the server offers PLUS, and the password goes through SASLprep (raw on failure).
// - Any error leaves the exchange in state 'failed'; calls out of order fail with 'out-of-order'.

import { Buffer } from 'node:buffer';
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { saslprepOrRaw } from './saslprep.ts';

export type ScramMechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';
export const SCRAM_SHA_256: ScramMechanism = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS: ScramMechanism = 'SCRAM-SHA-256-PLUS';
export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_DEFAULT_SALT_BYTES = 16;
/** Raw nonce bytes, as PostgreSQL uses (base64-encoded to 24 characters). */
export const SCRAM_NONCE_BYTES = 18;
/** Largest iteration count ScramClient accepts from a server unless told otherwise. */
export const SCRAM_MAX_ITERATIONS = 1_000_000;
/** Largest SCRAM message either side accepts. Real messages are under 200 bytes. */
export const SCRAM_MAX_MESSAGE_BYTES = 4096;

const KEY_BYTES = 32;
const CB_TYPE = 'tls-server-end-point';

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** tls-server-end-point binding data: the hash of the server certificate. */
export interface ChannelBinding {
  type: 'tls-server-end-point';
  data: Buffer;
}

export type ScramErrorReason =
  // message structure
  | 'malformed-client-first' | 'malformed-client-final' | 'malformed-server-first' | 'malformed-server-final'
  | 'message-too-long' | 'bad-gs2-header' | 'bad-attribute' | 'unsupported-extension'
  // mechanism and channel binding negotiation
  | 'bad-mechanism' | 'channel-binding-mismatch' | 'channel-binding-downgrade' | 'unsupported-channel-binding'
  // authentication proper
  | 'nonce-mismatch' | 'bad-iterations' | 'bad-proof' | 'bad-server-signature' | 'server-error'
  // misuse of the exchange, unusable certificate
  | 'out-of-order' | 'bad-certificate';

export class ScramError extends Error {
  readonly reason: ScramErrorReason;

  constructor(reason: ScramErrorReason, message: string) {
    super(message);
    this.name = 'ScramError';
    this.reason = reason;
  }
}

export type ScramServerState = 'expect-client-first' | 'expect-client-final' | 'done' | 'failed';
export type ScramClientState = 'initial' | 'expect-server-first' | 'deriving-keys' | 'expect-server-final' | 'done' | 'failed';

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const EXTENSION = /^[A-Za-z]=/;

/** Strict, canonical base64; null when `text` is anything else. */
function decodeBase64(text: string): Buffer | null {
  if (!BASE64.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

/** A message as a byte string, after the checks every SCRAM message must pass. */
function byteString(data: Buffer, malformed: ScramErrorReason, what: string): string {
  if (data.length > SCRAM_MAX_MESSAGE_BYTES) {
    throw new ScramError('message-too-long', `${what} is ${data.length} bytes; at most ${SCRAM_MAX_MESSAGE_BYTES} allowed`);
  }
  if (data.length === 0) throw new ScramError(malformed, `${what} is empty`);
  if (data.includes(0)) throw new ScramError(malformed, `${what} contains a NUL byte`);
  return data.toString('latin1');
}

/** The value of `field` if it is the attribute `name=`; throws otherwise. */
function attribute(field: string | undefined, name: string, reason: ScramErrorReason, what: string): string {
  if (field === undefined || field[0] !== name || field[1] !== '=') {
    const found = field === undefined ? 'end of message' : `"${describe(field.slice(0, 2))}"`;
    throw new ScramError(reason, `${what}: expected attribute "${name}=", found ${found}`);
  }
  return field.slice(2);
}

/** Optional extensions: `ALPHA "=" value`, ignored as PostgreSQL does; `reserved` may not appear. */
function checkExtensions(fields: readonly string[], what: string, reserved = ''): void {
  for (const field of fields) {
    if (!EXTENSION.test(field) || field[0] === reserved) {
      throw new ScramError('bad-attribute', `${what}: expected an attribute "x=...", found "${describe(field.slice(0, 2))}"`);
    }
  }
}

/** Printable ASCII excerpt of attacker-controlled text, for error messages. */
function describe(text: string): string {
  return text.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'latin1').digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(left: Buffer, right: Buffer): Buffer {
  const out = Buffer.alloc(left.length);
  for (let i = 0; i < left.length; i++) out[i] = left[i]! ^ right[i]!;
  return out;
}

/** What a password, salt and iteration count give: ClientKey, StoredKey = H(ClientKey), ServerKey. */
export interface ScramKeys {
  readonly clientKey: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** Derives the keys of a password, salt and count; an upstream login asks through a SaltedKeyCache. */
export type ScramKeyDerivation = (password: string, salt: Buffer, iterations: number) => Promise<ScramKeys>;

function keysOf(salted: Buffer): ScramKeys {
  const clientKey = hmac(salted, 'Client Key');
  const serverKey = hmac(salted, 'Server Key');
  salted.fill(0);
  return { clientKey, storedKey: sha256(clientKey), serverKey };
}

function deriveKeys(password: string, salt: Buffer, iterations: number): ScramKeys {
  return keysOf(pbkdf2Sync(Buffer.from(saslprepOrRaw(password), 'utf8'), salt, iterations, KEY_BYTES, 'sha256'));
}

/** deriveKeys on libuv's thread pool: PBKDF2 takes 1.6 ms at 4,096 iterations, 75 ms at 100,000. */
export const deriveScramKeys: ScramKeyDerivation = (password, salt, iterations) =>
  new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(saslprepOrRaw(password), 'utf8'), salt, iterations, KEY_BYTES, 'sha256', (err, salted) => (err ? reject(err) : resolve(keysOf(salted))));
  });

/**
 * Derived keys by (password, salt, iteration count). A server keeps one salt and count per role,
 * so only the first login to it with a password pays for PBKDF2; logins that start while that
 * derivation runs share it. Entries are found by a SHA-256 of the three (the password itself is
 * not kept here), at most `maxEntries` of them, oldest out; a failed derivation is not kept. The
 * keys are as secret as the password they come from and live only in this process's memory.
 */
export class SaltedKeyCache {
  readonly #entries = new Map<string, Promise<ScramKeys>>();

  constructor(
    private readonly derive: ScramKeyDerivation = deriveScramKeys,
    private readonly maxEntries = 16,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  readonly keysFor: ScramKeyDerivation = (password, salt, iterations) => {
    // Length-prefixed, so that no two (count, salt, password) triples hash the same input.
    const id = createHash('sha256').update(`${iterations}:${salt.length}:`).update(salt).update(password, 'utf8').digest('base64');
    const known = this.#entries.get(id);
    if (known !== undefined) return known;
    const keys = this.derive(password, salt, iterations);
    this.#entries.set(id, keys);
    if (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    keys.catch(() => {
      if (this.#entries.get(id) === keys) this.#entries.delete(id);
    });
    return keys;
  };
}

/** The gs2 header plus binding data, base64-encoded: the value of `c=` in client-final. */
function channelBindingAttribute(gs2Header: string, binding: ChannelBinding | null): string {
  const header = Buffer.from(gs2Header, 'latin1');
  return (binding ? Buffer.concat([header, binding.data]) : header).toString('base64');
}

/** Runs one step of an exchange: checks the state, moves on success, fails for good on error. */
function runStep<S extends string, T>(holder: { state: S }, expected: S, next: S, failed: S, step: () => T): T {
  if (holder.state !== expected) {
    const was = holder.state;
    holder.state = failed;
    throw new ScramError('out-of-order', `SCRAM message out of order: exchange is in state "${was}", not "${expected}"`);
  }
  try {
    const result = step();
    holder.state = next;
    return result;
  } catch (err) {
    holder.state = failed;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Stored verifiers

const VERIFIER = /^SCRAM-SHA-256\$([1-9][0-9]{0,9}):([^$:]+)\$([^$:]+):([^$:]+)$/;

/** Parses PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`; null if invalid. */
export function parseScramVerifier(text: string): ScramVerifier | null {
  const match = VERIFIER.exec(text);
  if (!match) return null;
  const iterations = Number(match[1]);
  const salt = decodeBase64(match[2]!);
  const storedKey = decodeBase64(match[3]!);
  const serverKey = decodeBase64(match[4]!);
  if (iterations > 0x7fffffff || !salt || salt.length === 0) return null;
  if (storedKey?.length !== KEY_BYTES || serverKey?.length !== KEY_BYTES) return null;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramVerifier(verifier: ScramVerifier): string {
  const { iterations, salt, storedKey, serverKey } = verifier;
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Derives a verifier as PostgreSQL does (SASLprep, 16-byte random salt, 4096 iterations). */
export function buildScramVerifier(password: string, opts: { salt?: Buffer; iterations?: number } = {}): ScramVerifier {
  const salt = opts.salt ?? randomBytes(SCRAM_DEFAULT_SALT_BYTES);
  const iterations = opts.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > 0x7fffffff) {
    throw new RangeError(`SCRAM iterations must be an integer from 1 to 2147483647, got ${iterations}`);
  }
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const { clientKey, storedKey, serverKey } = deriveKeys(password, salt, iterations);
  clientKey.fill(0);
  return { iterations, salt: Buffer.from(salt), storedKey, serverKey };
}

/**
 * A deterministic stand-in verifier for a user that does not exist (or has no SCRAM secret), so
 * the exchange looks the same as for a real user and fails only at the proof. `secret` is a
 * per-deployment server secret; the same user always gets the same salt.
 */
export function mockScramVerifier(username: string, secret: Buffer, iterations = SCRAM_DEFAULT_ITERATIONS): ScramVerifier {
  const derive = (label: string): Buffer =>
    createHmac('sha256', secret).update(`pg-ambassador scram mock ${label}\0`).update(username, 'utf8').digest();
  return {
    iterations,
    salt: derive('salt').subarray(0, SCRAM_DEFAULT_SALT_BYTES),
    storedKey: derive('stored-key'),
    serverKey: derive('server-key'),
  };
}

/** The mechanisms to offer in AuthenticationSASL, PLUS first as PostgreSQL lists them. */
export function scramMechanisms(channelBinding: ChannelBinding | null | undefined): ScramMechanism[] {
  return channelBinding ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
}

// ---------------------------------------------------------------------------------------------
// Server side: authenticates a client against a stored verifier

export interface ScramServerOptions {
  verifier: ScramVerifier;
  /** Binding data when the client connection is TLS (the server then supports PLUS), else null. */
  channelBinding?: ChannelBinding | null;
  /** The mechanism the client chose in SASLInitialResponse; default PLUS when binding is available. */
  mechanism?: string;
  /** Randomness for the server nonce (tests inject it); default crypto.randomBytes. */
  nonceBytes?: (count: number) => Buffer;
  /** A fixed server nonce suffix (printable, no ','), for test vectors only. */
  nonce?: string;
}

export class ScramServer {
  readonly mechanism: ScramMechanism;
  readonly #verifier: ScramVerifier;
  readonly #binding: ChannelBinding | null;
  readonly #serverNonce: () => string;
  readonly #progress: { state: ScramServerState } = { state: 'expect-client-first' };
  #gs2Header = '';
  #clientFirstBare = '';
  #serverFirst = '';
  #nonce = '';

  constructor(opts: ScramServerOptions) {
    const { storedKey, serverKey } = opts.verifier;
    if (storedKey.length !== KEY_BYTES || serverKey.length !== KEY_BYTES) throw new TypeError('SCRAM verifier keys must be 32 bytes');
    this.#verifier = opts.verifier;
    this.#binding = opts.channelBinding ?? null;
    const mechanism = opts.mechanism ?? (this.#binding ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256);
    if (mechanism !== SCRAM_SHA_256 && !(mechanism === SCRAM_SHA_256_PLUS && this.#binding)) {
      throw new ScramError('bad-mechanism', `client selected an unsupported SASL mechanism "${describe(mechanism)}"`);
    }
    this.mechanism = mechanism;
    const fixed = opts.nonce;
    if (fixed !== undefined && !PRINTABLE.test(fixed)) throw new TypeError('ScramServer nonce must be printable ASCII without ","');
    const random = opts.nonceBytes ?? randomBytes;
    this.#serverNonce = () => fixed ?? random(SCRAM_NONCE_BYTES).toString('base64');
  }

  get state(): ScramServerState {
    return this.#progress.state;
  }

  /** Takes the client-first-message (SASLInitialResponse data), returns the server-first-message. */
  handleClientFirst(data: Buffer): Buffer {
    return runStep(this.#progress, 'expect-client-first', 'expect-client-final', 'failed', () => {
      const message = byteString(data, 'malformed-client-first', 'client-first-message');
      const first = message.indexOf(',');
      const second = first < 0 ? -1 : message.indexOf(',', first + 1);
      if (second < 0) throw new ScramError('bad-gs2-header', 'client-first-message: gs2 header is not "<flag>,<authzid>,"');
      this.#checkGs2Flag(message.slice(0, first));
      if (second !== first + 1) {
        throw new ScramError('bad-gs2-header', 'client-first-message: an authorization identity (a=) is not supported');
      }
      this.#gs2Header = message.slice(0, second + 1);
      this.#clientFirstBare = message.slice(second + 1);
      const clientNonce = this.#parseClientFirstBare(this.#clientFirstBare);
      this.#nonce = clientNonce + this.#serverNonce();
      const { salt, iterations } = this.#verifier;
      this.#serverFirst = `r=${this.#nonce},s=${salt.toString('base64')},i=${iterations}`;
      return Buffer.from(this.#serverFirst, 'latin1');
    });
  }

  /** Takes the client-final-message (SASLResponse data), returns the server-final-message `v=...`. */
  handleClientFinal(data: Buffer): Buffer {
    return runStep(this.#progress, 'expect-client-final', 'done', 'failed', () => {
      const what = 'client-final-message';
      const message = byteString(data, 'malformed-client-final', what);
      const proofAt = message.lastIndexOf(',p=');
      if (proofAt < 0) throw new ScramError('malformed-client-final', `${what}: missing the proof attribute "p="`);
      const withoutProof = message.slice(0, proofAt);
      const fields = withoutProof.split(',');
      const binding = attribute(fields[0], 'c', 'malformed-client-final', what);
      const nonce = attribute(fields[1], 'r', 'malformed-client-final', what);
      checkExtensions(fields.slice(2), what, 'p');
      const proof = decodeBase64(message.slice(proofAt + 3));
      if (!proof || proof.length !== KEY_BYTES) {
        throw new ScramError('bad-attribute', `${what}: proof is not ${KEY_BYTES} bytes of base64`);
      }
      if (binding !== channelBindingAttribute(this.#gs2Header, this.#gs2Header[0] === 'p' ? this.#binding : null)) {
        throw new ScramError('channel-binding-mismatch', `${what}: channel binding data does not match this connection`);
      }
      if (nonce !== this.#nonce) throw new ScramError('nonce-mismatch', `${what}: nonce does not match the one agreed`);
      const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
      const { storedKey, serverKey } = this.#verifier;
      const clientKey = xor(proof, hmac(storedKey, authMessage));
      if (!timingSafeEqual(sha256(clientKey), storedKey)) {
        throw new ScramError('bad-proof', 'password authentication failed: SCRAM client proof does not match');
      }
      return Buffer.from(`v=${hmac(serverKey, authMessage).toString('base64')}`, 'latin1');
    });
  }

  #checkGs2Flag(flag: string): void {
    const plus = this.mechanism === SCRAM_SHA_256_PLUS;
    if (flag === 'n' || flag === 'y') {
      if (plus) {
        throw new ScramError(
          'channel-binding-mismatch',
          'client selected SCRAM-SHA-256-PLUS but its message does not include channel binding data',
        );
      }
      if (flag === 'y' && this.#binding) {
        throw new ScramError(
          'channel-binding-downgrade',
          'client supports channel binding and thinks the server does not, but this server does (possible downgrade attack)',
        );
      }
      return;
    }
    if (!flag.startsWith('p=')) throw new ScramError('bad-gs2-header', `client-first-message: unexpected channel binding flag "${describe(flag)}"`);
    if (!plus) {
      throw new ScramError('channel-binding-mismatch', 'client selected SCRAM-SHA-256 without channel binding but its message includes binding data');
    }
    if (flag !== `p=${CB_TYPE}`) {
      throw new ScramError('unsupported-channel-binding', `unsupported channel binding type "${describe(flag.slice(2))}"; only ${CB_TYPE} is supported`);
    }
  }

  /** Validates `[m=...,]n=<user>,r=<nonce>[,ext...]` and returns the client nonce. */
  #parseClientFirstBare(bare: string): string {
    const what = 'client-first-message';
    const fields = bare.split(',');
    if (fields[0]?.startsWith('m=')) throw new ScramError('unsupported-extension', `${what}: client requires an unsupported SCRAM extension`);
    attribute(fields[0], 'n', 'malformed-client-first', what); // PostgreSQL ignores it: the startup user counts
    const nonce = attribute(fields[1], 'r', 'malformed-client-first', what);
    if (!PRINTABLE.test(nonce)) throw new ScramError('bad-attribute', `${what}: nonce is empty or not printable ASCII`);
    checkExtensions(fields.slice(2), what);
    return nonce;
  }
}

// ---------------------------------------------------------------------------------------------
// Client side: authenticates the ambassador to upstream PostgreSQL

export interface ScramClientOptions {
  password: string;
  /** Binding data for the upstream TLS connection: selects SCRAM-SHA-256-PLUS (gs2 flag `p`). */
  channelBinding?: ChannelBinding | null;
  /**
   * TLS is in use so we could bind, but the server did not offer PLUS: sends gs2 flag `y` so a
   * server that does support binding detects a stripped mechanism list (libpq's behaviour).
   */
  channelBindingSupported?: boolean;
  /** Client nonce (printable, no ','); default 18 random bytes, base64. For test vectors. */
  nonce?: string;
  /** SCRAM username; PostgreSQL ignores it and libpq sends it empty. */
  username?: string;
  /** Largest iteration count accepted from the server (PBKDF2 cost); default 1,000,000. */
  maxIterations?: number;
}

interface ServerFirst {
  message: string;
  nonce: string;
  salt: Buffer;
  iterations: number;
}

export class ScramClient {
  readonly mechanism: ScramMechanism;
  readonly #password: string;
  readonly #binding: ChannelBinding | null;
  readonly #gs2Header: string;
  readonly #clientNonce: string;
  readonly #clientFirstBare: string;
  readonly #maxIterations: number;
  readonly #progress: { state: ScramClientState } = { state: 'initial' };
  #serverSignature: Buffer | null = null;

  constructor(opts: ScramClientOptions) {
    this.#password = opts.password;
    this.#binding = opts.channelBinding ?? null;
    this.mechanism = this.#binding ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256;
    this.#gs2Header = this.#binding ? `p=${CB_TYPE},,` : opts.channelBindingSupported ? 'y,,' : 'n,,';
    this.#clientNonce = opts.nonce ?? randomBytes(SCRAM_NONCE_BYTES).toString('base64');
    if (!PRINTABLE.test(this.#clientNonce)) throw new TypeError('ScramClient nonce must be printable ASCII without ","');
    const username = (opts.username ?? '').replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.#clientFirstBare = Buffer.from(`n=${username},r=${this.#clientNonce}`, 'utf8').toString('latin1');
    this.#maxIterations = opts.maxIterations ?? SCRAM_MAX_ITERATIONS;
  }

  get state(): ScramClientState {
    return this.#progress.state;
  }

  /** The client-first-message (gs2 header included) for SASLInitialResponse. */
  clientFirst(): Buffer {
    return runStep(this.#progress, 'initial', 'expect-server-first', 'failed', () =>
      Buffer.from(this.#gs2Header + this.#clientFirstBare, 'latin1'),
    );
  }

  /** Takes AuthenticationSASLContinue data, returns the client-final-message for SASLResponse (PBKDF2 inline). */
  handleServerFirst(data: Buffer): Buffer {
    return runStep(this.#progress, 'expect-server-first', 'expect-server-final', 'failed', () => {
      const exchange = this.#readServerFirst(data);
      const keys = deriveKeys(this.#password, exchange.salt, exchange.iterations);
      const clientFinal = this.#clientFinal(exchange, keys);
      keys.clientKey.fill(0);
      return clientFinal;
    });
  }

  /**
   * handleServerFirst for a live login: the keys come from `derive` (a SaltedKeyCache's keysFor),
   * so PBKDF2 never runs on the event loop. The server-first-message is checked at once; until the
   * keys are there the exchange is in 'deriving-keys', where any other step is out of order.
   */
  async answerServerFirst(data: Buffer, derive: ScramKeyDerivation): Promise<Buffer> {
    const exchange = runStep(this.#progress, 'expect-server-first', 'deriving-keys', 'failed', () => this.#readServerFirst(data));
    try {
      const keys = await derive(this.#password, exchange.salt, exchange.iterations);
      // A step taken meanwhile failed the exchange for good.
      if (this.#progress.state !== 'deriving-keys') throw new ScramError('out-of-order', 'SCRAM exchange failed while its keys were being derived');
      const clientFinal = this.#clientFinal(exchange, keys);
      this.#progress.state = 'expect-server-final';
      return clientFinal;
    } catch (err) {
      this.#progress.state = 'failed';
      throw err;
    }
  }

  #readServerFirst(data: Buffer): ServerFirst {
    const message = byteString(data, 'malformed-server-first', 'server-first-message');
    return { message, ...this.#parseServerFirst(message) };
  }

  /** The client-final-message (and the server signature to expect) from the keys; `keys` is left as it is. */
  #clientFinal(exchange: ServerFirst, keys: ScramKeys): Buffer {
    const withoutProof = `c=${channelBindingAttribute(this.#gs2Header, this.#binding)},r=${exchange.nonce}`;
    const authMessage = `${this.#clientFirstBare},${exchange.message},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    this.#serverSignature = hmac(keys.serverKey, authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
  }

  /** Checks AuthenticationSASLFinal data; throws ScramError on `e=...` or a wrong signature. */
  verifyServerFinal(data: Buffer): void {
    runStep(this.#progress, 'expect-server-final', 'done', 'failed', () => {
      const what = 'server-final-message';
      const message = byteString(data, 'malformed-server-final', what);
      if (message.startsWith('e=')) {
        const reported = message.slice(2).split(',')[0]!;
        throw new ScramError('server-error', `server reported SCRAM error "${describe(reported)}"`);
      }
      const fields = message.split(',');
      const signature = decodeBase64(attribute(fields[0], 'v', 'malformed-server-final', what));
      if (fields.length !== 1 || !signature || signature.length !== KEY_BYTES) {
        throw new ScramError('malformed-server-final', `${what}: expected exactly "v=<${KEY_BYTES} bytes of base64>"`);
      }
      if (!timingSafeEqual(signature, this.#serverSignature!)) {
        throw new ScramError('bad-server-signature', 'SCRAM server signature is wrong: the server does not know the password');
      }
    });
  }

  #parseServerFirst(message: string): { nonce: string; salt: Buffer; iterations: number } {
    const what = 'server-first-message';
    const fields = message.split(',');
    if (fields[0]?.startsWith('m=')) throw new ScramError('unsupported-extension', `${what}: server requires an unsupported SCRAM extension`);
    const nonce = attribute(fields[0], 'r', 'malformed-server-first', what);
    if (!nonce.startsWith(this.#clientNonce) || nonce.length === this.#clientNonce.length) {
      throw new ScramError('nonce-mismatch', `${what}: nonce does not extend the client nonce`);
    }
    if (!PRINTABLE.test(nonce)) throw new ScramError('bad-attribute', `${what}: nonce is not printable ASCII`);
    const salt = decodeBase64(attribute(fields[1], 's', 'malformed-server-first', what));
    if (!salt || salt.length === 0) throw new ScramError('bad-attribute', `${what}: salt is not non-empty base64`);
    const iterationText = attribute(fields[2], 'i', 'malformed-server-first', what);
    const iterations = /^[1-9][0-9]{0,9}$/.test(iterationText) ? Number(iterationText) : NaN;
    if (!(iterations <= this.#maxIterations)) {
      throw new ScramError('bad-iterations', `${what}: iteration count "${describe(iterationText)}" is not an integer from 1 to ${this.#maxIterations}`);
    }
    if (fields.length !== 3) throw new ScramError('malformed-server-first', `${what}: unexpected data after the iteration count`);
    return { nonce, salt, iterations };
  }
}

// ---------------------------------------------------------------------------------------------
// tls-server-end-point (RFC 5929 section 4.1)

const RSASSA_PSS = '1.2.840.113549.1.1.10';
const UPGRADED = 'sha256'; // RFC 5929: MD5 and SHA-1 become SHA-256

/** Signature or digest algorithm OID -> the hash tls-server-end-point uses for it. */
const END_POINT_HASHES: Readonly<Record<string, string>> = {
  // MD5 and SHA-1: md5, sha1, md5WithRSA, sha1WithRSA, sha1WithRSA (OIW), ecdsa-with-SHA1, dsa-with-sha1
  '1.2.840.113549.2.5': UPGRADED, '1.3.14.3.2.26': UPGRADED, '1.2.840.113549.1.1.4': UPGRADED,
  '1.2.840.113549.1.1.5': UPGRADED, '1.3.14.3.2.29': UPGRADED, '1.2.840.10045.4.1': UPGRADED,
  '1.2.840.10040.4.3': UPGRADED,
  // digests (RSA-PSS parameters): sha256, sha384, sha512, sha224, sha3-224/256/384/512
  '2.16.840.1.101.3.4.2.1': 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512',
  '2.16.840.1.101.3.4.2.4': 'sha224', '2.16.840.1.101.3.4.2.7': 'sha3-224', '2.16.840.1.101.3.4.2.8': 'sha3-256',
  '2.16.840.1.101.3.4.2.9': 'sha3-384', '2.16.840.1.101.3.4.2.10': 'sha3-512',
  // sha{256,384,512,224}WithRSAEncryption
  '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.14': 'sha224',
  // ecdsa-with-SHA{224,256,384,512}
  '1.2.840.10045.4.3.1': 'sha224', '1.2.840.10045.4.3.2': 'sha256', '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  // dsa-with-sha224, dsa-with-sha256, ecdsa-with-sha3-*, id-rsassa-pkcs1-v1_5-with-sha3-*
  '2.16.840.1.101.3.4.3.1': 'sha224', '2.16.840.1.101.3.4.3.2': 'sha256',
  '2.16.840.1.101.3.4.3.9': 'sha3-224', '2.16.840.1.101.3.4.3.10': 'sha3-256', '2.16.840.1.101.3.4.3.11': 'sha3-384',
  '2.16.840.1.101.3.4.3.12': 'sha3-512', '2.16.840.1.101.3.4.3.13': 'sha3-224', '2.16.840.1.101.3.4.3.14': 'sha3-256',
  '2.16.840.1.101.3.4.3.15': 'sha3-384', '2.16.840.1.101.3.4.3.16': 'sha3-512',
};

/**
 * The tls-server-end-point binding data for a certificate (DER or PEM): its DER hashed with the
 * hash of its signature algorithm (for RSA-PSS the hash in its parameters), SHA-256 instead of MD5
 * or SHA-1. Signatures without a hash (Ed25519, Ed448) fail with 'bad-certificate', as in PostgreSQL.
 */
export function certificateChannelBindingHash(derCert: Buffer): Buffer {
  let der: Buffer;
  try {
    der = new X509Certificate(derCert).raw;
  } catch (err) {
    throw new ScramError('bad-certificate', `not an X.509 certificate: ${(err as Error).message}`);
  }
  const { oid, hash } = signatureHash(der);
  if (!hash) throw new ScramError('bad-certificate', `no tls-server-end-point hash for signature algorithm ${oid ?? '(unreadable)'}`);
  return createHash(hash).update(der).digest();
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** Reads the DER TLV header at `offset`; null when it does not fit before `end`. */
function readTlv(der: Buffer, offset: number, end: number): Tlv | null {
  if (offset + 2 > end) return null;
  let length = der[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > end) return null;
    length = der.readUIntBE(start, bytes);
    start += bytes;
  }
  return start + length > end ? null : { tag: der[offset]!, start, end: start + length };
}

/** The first element of a SEQUENCE as an OID in dotted form, e.g. an AlgorithmIdentifier's. */
function algorithmOid(der: Buffer, sequence: Tlv | null): { oid: string; next: number; end: number } | null {
  const tlv = sequence?.tag === 0x30 ? readTlv(der, sequence.start, sequence.end) : null;
  if (!sequence || tlv?.tag !== 0x06 || tlv.start === tlv.end) return null;
  const arcs: number[] = [];
  let value = 0;
  for (let i = tlv.start; i < tlv.end; i++) {
    value = value * 128 + (der[i]! & 0x7f);
    if (der[i]! & 0x80) continue;
    const top = arcs.length === 0 ? Math.min(Math.floor(value / 40), 2) : -1;
    arcs.push(...(top >= 0 ? [top, value - 40 * top] : [value]));
    value = 0;
  }
  return { oid: arcs.join('.'), next: tlv.end, end: sequence.end };
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature } */
function signatureHash(der: Buffer): { oid: string | undefined; hash: string | undefined } {
  const cert = readTlv(der, 0, der.length);
  const tbs = cert && readTlv(der, cert.start, cert.end);
  const algorithm = algorithmOid(der, tbs && readTlv(der, tbs.end, cert.end));
  if (algorithm?.oid !== RSASSA_PSS) return { oid: algorithm?.oid, hash: algorithm ? END_POINT_HASHES[algorithm.oid] : undefined };
  // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, ... }
  const params = readTlv(der, algorithm.next, algorithm.end);
  if (params?.tag !== 0x30) return { oid: RSASSA_PSS, hash: undefined };
  const first = readTlv(der, params.start, params.end);
  if (first?.tag !== 0xa0) return { oid: RSASSA_PSS, hash: UPGRADED }; // hashAlgorithm absent: SHA-1
  const digest = algorithmOid(der, readTlv(der, first.start, first.end));
  return { oid: `${RSASSA_PSS} with ${digest?.oid ?? '(unreadable)'}`, hash: digest ? END_POINT_HASHES[digest.oid] : undefined };
}
