// Time, injected. Modules that wait or measure take a `Clock` instead of reaching for the global
// timers, so tests drive time by hand: `FakeClock` keeps a virtual "now" and runs due timers in
// order (earliest due first, ties in scheduling order) when it is advanced, without real waiting.
//
// `systemClock.now()` is wall-clock milliseconds (Date.now), so timestamps compare with expiry
// times that come from outside (tokens, certificates); `spanClock` measures spans (see there).

import { performance } from 'node:perf_hooks';

export interface Timer {
  /** Lets the process exit while this timer is pending (a no-op on the fake clock). */
  unref(): unknown;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

const ORIGIN = performance.timeOrigin;

/**
 * For spans and deadlines (the server pool's: idle, lifetime and wait times, failover, health
 * rounds): the wall clock at start plus monotonic time since. A step of the system clock moves
 * no deadline, and a reading still prints as a date, off by the steps since start and the time
 * the host spent suspended. Not for expiry times from outside (tokens, certificates), which go
 * by systemClock: what crosses from one to the other is a span, never a reading. It is cheaper on
 * the hot path too: on Node 20, Date.now() in optimized code calls into the runtime, which
 * allocates its result (in a 1-client perf profile, 0.4 us for each of the pool's two readings
 * per transaction), where performance.now() is a fast API call.
 */
export const spanClock: Clock = {
  now: () => ORIGIN + performance.now(),
  setTimeout: systemClock.setTimeout,
  clearTimeout: systemClock.clearTimeout,
};

interface FakeTimer extends Timer {
  readonly seq: number;
  readonly dueAt: number;
  readonly fn: () => void;
}

/** Lets every pending promise callback run (the microtask queue drains before setImmediate). */
const flushPromises = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  private current: number;
  private seq = 0;
  private timers: FakeTimer[] = [];

  constructor(startMs = 0) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { seq: ++this.seq, dueAt: this.current + Math.max(0, ms), fn, unref: () => timer };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(timer: Timer): void {
    this.timers = this.timers.filter((t) => t !== timer);
  }

  /** Delays (from now) of the pending timers, soonest first. */
  pending(): number[] {
    return this.timers.map((t) => t.dueAt - this.current).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, running each timer that falls due, in order, at its due time. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (let timer = this.nextDue(target); timer; timer = this.nextDue(target)) this.fire(timer);
    this.current = target;
  }

  /** Like advance, but lets promise callbacks run after each timer (and before the first). */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.current + ms;
    await flushPromises();
    for (let timer = this.nextDue(target); timer; timer = this.nextDue(target)) {
      this.fire(timer);
      await flushPromises();
    }
    this.current = target;
    await flushPromises();
  }

  private nextDue(target: number): FakeTimer | undefined {
    let next: FakeTimer | undefined;
    for (const t of this.timers) {
      if (t.dueAt <= target && (!next || t.dueAt < next.dueAt || (t.dueAt === next.dueAt && t.seq < next.seq))) next = t;
    }
    return next;
  }

  private fire(timer: FakeTimer): void {
    this.timers = this.timers.filter((t) => t !== timer);
    this.current = Math.max(this.current, timer.dueAt);
    timer.fn();
  }
}
