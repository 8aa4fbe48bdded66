// The login of one idle bench client, as a state machine with no socket: startup() gives the
// StartupMessage, receive() takes the server's bytes (split anywhere) and returns what to send
// back, until ReadyForQuery ('ready') or an ErrorResponse, a protocol error or an unsupported
// authentication request ('failed', with the reason in `error`). It speaks SCRAM-SHA-256 (the
// project's ScramClient; it checks the server's signature) and accepts trust (AuthenticationOk
// straight away). After 'ready' the SCRAM state is dropped, so an idle client costs its socket and
// a framer; an ErrorResponse then (e.g. the server terminating it) also makes it 'failed'.

import { AuthCode, BackendType, decodeAuthentication, summarizeError } from '../src/protocol/backend.ts';
import { ALL_TYPES, Framer } from '../src/protocol/framer.ts';
import { encodeSASLInitialResponse, encodeSASLResponse } from '../src/protocol/frontend.ts';
import { SCRAM_SHA_256, ScramClient } from '../src/protocol/scram.ts';
import { encodeStartupMessage } from '../src/protocol/startup.ts';

export type IdleLoginState = 'authenticating' | 'ready' | 'failed';

export interface IdleCredentials {
  user: string;
  password: string;
  database: string;
}

/** Server messages are small during login; anything bigger is not a server we are talking to. */
const MAX_MESSAGE_BYTES = 1 << 20;

export class IdleLogin {
  #state: IdleLoginState = 'authenticating';
  #error: string | null = null;
  #scram: ScramClient | null = null;
  readonly #framer = new Framer(MAX_MESSAGE_BYTES, ALL_TYPES);
  readonly #credentials: IdleCredentials;

  constructor(credentials: IdleCredentials) {
    this.#credentials = credentials;
  }

  get state(): IdleLoginState {
    return this.#state;
  }

  /** Why the login failed (or the connection ended after it), null otherwise. */
  get error(): string | null {
    return this.#error;
  }

  startup(): Buffer {
    const { user, database } = this.#credentials;
    return encodeStartupMessage([['user', user], ['database', database], ['application_name', 'pg-ambassador-bench-idle']]);
  }

  /** Feeds bytes from the server; returns the messages to send in reply (none once ready or failed). */
  receive(chunk: Buffer): Buffer[] {
    const replies: Buffer[] = [];
    if (this.#state === 'failed') return replies;
    try {
      this.#framer.push(chunk, (type, payload) => {
        this.#handle(type, payload!, replies);
        return this.#state !== 'failed';
      });
    } catch (error) {
      this.#fail(`login error: ${(error as Error).message}`);
    }
    return this.#error === null ? replies : [];
  }

  #handle(type: number, payload: Buffer, replies: Buffer[]): void {
    if (type === BackendType.ErrorResponse) {
      const { code, message } = summarizeError(payload);
      this.#fail(`${code}: ${message}`);
    } else if (type === BackendType.ReadyForQuery && this.#state === 'authenticating') {
      this.#state = 'ready';
      this.#scram = null;
    } else if (type === BackendType.Authentication && this.#state === 'authenticating') {
      this.#authenticate(payload, replies);
    }
    // ParameterStatus, BackendKeyData, notices: nothing to do.
  }

  #authenticate(payload: Buffer, replies: Buffer[]): void {
    const request = decodeAuthentication(payload);
    switch (request.code) {
      case AuthCode.Ok:
        return;
      case AuthCode.SASL: {
        if (!('mechanisms' in request) || !request.mechanisms.includes(SCRAM_SHA_256)) {
          return this.#fail(`server offers no ${SCRAM_SHA_256}`);
        }
        this.#scram = new ScramClient({ password: this.#credentials.password });
        replies.push(encodeSASLInitialResponse(SCRAM_SHA_256, this.#scram.clientFirst()));
        return;
      }
      case AuthCode.SASLContinue:
        if (this.#scram && 'data' in request) replies.push(encodeSASLResponse(this.#scram.handleServerFirst(request.data)));
        else this.#fail('SASLContinue without a SASL exchange');
        return;
      case AuthCode.SASLFinal:
        if (this.#scram && 'data' in request) this.#scram.verifyServerFinal(request.data);
        else this.#fail('SASLFinal without a SASL exchange');
        return;
      default:
        this.#fail(`unsupported authentication request (code ${request.code})`);
    }
  }

  #fail(reason: string): void {
    if (this.#state === 'failed') return;
    this.#state = 'failed';
    this.#error = reason;
    this.#scram = null;
  }
}
