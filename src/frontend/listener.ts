// The client-facing TCP listener: accepts connections, enforces the client connection limits
// (in all, and per user with the rate of new transactions: user-limits.ts), creates a
// ClientSession per socket with its own child logger, sweeps idle clients out when
// listen.clientIdleTimeout or listen.idleInTransactionTimeout is set, and runs graceful shutdown
// (stop accepting, let sessions finish their transaction, then end the rest with 57P01).

import net from 'node:net';
import type { Logger } from 'pino';
import { AmbassadorError } from '../errors.ts';
import type { ServerPool } from '../pool/server-pool.ts';
import { GarbageBound } from '../lib/garbage-bound.ts';
import { SessionEffectsCache, type PinReason } from '../router/session-effects.ts';
import { CancelRegistry } from './cancel-registry.ts';
import { ClientSession, type ClientActivity, type FrontendSettings } from './session.ts';
import type { TrafficStats } from './traffic.ts';
import type { RoutingContext } from './client-routing.ts';
import { errorResponseFor } from './wire-errors.ts';
import { UserLimits } from './user-limits.ts';

/** Idle timeouts are checked this often at most, and at least four times per timeout. */
const MAX_SWEEP_MS = 1_000;
const MIN_SWEEP_MS = 25;

export interface ListenerOptions {
  host: string;
  port: number;
  maxClientConnections: number;
  settings: () => FrontendSettings;
  pool: ServerPool;
  routing: RoutingContext;
  /** Per-database totals and the metrics observer. */
  traffic: TrafficStats;
  /** A session became pinned to its server (metrics). */
  onPin?: (reason: PinReason) => void;
  logger: Logger;
}

export class Listener {
  readonly sessions = new Set<ClientSession>();
  readonly cancels = new CancelRegistry();
  readonly userLimits = new UserLimits({ maxConnections: 0, transactionsPerSecond: 0, burst: 0, maxWaitMs: 0 });
  private sweeper: NodeJS.Timeout | null = null;
  private readonly server: net.Server;
  private nextId = 1;
  /** Forwarded-buffer garbage is collected every 2 MB (see lib/garbage-bound.ts). */
  private readonly garbage = new GarbageBound(2 * 1024 * 1024);
  /** Session effects of SQL texts, shared by every session (pure, cached by exact text). */
  private readonly effects = new SessionEffectsCache();
  /** How many times sessions became pinned, per reason (transaction mode). */
  readonly pinCounts = new Map<PinReason, number>();
  private accepting = true;
  private allClosed: (() => void) | null = null;

  constructor(private readonly options: ListenerOptions) {
    // Half-open: a client that half-closes its cancel connection (shutdown(SHUT_WR), then waits
    // for EOF) keeps it open until the cancel has reached the server; every other session closes
    // at the client's FIN as before (ClientSession.onClientEnd).
    this.server = net.createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  /** The limits of listen.* that live here (per user, cancels, idle sweep) take `settings`. */
  private applyLimits(settings: FrontendSettings): void {
    this.cancels.configure(settings.maxConcurrentCancels);
    this.userLimits.configure(settings.userLimits);
    this.scheduleSweep(settings);
  }

  /** Runs the idle sweep while an idle timeout is set (see ClientSession.sweepIdle). */
  private scheduleSweep(settings: FrontendSettings): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    const timeouts = [settings.clientIdleTimeoutMs, settings.idleInTransactionTimeoutMs].filter((ms) => ms > 0);
    if (timeouts.length === 0) return;
    const every = Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, Math.floor(Math.min(...timeouts) / 4)));
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (const session of this.sessions) session.sweepIdle(now);
    }, every);
    this.sweeper.unref();
  }

  /** Starts listening; rejects with a clear error when the address is taken. */
  listen(): Promise<net.AddressInfo> {
    const { host, port } = this.options;
    this.applyLimits(this.options.settings());
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const taken = err.code === 'EADDRINUSE';
        reject(
          new AmbassadorError('INTERNAL', taken ? `${host}:${port} is already in use` : `cannot listen on ${host}:${port}: ${err.message}`, {
            hint: taken ? 'Stop whatever listens there, or choose another port (--port, LISTEN_PORT or listen.port).' : undefined,
            cause: err,
          }),
        );
      };
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.options.logger.error({ err: err.message }, 'listener error'));
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /**
   * A config reload: the client limits apply to new connections, the rate limit and idle
   * timeouts to everyone from now on (sessions read their settings when created, so an idle
   * timeout changes for new sessions only); sessions take the new query logging.
   */
  reconfigure(changes: { maxClientConnections: number; settings: FrontendSettings }): void {
    this.options.maxClientConnections = changes.maxClientConnections;
    this.applyLimits(changes.settings);
    for (const session of this.sessions) session.configureQueryLog(changes.settings.queryLog);
  }

  /** Client connections by what they are doing now. */
  activity(): Record<ClientActivity, number> {
    const counts: Record<ClientActivity, number> = { login: 0, active: 0, idle: 0, waiting: 0 };
    // A cancel connection waiting for its cancel to land is no client doing anything.
    for (const session of this.sessions) if (session.state !== 'cancel') counts[session.activity]++;
    return counts;
  }

  /** Sessions pinned to their server now, by reason (a session pinned for two reasons counts twice). */
  pinned(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const session of this.sessions) for (const reason of session.pinReasons) counts.set(reason, (counts.get(reason) ?? 0) + 1);
    return counts;
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => {});
    if (!this.accepting) {
      socket.end(errorResponseFor(new AmbassadorError('SHUTTING_DOWN', 'the ambassador is shutting down')));
      return;
    }
    if (this.sessions.size >= this.options.maxClientConnections) {
      socket.end(errorResponseFor(new AmbassadorError('TOO_MANY_CLIENTS', `sorry, too many clients already (limit ${this.options.maxClientConnections})`)));
      return;
    }
    const id = this.nextId++;
    const session = new ClientSession(socket, {
      id,
      garbage: this.garbage,
      effects: this.effects,
      onPin: (reason) => {
        this.pinCounts.set(reason, (this.pinCounts.get(reason) ?? 0) + 1);
        this.options.onPin?.(reason);
      },
      traffic: this.options.traffic,
      logger: this.options.logger.child({ session: id }),
      settings: this.options.settings(),
      pool: this.options.pool,
      routing: this.options.routing,
      cancels: this.cancels,
      userLimits: this.userLimits,
      onClose: (s) => {
        this.sessions.delete(s);
        if (this.sessions.size === 0) this.allClosed?.();
      },
    });
    this.sessions.add(session);
  }

  /**
   * Graceful shutdown: stops accepting, asks every session to end between transactions, and
   * after `timeoutMs` ends the remaining ones with 57P01. Resolves when all are closed.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    this.accepting = false;
    this.server.close();
    if (this.sweeper !== null) clearInterval(this.sweeper);
    if (this.sessions.size > 0) {
      const done = new Promise<void>((resolve) => (this.allClosed = resolve));
      for (const session of this.sessions) session.drain();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const outcome = await Promise.race([done, timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.options.logger.warn({ sessions: this.sessions.size }, 'shutdown timeout reached: terminating remaining sessions');
        for (const session of [...this.sessions]) session.terminate();
      }
    }
  }
}
