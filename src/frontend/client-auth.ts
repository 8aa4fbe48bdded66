// Client authentication: the ambassador plays the server's part of trust, md5 and
// SCRAM-SHA-256 (with SCRAM-SHA-256-PLUS channel binding on TLS connections) against the users
// in clientAuth.users. Unknown users are walked through the whole exchange and fail at the end,
// as PostgreSQL does, so a client cannot probe which user names exist.
// Channel binding: -PLUS is offered on TLS connections only, bound to the ambassador's own
// certificate (tls-server-end-point); a 'p' claim on a plain connection, binding data of another
// certificate, and a 'y' (downgrade) after -PLUS was offered are refused. A certificate whose
// signature has no hash to bind with (Ed25519, Ed448) gets plain SCRAM-SHA-256 only, where
// PostgreSQL would offer -PLUS and then fail every client that takes it.

import { randomBytes } from 'node:crypto';
import { AmbassadorError } from '../errors.ts';
import {
  encodeAuthenticationMD5,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
} from '../protocol/backend.ts';
import { decodePasswordMessage, decodeSASLInitialResponse, FrontendType } from '../protocol/frontend.ts';
import { md5PasswordHash, verifyMd5Response } from '../protocol/md5.ts';
import {
  buildScramVerifier,
  certificateChannelBindingHash,
  mockScramVerifier,
  parseScramVerifier,
  scramMechanisms,
  ScramError,
  ScramServer,
  type ChannelBinding,
  type ScramVerifier,
} from '../protocol/scram.ts';

export type ClientAuthMethod = 'trust' | 'scram-sha-256' | 'md5';

/** A configured user's password in the forms each method can use. */
export interface StoredCredential {
  scram: ScramVerifier | null;
  md5: string | null;
}

export interface ClientAuthSettings {
  method: ClientAuthMethod;
  users: ReadonlyMap<string, StoredCredential>;
  /** Server secret for mock verifiers of unknown users (random per process). */
  mockSecret: Buffer;
}

/** What authentication needs from the session: send a message, await the client's next one. */
export interface AuthExchange {
  send(message: Buffer): void;
  next(): Promise<{ type: number; payload: Buffer }>;
  /** DER of the ambassador's own TLS certificate when the client connection is encrypted. */
  serverCertificate: Buffer | null;
}

/** Turns configured passwords (plaintext, SCRAM verifier or md5 hash) into usable credentials. */
export function storedCredential(user: string, password: string): StoredCredential {
  const scram = parseScramVerifier(password);
  if (scram) return { scram, md5: null };
  if (/^md5[0-9a-f]{32}$/.test(password)) return { scram: null, md5: password };
  return { scram: buildScramVerifier(password), md5: md5PasswordHash(user, password) };
}

/** How a client proved who it is (a log field). */
export type AuthMechanism = 'trust' | 'md5' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';

/** Resolves with the mechanism used once the client proved its identity; throws AUTH_FAILED otherwise. */
export async function authenticateClient(exchange: AuthExchange, user: string, settings: ClientAuthSettings): Promise<AuthMechanism> {
  if (settings.method === 'trust') return 'trust';
  const stored = settings.users.get(user);
  // Like PostgreSQL: a SCRAM-only stored password upgrades an md5 method to SCRAM.
  if (settings.method === 'md5' && (stored === undefined || stored.md5 !== null)) {
    await md5Exchange(exchange, user, stored?.md5 ?? null);
    return 'md5';
  }
  return scramExchange(exchange, user, stored?.scram ?? mockScramVerifier(user, settings.mockSecret), stored === undefined);
}

function authFailed(user: string): AmbassadorError {
  return new AmbassadorError('AUTH_FAILED', `password authentication failed for user "${user}"`);
}

async function expectPasswordMessage(exchange: AuthExchange): Promise<Buffer> {
  const { type, payload } = await exchange.next();
  if (type !== FrontendType.Password) {
    throw new AmbassadorError('PROTOCOL_VIOLATION', `expected password response, got message type 0x${type.toString(16)}`);
  }
  return payload;
}

async function md5Exchange(exchange: AuthExchange, user: string, storedHash: string | null): Promise<void> {
  const salt = randomBytes(4);
  exchange.send(encodeAuthenticationMD5(salt));
  const payload = await expectPasswordMessage(exchange);
  let response: string;
  try {
    response = decodePasswordMessage(payload);
  } catch {
    throw new AmbassadorError('PROTOCOL_VIOLATION', 'malformed password message');
  }
  if (storedHash === null || !verifyMd5Response(storedHash, salt, response)) throw authFailed(user);
}

async function scramExchange(exchange: AuthExchange, user: string, verifier: ScramVerifier, unknownUser: boolean): Promise<AuthMechanism> {
  const binding = channelBindingFor(exchange.serverCertificate);
  exchange.send(encodeAuthenticationSASL(scramMechanisms(binding)));
  try {
    let initial: { mechanism: string; data: Buffer };
    try {
      initial = decodeSASLInitialResponse(await expectPasswordMessage(exchange));
    } catch (err) {
      if (err instanceof AmbassadorError) throw err;
      throw new AmbassadorError('PROTOCOL_VIOLATION', 'malformed SASL initial response');
    }
    // The server checks that the gs2 flag agrees with the mechanism and refuses a downgrade
    // ('y' when -PLUS was offered).
    const server = new ScramServer({ verifier, channelBinding: binding, mechanism: initial.mechanism });
    exchange.send(encodeAuthenticationSASLContinue(server.handleClientFirst(initial.data)));
    const final = server.handleClientFinal(await expectPasswordMessage(exchange));
    if (unknownUser) throw authFailed(user);
    exchange.send(encodeAuthenticationSASLFinal(final));
    return server.mechanism;
  } catch (err) {
    if (err instanceof ScramError) throw scramFailure(err, user);
    throw err;
  }
}

/** The binding a TLS connection offers (-PLUS), or null: no TLS, or a certificate that cannot bind. */
function channelBindingFor(certificate: Buffer | null): ChannelBinding | null {
  if (certificate === null) return null;
  try {
    return { type: 'tls-server-end-point', data: certificateChannelBindingHash(certificate) };
  } catch (err) {
    if (err instanceof ScramError) return null;
    throw err;
  }
}

/** SQLSTATEs as PostgreSQL gives them: a bad proof is 28P01; everything else, channel
 *  binding problems included, is a protocol violation (08P01). */
function scramFailure(err: ScramError, user: string): AmbassadorError {
  if (err.reason === 'bad-proof') return authFailed(user);
  return new AmbassadorError('PROTOCOL_VIOLATION', `malformed SCRAM message: ${err.message}`);
}
