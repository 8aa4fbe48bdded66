// The error catalogue. Every failure the ambassador reports to a client has an entry here: a
// stable code (log field, metric label), whether retrying elsewhere may help, and the SQLSTATE the
// client sees. The frontend turns an AmbassadorError into an ErrorResponse in one place
// (frontend/errors-to-wire.ts); nothing else invents SQLSTATEs.

export const ERROR_CATALOGUE = {
  PROTOCOL_VIOLATION: { sqlstate: '08P01', retryable: false, severity: 'FATAL' },
  MESSAGE_TOO_LARGE: { sqlstate: '08P01', retryable: false, severity: 'FATAL' },
  UNSUPPORTED_PROTOCOL: { sqlstate: '0A000', retryable: false, severity: 'FATAL' },
  STARTUP_INVALID: { sqlstate: '08P01', retryable: false, severity: 'FATAL' },
  TLS_REQUIRED: { sqlstate: '28000', retryable: false, severity: 'FATAL' },
  LOGIN_TIMEOUT: { sqlstate: '08006', retryable: false, severity: 'FATAL' },
  AUTH_FAILED: { sqlstate: '28P01', retryable: false, severity: 'FATAL' },
  AUTH_METHOD_REJECTED: { sqlstate: '28000', retryable: false, severity: 'FATAL' },
  /** A user not in admin.users asked for the admin console. */
  NOT_ADMIN: { sqlstate: '28000', retryable: false, severity: 'FATAL' },
  /** PAUSE held the request longer than health.failoverTimeout. */
  PAUSED: { sqlstate: '57P03', retryable: true, severity: 'ERROR' },
  TOO_MANY_CLIENTS: { sqlstate: '53300', retryable: true, severity: 'FATAL' },
  /** The user's listen.rateLimit had no turn for the transaction within its maxWait. */
  RATE_LIMITED: { sqlstate: '53400', retryable: true, severity: 'ERROR' },
  /** The client canceled a request still waiting for a server (it never ran). */
  QUERY_CANCELED: { sqlstate: '57014', retryable: false, severity: 'ERROR' },
  /** listen.clientIdleTimeout: idle between transactions too long (Postgres' idle_session_timeout). */
  CLIENT_IDLE_TIMEOUT: { sqlstate: '57P05', retryable: true, severity: 'FATAL' },
  /** listen.idleInTransactionTimeout (Postgres' idle_in_transaction_session_timeout). */
  IDLE_IN_TRANSACTION_TIMEOUT: { sqlstate: '25P03', retryable: false, severity: 'FATAL' },
  /** No server connection became free within pool.acquireTimeout; the client stays connected. */
  POOL_TIMEOUT: { sqlstate: '53300', retryable: true, severity: 'ERROR' },
  /** The pool is closing (shutdown, host removed). */
  POOL_CLOSED: { sqlstate: '57P01', retryable: true, severity: 'ERROR' },
  /** No host can take writes now (none known to be the primary, or two claim to be). */
  NO_PRIMARY: { sqlstate: '08001', retryable: true, severity: 'ERROR' },
  /** A read found no replica it may use and readsFromPrimary forbids the primary. */
  NO_REPLICA: { sqlstate: '08001', retryable: true, severity: 'ERROR' },
  /** The host's circuit breaker is open: connects to it fail at once until its cooldown ends. */
  HOST_UNAVAILABLE: { sqlstate: '08001', retryable: true, severity: 'ERROR' },
  UPSTREAM_CONNECT_FAILED: { sqlstate: '08001', retryable: true, severity: 'FATAL' },
  UPSTREAM_CONNECT_TIMEOUT: { sqlstate: '08001', retryable: true, severity: 'FATAL' },
  UPSTREAM_TLS_FAILED: { sqlstate: '08001', retryable: false, severity: 'FATAL' },
  UPSTREAM_AUTH_FAILED: { sqlstate: '08001', retryable: false, severity: 'FATAL' },
  UPSTREAM_PROTOCOL: { sqlstate: '08P01', retryable: false, severity: 'FATAL' },
  UPSTREAM_LOST: { sqlstate: '08006', retryable: true, severity: 'FATAL' },
  /** A statement of the ambassador's own (probe, catalog read) failed on the server. */
  UPSTREAM_QUERY_FAILED: { sqlstate: '08000', retryable: true, severity: 'ERROR' },
  SHUTTING_DOWN: { sqlstate: '57P01', retryable: true, severity: 'FATAL' },
  CREDENTIALS_UNAVAILABLE: { sqlstate: '08001', retryable: true, severity: 'FATAL' },
  INTERNAL: { sqlstate: 'XX000', retryable: false, severity: 'FATAL' },
} as const satisfies Record<string, { sqlstate: string; retryable: boolean; severity: 'ERROR' | 'FATAL' }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class AmbassadorError extends Error {
  readonly code: ErrorCode;
  readonly sqlstate: string;
  readonly retryable: boolean;
  readonly severity: 'ERROR' | 'FATAL';
  /** Extra text for the ErrorResponse's Detail field. */
  readonly detail: string | undefined;
  /** What the user can do about it (ErrorResponse Hint). */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { detail?: string; hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    const entry = ERROR_CATALOGUE[code];
    this.name = 'AmbassadorError';
    this.code = code;
    this.sqlstate = entry.sqlstate;
    this.retryable = entry.retryable;
    this.severity = entry.severity;
    this.detail = opts.detail;
    this.hint = opts.hint;
  }
}

/** A config file or environment problem: names the file, the line and the key path. */
export class ConfigError extends Error {
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly keyPath: string;

  constructor(message: string, opts: { file?: string; line?: number; keyPath?: string } = {}) {
    const where = [opts.file, opts.line === undefined ? undefined : String(opts.line)].filter(Boolean).join(':');
    const key = opts.keyPath ? `${opts.keyPath}: ` : '';
    super(`${where ? `${where}: ` : ''}${key}${message}`);
    this.name = 'ConfigError';
    this.file = opts.file;
    this.line = opts.line;
    this.keyPath = opts.keyPath ?? '';
  }
}

/** Turns anything thrown into an AmbassadorError, keeping catalogue errors as they are. */
export function asAmbassadorError(err: unknown, fallback: ErrorCode = 'INTERNAL'): AmbassadorError {
  if (err instanceof AmbassadorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AmbassadorError(fallback, message, { cause: err });
}
