// The mechanics of one pool of server connections for one (host, database, user): idle and
// active connections, connects in flight, a FIFO of waiters, lifetimes and idle timeouts. Which
// host a request goes to is policy and lives elsewhere; this file never chooses.
//
// States as queues (after postgres.js): a connection is `idle` (a stack: acquire takes the most
// recently used, warm one; the bottom goes cold and is reaped first), `active` (leased), or
// `gone`; every transition goes through `move`. Connects in flight are `CreateJob`s. Invariants:
//   - idle + active + connecting <= size (active may exceed a size lowered by `resize` until those
//     connections come back, when they are retired);
//   - waiters exist only while idle is empty (a connection coming back goes to the head waiter).
// Every waiter is a request; the pool starts one job per waiter while there is room. A job
// belongs to at most one waiter: it makes 1 + retry.max attempts for its owner (fewer when the
// factory says an error is not worth retrying), then rejects the owner with the factory's own
// error. A job whose owner went away (served by a release, timed out) is taken over by the next
// waiter without one; unowned, it finishes its attempt, pools the connection, and does not retry
// (the minIdle refill, unowned too, tries again on its next tick).
// Connect attempts share one backoff per pool: after failures every attempt, by any request or
// the minIdle refill, first waits its jittered delay; a success resets it. So a refusing host sees
// at most `size` attempts in flight, each after its delay.
// `resize` (config reload) applies every option to what is already there: a smaller size closes
// idle connections now and retires leased ones on release (connects in flight beyond it land only
// for a waiter); lifetimes are jittered shares of maxLifetime, so a new one applies to open
// connections too; waiters' acquire timeouts count from when they started waiting (one already
// past a shortened limit times out at once); a backoff delay under way is cut to the new maximum.

import { AmbassadorError } from '../errors.ts';
import { FailureBackoff } from '../lib/backoff.ts';
import { spanClock, type Clock, type Timer } from '../lib/clock.ts';
import { Fifo } from '../lib/fifo.ts';
import { poolClosedError, poolTimeoutError, type ConnectionFactory, type DestroyReason, type PoolDeps, type PooledConnection, type PoolEvent, type PoolOptions, type PoolStats } from './pool-types.ts';

export type { ConnectionFactory, DestroyReason, PoolDeps, PooledConnection, PoolEvent, PoolOptions, PoolStats } from './pool-types.ts';


interface Entry<T> {
  readonly conn: T;
  readonly connectedAt: number;
  /** This connection's jittered share of maxLifetime, 0.85-1. */
  readonly lifetimeShare: number;
  state: 'new' | 'idle' | 'active' | 'gone';
  /** clock.now() of the last acquire or release (for an idle one: since when it is idle). */
  usedAt: number;
  dead: boolean; // the factory reported that it died by itself
}

/** Called once: with the connection, or with why there is none (timeout, failed connect, closed). */
export type WaitCallback<T> = (err: unknown, conn: T | null) => void;

/**
 * One wait in a pool's queue, told its outcome once (poolSettled): with the connection, or with
 * why there is none. waitAs() queues the very object it is given, so a caller's subclass that
 * carries what its wait needs is the only object a wait makes (a record of the pool's beside it
 * cost an allocation per wait on the hot path); the fields here are the pool's own.
 */
export abstract class PoolWaiter<T> {
  // The pool's own (set by waitAs): not for the subclass.
  /** When it was queued (the pool's clock). */
  enqueuedAt = 0;
  /** The connect it owns, if any (see pump). */
  job: CreateJob<T> | null = null;
  /** Served or failed: no longer waiting, though maybe still in the queue (see removeWaiter). */
  gone = false;

  abstract poolSettled(err: unknown, conn: T | null): void;
}

/** wait()'s: a PoolWaiter that calls back. */
class CallbackWaiter<T> extends PoolWaiter<T> {
  constructor(private readonly settle: WaitCallback<T>) {
    super();
  }

  poolSettled(err: unknown, conn: T | null): void {
    this.settle(err, conn);
  }
}

