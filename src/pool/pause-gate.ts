// PAUSE and RESUME (as in PgBouncer: hold new transactions, e.g. around a manual switchover).
// While paused, every request for a server connection waits at this gate, first come first
// served, until resume(); connections already leased stay leased. pause() answers once nothing
// is leased any more (or after its own time limit) with how many still are. A request waiting
// longer than its limit (health.failoverTimeout when it arrived) fails with PAUSED; close()
// fails the rest with POOL_CLOSED. The gate only counts; what "leased" means is the pool's.

import { AmbassadorError } from '../errors.ts';
import type { Clock, Timer } from '../lib/clock.ts';

export interface PauseOutcome {
  /** Nothing was leased any more when pause() answered. */
  drained: boolean;
  /** Connections still leased (and requests past the gate still getting one) when it answered. */
  active: number;
}

export interface PauseGateDeps {
  clock: Clock;
  /** Connections leased now, requests already past the gate included. */
  leased(): number;
  /** How long a request may wait at the gate (read when it arrives). */
  waitLimitMs(): number;
}

interface GateWaiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: Timer | null;
}

interface DrainWaiter {
  resolve: (outcome: PauseOutcome) => void;
  timer: Timer;
}

export class PauseGate {
  private pausedNow = false;
  private waiters: GateWaiter[] = [];
  private drains: DrainWaiter[] = [];

  constructor(private readonly deps: PauseGateDeps) {}

  get paused(): boolean {
    return this.pausedNow;
  }

  /** Requests waiting at the gate. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** null when the gate is open (go on at once); else resolves on resume(), rejects after the wait limit. */
  pass(): Promise<void> | null {
    if (!this.pausedNow) return null;
    return new Promise<void>((resolve, reject) => {
      const waiter: GateWaiter = { resolve, reject, timer: null };
      const limitMs = this.deps.waitLimitMs();
      waiter.timer = this.deps.clock.setTimeout(() => this.expire(waiter, limitMs), Math.max(0, limitMs));
      waiter.timer.unref();
      this.waiters.push(waiter);
    });
  }

  /** Holds new requests from now on; resolves when nothing is leased any more, or after timeoutMs. */
  pause(timeoutMs: number): Promise<PauseOutcome> {
    this.pausedNow = true;
    const active = this.deps.leased();
    if (active === 0) return Promise.resolve({ drained: true, active });
    return new Promise((resolve) => {
      const drain: DrainWaiter = {
        resolve,
        timer: this.deps.clock.setTimeout(() => this.answer(drain), Math.max(0, timeoutMs)),
      };
      drain.timer.unref();
      this.drains.push(drain);
    });
  }

  /** Lets every waiting request through, in arrival order; false when not paused. Pending pause() calls answer now. */
  resume(): boolean {
    if (!this.pausedNow) return false;
    this.pausedNow = false;
    for (const drain of [...this.drains]) this.answer(drain);
    for (const waiter of this.waiters.splice(0)) {
      this.clearTimer(waiter);
      waiter.resolve();
    }
    return true;
  }

  /** Something was released: a pause() waiting for the pool to drain may answer. */
  released(): void {
    if (this.drains.length === 0 || this.deps.leased() > 0) return;
    for (const drain of [...this.drains]) this.answer(drain);
  }

  /** Shutdown: waiting requests fail with POOL_CLOSED; pending pause() calls answer. */
  close(): void {
    for (const drain of [...this.drains]) this.answer(drain);
    for (const waiter of this.waiters.splice(0)) {
      this.clearTimer(waiter);
      waiter.reject(new AmbassadorError('POOL_CLOSED', 'the server pool is closed: the ambassador is shutting down'));
    }
  }

  private answer(drain: DrainWaiter): void {
    const at = this.drains.indexOf(drain);
    if (at < 0) return;
    this.drains.splice(at, 1);
    this.deps.clock.clearTimeout(drain.timer);
    const active = this.deps.leased();
    drain.resolve({ drained: active === 0, active });
  }

  private expire(waiter: GateWaiter, limitMs: number): void {
    waiter.timer = null;
    const at = this.waiters.indexOf(waiter);
    if (at < 0) return;
    this.waiters.splice(at, 1);
    waiter.reject(
      new AmbassadorError('PAUSED', `no server connection: the ambassador is paused and was not resumed within ${limitMs} ms (health.failoverTimeout)`, {
        hint: 'An operator paused new transactions (PAUSE), e.g. for a switchover; retry once it is resumed (RESUME).',
      }),
    );
  }

  private clearTimer(waiter: GateWaiter): void {
    if (waiter.timer) this.deps.clock.clearTimeout(waiter.timer);
    waiter.timer = null;
  }
}
