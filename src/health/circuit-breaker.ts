// One circuit breaker per upstream host, shared by every pool of that host (all database/user
// pairs), so a dead host costs one failed connect per cooldown instead of one per client.
//
//   closed --threshold consecutive connect failures--> open --cooldown, or a health probe got through--> half-open
//   half-open --its one trial connect succeeds--> closed;  --the trial fails--> open (a new cooldown)
//
// Invariants:
// - Only connect outcomes move it; a health probe can only end an open spell early (a restarted
//   host is used again within one probe interval, not after the cooldown). Probes are never
//   blocked by it: they are how the ambassador learns a host is back.
// - While open, admit() throws HOST_UNAVAILABLE without touching the network.
// - While half-open, exactly one connect (the trial) is admitted at a time; only the trial's
//   failure reopens it. Any successful connect closes it (the host is evidently reachable).
// - Every transition is reported once, with its reason, through onChange.
// - Config reload (setOptions): the new threshold counts from the next failure, the new cooldown
//   from the next opening; an open spell under way keeps the cooldown it started with.

import { AmbassadorError } from '../errors.ts';
import type { Clock, Timer } from '../lib/clock.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive connect failures that open the breaker. */
  threshold: number;
  /** How long it stays open before one trial connect is allowed. */
  cooldownMs: number;
}

export interface BreakerTransition {
  host: string;
  from: BreakerState;
  to: BreakerState;
  reason: string;
  /** Consecutive connect failures so far. */
  failures: number;
  lastError: string | null;
  /** open only: clock.now() when a trial connect will be allowed. */
  retryAt: number | null;
}

/** Handed out by admit(); tells the breaker whose outcome it is being told. */
export interface BreakerTicket {
  /** This connect is the half-open trial. */
  readonly trial: boolean;
}

const ORDINARY: BreakerTicket = Object.freeze({ trial: false });

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private consecutiveFailures = 0;
  private trialInFlight = false;
  private cooldown: Timer | null = null;
  private openUntil: number | null = null;
  private lastFailure: string | null = null;

  constructor(
    /** "host:port" */
    readonly host: string,
    private options: CircuitBreakerOptions,
    private readonly clock: Clock,
    private readonly onChange: (transition: BreakerTransition) => void,
  ) {}

  get state(): BreakerState {
    return this.current;
  }

  /** Consecutive connect failures since the last success. */
  get failures(): number {
    return this.consecutiveFailures;
  }

  get lastError(): string | null {
    return this.lastFailure;
  }

  /** Why a connect would not be admitted now (HOST_UNAVAILABLE), or null; does not take the half-open trial. */
  refusal(): AmbassadorError | null {
    if (this.current === 'closed' || (this.current === 'half-open' && !this.trialInFlight)) return null;
    return this.unavailable();
  }

  /**
   * Call before a connect: throws HOST_UNAVAILABLE while open or while the half-open trial is
   * under way; otherwise the connect may go, and its outcome must be reported with the ticket.
   */
  admit(): BreakerTicket {
    if (this.current === 'closed') return ORDINARY;
    const refusal = this.refusal();
    if (refusal !== null) throw refusal;
    this.trialInFlight = true;
    return { trial: true };
  }

  /** The connect reached the host (logged in, or was refused by the server itself, not the network). */
  succeeded(ticket: BreakerTicket): void {
    this.consecutiveFailures = 0;
    if (ticket.trial) this.trialInFlight = false;
    if (this.current !== 'closed') this.move('closed', ticket.trial ? 'the trial connect succeeded' : 'a connect succeeded');
  }

  /** The connect failed at the connection level (refused, timed out, closed, server starting up). */
  failed(ticket: BreakerTicket, error: string): void {
    this.consecutiveFailures += 1;
    this.lastFailure = error;
    if (ticket.trial) {
      this.trialInFlight = false;
      if (this.current === 'half-open') this.open(`the trial connect failed: ${error}`);
      return;
    }
    if (this.current === 'closed' && this.consecutiveFailures >= this.options.threshold) {
      this.open(`${this.consecutiveFailures} consecutive connect failures, the last: ${error}`);
    }
  }

  /** A health probe got through to the host: an open breaker allows a trial at once. */
  probeSucceeded(): void {
    if (this.current === 'open') this.halfOpen('a health probe succeeded');
  }

  /** Config reload; see the file comment. */
  setOptions(options: CircuitBreakerOptions): void {
    this.options = options;
  }

  /** Cancels the cooldown timer (shutdown). */
  stop(): void {
    if (this.cooldown) this.clock.clearTimeout(this.cooldown);
    this.cooldown = null;
  }

  private open(reason: string): void {
    this.stop();
    this.openUntil = this.clock.now() + this.options.cooldownMs;
    const timer = this.clock.setTimeout(() => {
      this.cooldown = null;
      this.halfOpen(`the cooldown of ${this.options.cooldownMs} ms ended`);
    }, this.options.cooldownMs);
    timer.unref();
    this.cooldown = timer;
    this.move('open', reason);
  }

  private halfOpen(reason: string): void {
    this.stop();
    this.openUntil = null;
    this.trialInFlight = false;
    this.move('half-open', reason);
  }

  private move(to: BreakerState, reason: string): void {
    const from = this.current;
    if (to === 'closed') {
      this.stop();
      this.openUntil = null;
    }
    this.current = to;
    this.onChange({
      host: this.host,
      from,
      to,
      reason,
      failures: this.consecutiveFailures,
      lastError: this.lastFailure,
      retryAt: to === 'open' ? this.openUntil : null,
    });
  }

  private unavailable(): AmbassadorError {
    const last = this.lastFailure ?? 'unknown';
    if (this.current === 'half-open') {
      return new AmbassadorError(
        'HOST_UNAVAILABLE',
        `host ${this.host} is recovering: its circuit breaker is half-open and its one trial connection is under way (last connect error: ${last})`,
        { hint: 'Retry in a moment; the ambassador sends one connection to a failing host at a time until one succeeds.' },
      );
    }
    const inMs = Math.max(0, (this.openUntil ?? this.clock.now()) - this.clock.now());
    return new AmbassadorError(
      'HOST_UNAVAILABLE',
      `host ${this.host} is not being connected to: its circuit breaker is open after ${this.consecutiveFailures} consecutive connect failures ` +
        `(last: ${last}); it tries again in ${inMs} ms, or as soon as a health probe gets through`,
      { hint: 'Check that the server is running and reachable; health.circuitBreaker sets the threshold and cooldown.' },
    );
  }
}