/** A connect under way (the pool's; PoolWaiter.job names the one a wait owns). */
export interface CreateJob<T> {
  owner: PoolWaiter<T> | null;
  ownerAttempts: number; // attempts made for the current owner
  sleep: { timer: Timer; until: number; wake: () => void } | null; // pending backoff delay, cut short by close() and resize()
}

const MAINTENANCE_MAX_INTERVAL_MS = 1000;
const MAINTENANCE_MIN_INTERVAL_MS = 10;

export class ConnectionPool<T> {
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly onEvent: ((event: PoolEvent) => void) | undefined;
  private readonly backoff: FailureBackoff;
  /** Oldest first; acquire takes from the end (LIFO), the idle timeout reaps from the start. */
  private readonly idle: Entry<T>[] = [];
  /**
   * Every open connection, idle or leased, by connection: entered once and left once. (A map of
   * the leased ones alone changed on every acquire and release, and its table was shrunk and
   * grown again as the pool emptied and filled, transaction after transaction.)
   */
  private readonly open = new Map<T, Entry<T>>();
  private active = 0;
  private readonly jobs = new Set<CreateJob<T>>();
  /**
   * Oldest first (all sharing one limit, the first to time out). A ring, not an Array: with
   * hundreds of clients waiting, every hand-off takes the head, and Array.shift moves the
   * array's start in the heap each time. Entries may be gone (served out of turn by a connect
   * they owned) until they reach the head; `waiting` counts the others.
   */
  private readonly waiters = new Fifo<PoolWaiter<T>>();
  private waiting = 0;
  /** One timer for the waiters' acquire timeouts: due when the oldest waiter's is. */
  private waitTimer: Timer | null = null;
  private waitTimerDue = Infinity;
  private maintenanceTimer: Timer | null = null;
  private closed = false;
  private readonly counts = { totalCreated: 0, connectAttempts: 0, connectFailures: 0 };
  private lastConnectError: string | null = null;

  constructor(readonly key: string, private options: PoolOptions, private readonly factory: ConnectionFactory<T>, deps: PoolDeps = {}) {
    this.clock = deps.clock ?? spanClock;
    this.random = deps.random ?? Math.random;
    this.onEvent = deps.onEvent;
    this.backoff = new FailureBackoff(options.retry, this.random);
    this.scheduleMaintenance();
    this.refill();
  }

  acquire(): Promise<T> {
    return new Promise<T>((resolve, reject) => this.wait((err, leased) => (leased === null ? reject(err) : resolve(leased))));
  }

  /** waitAs() with a callback. */
  wait(settle: WaitCallback<T>): void {
    this.waitAs(new CallbackWaiter(settle));
  }

  /**
   * acquire() without a promise, for the hot path: `waiter` is told the connection as soon as one
   * is free (synchronously, from whoever released it), or the error. Callers that would rather
   * not run inside another's release defer the work themselves (Pooler's HandOffs). `now` is
   * the pool clock's reading when the caller has just taken one (the wait's start). A PoolWaiter
   * waits once: a told one may still sit in the queue, marked gone, until it reaches the head.
   */
  waitAs(waiter: PoolWaiter<T>, now?: number): void {
    if (this.closed) return waiter.poolSettled(this.closedError(), null);
    const conn = this.tryAcquire();
    if (conn !== null) return waiter.poolSettled(null, conn);
    waiter.enqueuedAt = now ?? this.clock.now();
    waiter.job = null;
    waiter.gone = false;
    this.waiters.push(waiter);
    this.waiting++;
    this.armWaitTimer();
    this.pump();
  }

  /** An idle connection leased at once, or null when acquire() would have to wait (or the pool is closed). */
  tryAcquire(): T | null {
    // Nothing idle (every request that waits asks twice: Pooler.tryAcquireFor, then waitAs): no clock read.
    if (this.closed || this.idle.length === 0) return null;
    const now = this.clock.now();
    const entry = this.takeIdle(now);
    if (entry === null) return null;
    this.move(entry, 'active', undefined, now);
    return entry.conn;
  }

