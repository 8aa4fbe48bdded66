// Fakes for the ConnectionPool tests: a factory that records creates and destroys and can fail
// or hold creates, a pool set up on a FakeClock with `check()` asserting the pool's invariants
// (call it whenever promise callbacks have run), and small promise helpers.

import assert from 'node:assert/strict';
import { AmbassadorError } from '../../../src/errors.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import {
  ConnectionPool,
  type ConnectionFactory,
  type PoolEvent,
  type PoolOptions,
} from '../../../src/pool/connection-pool.ts';

export class FakeConn {
  alive = true;
  destroyed = false;
  closedCallback: (() => void) | null = null;
  constructor(readonly id: number) {}
}

/** Records creates and destroys; can fail the next N creates, or hold creates until let go. */
export class FakeFactory implements ConnectionFactory<FakeConn> {
  readonly attemptTimes: number[] = [];
  readonly conns: FakeConn[] = [];
  readonly destroyed: FakeConn[] = [];
  private failuresLeft = 0;
  private failMessage = '';
  private gate: Promise<void> | null = null;
  private openGate: () => void = () => {};

  /** Set by a test to say which create() errors are not worth another attempt. */
  retryable?: (err: unknown) => boolean;

  constructor(private readonly clock: FakeClock) {}

  failNext(count: number, message = 'connection to 10.0.0.9:5432 refused (ECONNREFUSED)'): void {
    this.failuresLeft = count;
    this.failMessage = message;
  }

  /** Creates wait until the returned function is called. */
  hold(): () => void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
    return () => {
      this.gate = null;
      this.openGate();
    };
  }

  async create(): Promise<FakeConn> {
    this.attemptTimes.push(this.clock.now());
    if (this.gate) await this.gate;
    if (this.failuresLeft > 0) {
      this.failuresLeft -= 1;
      throw new AmbassadorError('UPSTREAM_CONNECT_FAILED', this.failMessage);
    }
    const conn = new FakeConn(this.conns.length + 1);
    this.conns.push(conn);
    return conn;
  }

  destroy(conn: FakeConn): void {
    if (conn.destroyed) return;
    conn.destroyed = true;
    this.destroyed.push(conn);
  }

  isAlive(conn: FakeConn): boolean {
    return conn.alive && !conn.destroyed;
  }

  onClosed(conn: FakeConn, cb: () => void): void {
    conn.closedCallback = cb;
  }

  /** The server goes away under an open connection. */
  kill(conn: FakeConn): void {
    conn.alive = false;
    conn.closedCallback?.();
  }

  open(): FakeConn[] {
    return this.conns.filter((c) => !c.destroyed);
  }
}

export const BASE: PoolOptions = {
  size: 2,
  minIdle: 0,
  idleTimeoutMs: 0,
  maxLifetimeMs: 0,
  acquireTimeoutMs: 5000,
  retry: { max: 2, initialDelayMs: 100, maxDelayMs: 1000 },
};

export function setup(overrides: Partial<PoolOptions> = {}, random = () => 0.5) {
  const clock = new FakeClock();
  const factory = new FakeFactory(clock);
  const events: PoolEvent[] = [];
  const options = { ...BASE, ...overrides };
  const pool = new ConnectionPool('db1:5432/app/alice', options, factory, { clock, random, onEvent: (e) => events.push(e) });
  /** Invariants that hold whenever promise callbacks have run. */
  const check = (): void => {
    const s = pool.stats();
    assert.ok(s.idle + s.active + s.connecting <= s.size, `over size: ${JSON.stringify(s)}`);
    assert.equal(s.idle + s.active, factory.open().length, 'pool and factory disagree on open connections');
    if (s.waiting > 0) assert.equal(s.idle, 0, 'waiters while connections are idle');
    const inFlight = s.connectAttempts - s.totalCreated - s.connectFailures;
    assert.ok(inFlight >= 0 && inFlight <= s.connecting, `attempt counters inconsistent: ${JSON.stringify(s)}`);
    assert.equal(s.totalCreated, factory.conns.length);
  };
  const destroyReasons = (): string[] =>
    events.flatMap((e) => (e.type === 'destroyed' ? [e.reason] : []));
  return { clock, factory, events, pool, check, destroyReasons };
}

export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface Tracked<T> {
  settled: boolean;
  value?: T;
  error?: unknown;
}

export function track<T>(promise: Promise<T>): Tracked<T> {
  const state: Tracked<T> = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}
