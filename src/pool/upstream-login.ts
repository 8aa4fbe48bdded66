// Logging in upstream: every server connection the pools open and every health probe's goes
// through UpstreamLogin.connect, which fetches the secret, logs in, and on a refused secret
// retries once with a rotated one. It keeps the outcome of the last login (for /readyz): when one
// last succeeded, and the last failure's message (never a secret: server and network messages).
//
// The credential cache may be replaced by a config reload (`credentials`): the next connect uses
// the new one; the caller closes the old one.

import type { Logger } from 'pino';
import { BackendConnection, UpstreamLoginError } from '../backend/connection.ts';
import type { Connector, UpstreamTarget, UpstreamTlsSettings } from '../backend/connector.ts';
import type { CredentialCache } from '../credentials/cache.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { errorText } from './failover.ts';

/** Opens and logs in one server connection (BackendConnection.connect over the connector by default). */
export type ServerConnect = (target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number) => Promise<BackendConnection>;

/** The last upstream login's outcome, as clock.now() times. */
export interface LastLogin {
  /** When a login last succeeded. */
  okAt: number | null;
  /** The failure after the last success (null once a login succeeds again). */
  error: string | null;
  errorAt: number | null;
}

export interface UpstreamLoginOptions {
  connector: Connector;
  tls: () => UpstreamTlsSettings;
  maxMessageSize: number;
  /** Upstream secrets by login; null when none are configured (trust, cert auth). */
  credentials: CredentialCache | null;
  log: Logger;
  clock: Clock;
  /** Test seam: replaces the whole login. */
  connect?: ServerConnect | undefined;
}

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

/** Logins retried after the server refused a secret (see open()). */
const MAX_REJECTED_RETRIES = 2;

export class UpstreamLogin {
  /** Used from the next connect on (config reload). */
  credentials: CredentialCache | null;
  private readonly last: LastLogin = { okAt: null, error: null, errorAt: null };

  constructor(private readonly options: UpstreamLoginOptions) {
    this.credentials = options.credentials;
  }

  get lastLogin(): LastLogin {
    return { ...this.last };
  }

  /** Opens and logs in one connection; the outcome becomes lastLogin. */
  async connect(target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number): Promise<BackendConnection> {
    try {
      const connection = await this.open({ host: target.host, port: target.port }, login, timeoutMs);
      this.last.okAt = this.options.clock.now();
      this.last.error = null;
      this.last.errorAt = null;
      return connection;
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  /**
   * Logs in once and closes the connection: resolves when the login succeeded; rejects with an
   * Error carrying the failure's message only, also when it took longer than timeoutMs.
   */
  async check(target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number): Promise<void> {
    const { clock } = this.options;
    let timer: Timer | null = null;
    let timedOut = false;
    const attempt = this.connect(target, login, timeoutMs);
    const timeout = new Promise<never>((_, reject) => {
      timer = clock.setTimeout(() => {
        timedOut = true;
        reject(new Error(`login to ${target.host}:${target.port} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
    });
    try {
      const connection = await Promise.race([attempt, timeout]);
      connection.close();
    } catch (err) {
      if (timedOut) {
        this.failed(err);
        attempt.then((late) => late.close(), () => {}); // a login that finishes after all is not kept
      }
      throw new Error(errorText(err));
    } finally {
      if (timer) clock.clearTimeout(timer);
    }
  }

  private failed(err: unknown): void {
    this.last.error = errorText(err);
    this.last.errorAt = this.options.clock.now();
  }

  private async open(target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number): Promise<BackendConnection> {
    const { options } = this;
    if (options.connect) return options.connect(target, login, timeoutMs);
    const secrets = this.credentials;
    if (!secrets) return this.login(target, login, timeoutMs, null);
    const who = { host: target.host, port: target.port, user: secrets.loginUser(login.user) };
    const as = { user: who.user, database: login.database };
    const deadline = options.clock.now() + timeoutMs;
    // The secret is in hand before the socket opens: a slow token service or command is then a
    // credentials problem, never a login timeout blamed on the host (breaker, health).
    let lease = await secrets.get(who);
    for (let retries = 0; ; retries++) {
      try {
        const remaining = retries === 0 ? timeoutMs : Math.max(Math.min(1000, timeoutMs / 4), deadline - options.clock.now());
        const connection = await this.login(target, as, remaining, lease.password);
        secrets.accepted(who, lease);
        if (retries > 0) options.log.info({ host: `${target.host}:${target.port}`, user: who.user }, 'upstream login succeeded with the rotated credentials');
        return connection;
      } catch (err) {
        // The server said no to the secret (rotated since it was cached, or a token that lapsed):
        // retry with whatever the cache has that differs from it, within the connect deadline.
        // Twice at most: a rotation under way (source and server changing in either order) can
        // refuse the new secret, then the old one a moment later.
        if (!rejectedLogin(err) || retries === MAX_REJECTED_RETRIES) throw err;
        const reserve = Math.min(1000, timeoutMs / 4); // left for the retried login itself
        const waitMs = (err as UpstreamLoginError).serverCode === '28P01' ? Math.max(0, deadline - reserve - options.clock.now()) : 0;
        const retry = await secrets.rejected(who, lease, waitMs);
        if (!retry) throw err;
        lease = retry;
      }
    }
  }

  private login(target: UpstreamTarget, login: { user: string; database: string }, timeoutMs: number, password: string | null): Promise<BackendConnection> {
    const { options } = this;
    return BackendConnection.connect({
      connector: options.connector,
      target,
      tls: options.tls,
      connectTimeoutMs: timeoutMs,
      user: login.user,
      database: login.database,
      params: NO_PARAMS,
      password: async () => password,
      maxMessageSize: options.maxMessageSize,
    });
  }
}

/** The server refused the secret itself (28P01 wrong password, 28000 e.g. a PAM/IAM refusal). */
function rejectedLogin(err: unknown): boolean {
  return err instanceof UpstreamLoginError && (err.serverCode === '28P01' || err.serverCode === '28000');
}