  release(conn: T, outcome: 'reusable' | 'broken'): void {
    const entry = this.open.get(conn);
    if (entry?.state !== 'active') {
      throw new AmbassadorError('INTERNAL', `pool ${this.key}: release of a connection it has not leased (released twice?)`);
    }
    const now = this.clock.now();
    const reason = this.retireReason(entry, outcome, now);
    if (!reason) return this.offer(entry, now);
    this.move(entry, 'gone', reason);
    this.pump();
  }

  stats(): PoolStats {
    const oldest = this.headWaiter();
    return {
      key: this.key,
      size: this.options.size,
      idle: this.idle.length,
      active: this.active,
      connecting: this.jobs.size,
      waiting: this.waiting,
      maxWaitMs: oldest ? this.clock.now() - oldest.enqueuedAt : 0,
      ...this.counts,
      lastConnectError: this.lastConnectError,
    };
  }

  /** Idle connections (some may have died unnoticed). */
  get idleCount(): number {
    return this.idle.length;
  }

  /** Leased connections (a closed pool keeps counting them until they are released). */
  get activeCount(): number {
    return this.active;
  }

  /** close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The open connections, idle and leased, with their times (read-only; for SHOW SERVERS). */
  connections(): PooledConnection<T>[] {
    const open = [...this.idle, ...[...this.open.values()].filter((entry) => entry.state === 'active')];
    return open.map((entry) => ({ conn: entry.conn, state: entry.state === 'active' ? 'active' : 'idle', connectedAt: entry.connectedAt, lastUsedAt: entry.usedAt }));
  }

  /** The host is known to accept connections again (a probe got through): the next connect goes at once. */
  resetBackoff(): void {
    this.backoff.succeed();
  }

  /** Config reload: every option applies to what is open and waiting too; see the file comment. */
  resize(options: PoolOptions): void {
    this.options = options;
    this.backoff.setPolicy(options.retry);
    if (this.closed) return;
    this.retireIdle(this.clock.now());
    this.armWaitTimer(true);
    for (const job of this.jobs) this.shortenSleep(job);
    this.scheduleMaintenance();
    this.pump();
    this.refill();
  }

  /** Rejects waiters with POOL_CLOSED and destroys idle connections now, active ones when released. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.maintenanceTimer) this.clock.clearTimeout(this.maintenanceTimer);
    this.maintenanceTimer = null;
    if (this.waitTimer) this.clock.clearTimeout(this.waitTimer);
    this.waitTimer = null;
    for (let waiter = this.headWaiter(); waiter !== undefined; waiter = this.headWaiter()) {
      this.removeWaiter(waiter);
      waiter.poolSettled(this.closedError(), null);
    }
    while (this.idle[0]) this.move(this.idle[0], 'gone', 'pool-closed');
    for (const job of this.jobs) {
      if (!job.sleep) continue;
      this.clock.clearTimeout(job.sleep.timer);
      job.sleep.wake();
    }
  }

  // ---- states ---------------------------------------------------------------------------------

  private move(entry: Entry<T>, to: 'idle' | 'active', reason?: undefined, now?: number): void;
  private move(entry: Entry<T>, to: 'gone', reason: DestroyReason): void;
  private move(entry: Entry<T>, to: 'idle' | 'active' | 'gone', reason?: DestroyReason, now?: number): void {
    if (entry.state === 'idle') {
      const idle = this.idle;
      if (idle[idle.length - 1] === entry) idle.pop();
      else idle.splice(idle.lastIndexOf(entry), 1);
    } else if (entry.state === 'active') this.active--;
    else if (entry.state === 'new' && to !== 'gone') this.open.set(entry.conn, entry);
    entry.state = to;
    if (to === 'idle') {
      entry.usedAt = now ?? this.clock.now();
      this.idle.push(entry);
    } else if (to === 'active') {
      entry.usedAt = now ?? this.clock.now();
      this.active++;
    } else {
      this.open.delete(entry.conn);
      try {
        this.factory.destroy(entry.conn);
      } catch {
        // destroy is best effort: the connection is out of the pool either way.
      }
      this.emit({ type: 'destroyed', key: this.key, reason: reason ?? 'closed' });
    }
  }

  private total(): number {
    return this.idle.length + this.active + this.jobs.size;
  }

  /** The most recently used idle connection that is still usable; dead or expired ones are destroyed. */
  private takeIdle(now: number): Entry<T> | null {
    for (let entry = this.idle.at(-1); entry; entry = this.idle.at(-1)) {
      const reason = this.unusableReason(entry, now);
      if (!reason) return entry;
      this.move(entry, 'gone', reason);
    }
    return null;
  }

