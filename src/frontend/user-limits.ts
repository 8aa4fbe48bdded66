// Limits that apply per client user: how many connections a user may hold
// (listen.maxClientConnectionsPerUser, SQLSTATE 53300 past it) and how fast a user may start
// transactions (listen.rateLimit: a token bucket; a transaction without a token waits for its
// turn up to maxWait, then fails with 53400).
//
// A user's entry lives while the user has logged-in clients, so names a trust login makes up do
// not pile up. The bucket hands out turns in order: a wait reserves its token (the bucket goes
// negative), so a later transaction waits behind an earlier one instead of racing it.

import { AmbassadorError } from '../errors.ts';

export interface UserLimitSettings {
  /** 0: no per-user connection limit. */
  maxConnections: number;
  /** 0: no rate limit. */
  transactionsPerSecond: number;
  /** Bucket size; 0 means one second's worth of transactions. */
  burst: number;
  maxWaitMs: number;
}

/** take() found no turn within maxWait: the transaction fails, nothing was reserved. */
export const NO_TURN = -1;

/** The error a transaction gets when its user's rate limit had no turn for it in time. */
export function rateLimited(slot: UserSlot): AmbassadorError {
  return new AmbassadorError('RATE_LIMITED', `too many transactions for role "${slot.user}": rate limit exceeded`, {
    hint: 'listen.rateLimit limits how fast each user may start transactions; retry later.',
  });
}

class UserEntry {
  connections = 0;
  tokens = Number.NaN;
  stamp = 0;
}

/** One logged-in client's hold on its user's entry. */
export interface UserSlot {
  readonly user: string;
  /** Milliseconds until a new transaction may start (0: now), or NO_TURN. */
  turn(): number;
  /** Whether transactions are rate limited at all (turn() is not worth calling otherwise). */
  readonly limited: boolean;
  release(): void;
}

export class UserLimits {
  private readonly users = new Map<string, UserEntry>();

  constructor(
    private settings: UserLimitSettings,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A reload: applies to connections made from now on and to the next transaction of everyone. */
  configure(settings: UserLimitSettings): void {
    this.settings = settings;
  }

  /** Logged-in clients `user` holds now. */
  connections(user: string): number {
    return this.users.get(user)?.connections ?? 0;
  }

  /** Counts a logged-in client of `user`; null when the user already holds its maximum. */
  admit(user: string): UserSlot | null {
    let entry = this.users.get(user);
    const max = this.settings.maxConnections;
    if (max > 0 && entry !== undefined && entry.connections >= max) return null;
    if (entry === undefined) {
      entry = new UserEntry();
      this.users.set(user, entry);
    }
    entry.connections++;
    return new Slot(this, user, entry);
  }

  /** Whether transactions are rate limited now. */
  get rateLimited(): boolean {
    return this.settings.transactionsPerSecond > 0;
  }

  /** @internal (Slot) */
  leave(user: string, entry: UserEntry): void {
    if (--entry.connections === 0 && this.users.get(user) === entry) this.users.delete(user);
  }

  /** @internal (Slot): milliseconds until the entry's next transaction may start, or NO_TURN. */
  take(entry: UserEntry): number {
    const { transactionsPerSecond, burst, maxWaitMs } = this.settings;
    if (transactionsPerSecond <= 0) return 0;
    const perMs = transactionsPerSecond / 1000;
    const capacity = burst > 0 ? burst : transactionsPerSecond;
    const now = this.now();
    entry.tokens = Number.isNaN(entry.tokens) ? capacity : Math.min(capacity, entry.tokens + (now - entry.stamp) * perMs);
    entry.stamp = now;
    if (entry.tokens >= 1) {
      entry.tokens -= 1;
      return 0;
    }
    const waitMs = (1 - entry.tokens) / perMs;
    if (waitMs > maxWaitMs) return NO_TURN;
    entry.tokens -= 1;
    return Math.ceil(waitMs);
  }
}

class Slot implements UserSlot {
  private released = false;

  constructor(
    private readonly limits: UserLimits,
    readonly user: string,
    private readonly entry: UserEntry,
  ) {}

  get limited(): boolean {
    return this.limits.rateLimited;
  }

  turn(): number {
    return this.limits.take(this.entry);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.limits.leave(this.user, this.entry);
  }
}