  private unusableReason(entry: Entry<T>, now: number): DestroyReason | null {
    if (entry.dead || !this.factory.isAlive(entry.conn)) return 'closed';
    const lifetime = this.options.maxLifetimeMs;
    if (lifetime > 0 && now >= entry.connectedAt + lifetime * entry.lifetimeShare) return 'lifetime';
    return null;
  }

  private retireReason(entry: Entry<T>, outcome: 'reusable' | 'broken', now: number): DestroyReason | null {
    if (this.closed) return 'pool-closed';
    if (outcome === 'broken') return 'broken';
    const unusable = this.unusableReason(entry, now);
    if (unusable) return unusable;
    return this.total() > this.options.size ? 'resized' : null;
  }

  /** A usable connection is free: the head waiter gets it directly, else it goes idle. */
  private offer(entry: Entry<T>, now = this.clock.now()): void {
    const head = this.headWaiter();
    if (head) this.deliver(head, entry, now);
    else this.move(entry, 'idle', undefined, now);
  }

  private deliver(waiter: PoolWaiter<T>, entry: Entry<T>, now = this.clock.now()): void {
    this.removeWaiter(waiter);
    this.move(entry, 'active', undefined, now);
    waiter.poolSettled(null, entry.conn);
    this.pump();
  }

  // ---- waiters --------------------------------------------------------------------------------

  /** Takes a waiter out of the queue; a job it owned is left for another waiter (see pump). */
  private removeWaiter(waiter: PoolWaiter<T>): void {
    if (waiter.gone) return;
    waiter.gone = true;
    this.waiting--;
    const waiters = this.waiters;
    if (waiters.first === waiter) waiters.shift();
    else if (waiters.length > 2 * this.waiting + 16) this.dropGone();
    if (waiter.job) waiter.job.owner = null;
    waiter.job = null;
    // With nobody waiting the timer stays: it finds no one when it fires and is not armed again.
    // Clearing it here would cost a clearTimeout and a setTimeout each time a busy pool's queue
    // empties and fills again (with 32 clients on 20 connections, most transactions); it is
    // unref'd, so it never keeps the process up.
  }

  /** The oldest waiter still waiting; gone ones ahead of it leave the queue. */
  private headWaiter(): PoolWaiter<T> | undefined {
    const waiters = this.waiters;
    let head = waiters.first;
    while (head !== undefined && head.gone) {
      waiters.shift();
      head = waiters.first;
    }
    return head;
  }

  /** Rebuilds the queue without its gone entries (many were served out of turn behind a long wait). */
  private dropGone(): void {
    const waiters = this.waiters;
    for (let n = waiters.length; n > 0; n--) {
      const waiter = waiters.shift()!;
      if (!waiter.gone) waiters.push(waiter);
    }
  }

  /**
   * Arms the waiters' timer for the oldest waiter's deadline (each counted from when it started
   * waiting), unless it is armed for then already; `again`: the limit changed, arm it anew. A
   * waiter served before its deadline leaves the timer as it is: when it fires it finds the next
   * one not due and is armed for that one (one timer change per timeout period, not per wait).
   */
  private armWaitTimer(again = false): void {
    const head = this.headWaiter();
    const limit = this.options.acquireTimeoutMs;
    const due = head === undefined || limit <= 0 ? Infinity : head.enqueuedAt + limit;
    if (!again && this.waitTimer !== null && this.waitTimerDue <= due) return;
    if (this.waitTimer !== null) this.clock.clearTimeout(this.waitTimer);
    this.waitTimer = null;
    this.waitTimerDue = due;
    if (due === Infinity) return;
    this.waitTimer = this.clock.setTimeout(() => this.timeOutDue(), Math.max(0, due - this.clock.now()));
    this.waitTimer.unref();
  }

  /** Times out every waiter past its deadline, then arms the timer for the next one. */
  private timeOutDue(): void {
    this.waitTimer = null;
    const limit = this.options.acquireTimeoutMs;
    const now = this.clock.now();
    for (;;) {
      const waiter = this.headWaiter();
      if (waiter === undefined || limit <= 0 || waiter.enqueuedAt + limit > now) break;
      this.removeWaiter(waiter);
      const waitedMs = now - waiter.enqueuedAt;
      this.emit({ type: 'timeout', key: this.key, waitMs: waitedMs });
      waiter.poolSettled(this.timeoutError(waitedMs), null);
    }
    this.armWaitTimer(true);
    this.pump();
  }

  /** Gives every waiter without a connect in flight one: an unowned job, or a new one while there is room. */
  private pump(): void {
    if (this.closed) return;
    const waiters = this.waiters;
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters.at(i)!;
      if (waiter.job || waiter.gone) continue;
      const unowned = this.unownedJob();
      if (unowned) {
        unowned.owner = waiter;
        unowned.ownerAttempts = 0;
        waiter.job = unowned;
      } else if (this.total() < this.options.size) {
        this.startJob(waiter);
      } else {
        return;
      }
    }
  }

  // ---- connecting -----------------------------------------------------------------------------

  private unownedJob(): CreateJob<T> | null {
    if (this.jobs.size === 0) return null; // the usual case; iterating an empty Set still makes an iterator
    for (const job of this.jobs) if (job.owner === null) return job;
    return null;
  }

  private startJob(owner: PoolWaiter<T> | null): void {
    const job: CreateJob<T> = { owner, ownerAttempts: 0, sleep: null };
    if (owner) owner.job = job;
    this.jobs.add(job);
    // A rejection here is a bug or a throwing factory callback: the owner learns why.
    this.runJob(job).catch((err: unknown) => this.failJob(job, err));
  }

  private async runJob(job: CreateJob<T>): Promise<void> {
    for (;;) {
      const delay = this.backoff.delay();
      if (delay > 0) await this.sleep(job, delay);
      if (this.closed) return this.endJob(job);
      job.ownerAttempts += 1;
      this.counts.connectAttempts += 1;
      let conn: T;
      try {
        conn = await this.factory.create();
      } catch (err) {
        if (this.connectFailed(job, err)) continue;
        return;
      }
      this.backoff.succeed();
      const owner = job.owner;
      this.endJob(job);
      return this.landConnection(conn, owner);
    }
  }

  private sleep(job: CreateJob<T>, ms: number): Promise<void> {
    return new Promise((wake) => this.sleepUntil(job, this.clock.now() + ms, wake));
  }

  private sleepUntil(job: CreateJob<T>, until: number, wake: () => void): void {
    const timer = this.clock.setTimeout(() => {
      job.sleep = null;
      wake();
    }, until - this.clock.now());
    job.sleep = { timer, until, wake };
  }

  /** A backoff delay longer than the (new) retry.maxDelayMs ends at that maximum from now. */
  private shortenSleep(job: CreateJob<T>): void {
    const sleep = job.sleep;
    const latest = this.clock.now() + this.options.retry.maxDelayMs;
    if (sleep === null || sleep.until <= latest) return;
    this.clock.clearTimeout(sleep.timer);
    this.sleepUntil(job, latest, sleep.wake);
  }

  /** Records a failed attempt; true when the job should try again for its owner. */
  private connectFailed(job: CreateJob<T>, err: unknown): boolean {
    const message = err instanceof Error ? err.message : String(err);
    this.backoff.fail();
    this.counts.connectFailures += 1;
    this.lastConnectError = message;
    this.emit({ type: 'connect-failed', key: this.key, error: message, attempt: job.ownerAttempts });
    const owner = job.owner;
    if (!this.closed && owner && job.ownerAttempts < 1 + this.options.retry.max && this.worthRetrying(err)) return true;
    this.failJob(job, err);
    return false;
  }

  private worthRetrying(err: unknown): boolean {
    try {
      return this.factory.retryable?.(err) ?? true;
    } catch {
      return true; // a classifier's bug must not turn into a stuck job
    }
  }

  /** Ends a job for good: its owner is rejected with the error as thrown (the real connect error). */
  private failJob(job: CreateJob<T>, err: unknown): void {
    const owner = job.owner;
    this.endJob(job);
    if (owner) {
      this.removeWaiter(owner);
      owner.poolSettled(err, null);
    }
    this.pump();
  }

  private endJob(job: CreateJob<T>): void {
    this.jobs.delete(job);
    if (job.owner) job.owner.job = null;
    job.owner = null;
    job.sleep = null;
  }

  private landConnection(conn: T, owner: PoolWaiter<T> | null): void {
    this.counts.totalCreated += 1;
    const now = this.clock.now();
    const entry: Entry<T> = { conn, connectedAt: now, lifetimeShare: 0.85 + 0.15 * this.random(), state: 'new', usedAt: now, dead: false };
    this.emit({ type: 'created', key: this.key });
    if (this.closed) return this.move(entry, 'gone', 'pool-closed');
    this.factory.onClosed(conn, () => this.died(entry));
    if (owner) return this.deliver(owner, entry);
    // Connected for no one in particular after the pool shrank: not kept beyond the new size.
    if (this.waiting === 0 && this.total() >= this.options.size) return this.move(entry, 'gone', 'resized');
    this.offer(entry);
  }

  /** The connection died by itself: removed now when idle, when released when active. */
  private died(entry: Entry<T>): void {
    entry.dead = true;
    if (entry.state === 'idle') this.move(entry, 'gone', 'closed');
  }

  // ---- maintenance ----------------------------------------------------------------------------

  private scheduleMaintenance(): void {
    if (this.maintenanceTimer) this.clock.clearTimeout(this.maintenanceTimer);
    const idleTimeout = this.options.idleTimeoutMs;
    const wanted = idleTimeout > 0 ? Math.min(MAINTENANCE_MAX_INTERVAL_MS, idleTimeout / 2) : MAINTENANCE_MAX_INTERVAL_MS;
    const timer = this.clock.setTimeout(() => this.maintain(), Math.max(MAINTENANCE_MIN_INTERVAL_MS, wanted));
    timer.unref();
    this.maintenanceTimer = timer;
  }

  /** Retires dead, expired, timed-out and (after a resize) surplus idle connections, then refills minIdle. */
  private maintain(): void {
    this.maintenanceTimer = null;
    if (this.closed) return;
    this.retireIdle(this.clock.now());
    this.refill();
    this.scheduleMaintenance();
  }

  /** Idle connections that must go, oldest first: unusable, idle too long, or beyond the size. */
  private retireIdle(now: number): void {
    const { minIdle, idleTimeoutMs } = this.options;
    for (const entry of [...this.idle]) {
      const reason =
        this.unusableReason(entry, now) ??
        (idleTimeoutMs > 0 && this.idle.length > minIdle && now - entry.usedAt >= idleTimeoutMs ? 'idle-timeout' : null) ??
        (this.total() > this.options.size ? 'resized' : null);
      if (reason) this.move(entry, 'gone', reason);
    }
  }

  /** Background connects up to minIdle; they share the backoff and never reject anyone. */
  private refill(): void {
    if (this.closed) return;
    while (this.idle.length + this.jobs.size < this.options.minIdle && this.total() < this.options.size) {
      this.startJob(null);
    }
  }

  // ---- errors and events ----------------------------------------------------------------------

  private timeoutError(waitedMs: number): AmbassadorError {
    const busy = `${this.active} active, ${this.jobs.size} connecting, ${this.waiting} waiting`;
    const failing = this.backoff.failures > 0 ? this.lastConnectError : null;
    return poolTimeoutError(this.key, waitedMs, this.options, busy, failing);
  }

  private closedError(): AmbassadorError {
    return poolClosedError(this.key);
  }

  private emit(event: PoolEvent): void {
    if (!this.onEvent) return;
    try {
      this.onEvent(event);
    } catch {
      // Observers must not break the pool's state.
    }
  }
}
