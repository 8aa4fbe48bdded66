// The credential cache: one entry per login (user@host:port) holding the secret new server
// connections use. It decides when the provider fetches:
// - first use (the only time a login waits on a fetch, besides an expired secret);
// - ahead of expiry: at expiry minus the provider's margin, or at 80% of the lifetime when the
//   margin would eat most of it; failed refreshes retry with backoff and keep the last good value;
// - when the source changed (a watched file) or on reload (SIGHUP, POST /reload): every entry;
// - after the server rejected a login (28P01/28000): one forced fetch, and the connection retries
//   once with whatever differs from the rejected secret: the fresh value, else the value it
//   replaced (the file was rewritten before ALTER ROLE ran), else, for sources ops rotate by hand,
//   the first change seen before the connect deadline (ALTER ROLE ran before the file was rewritten).
// Established connections never see any of this: only logins read the cache.

import { AmbassadorError } from '../errors.ts';
import { systemClock, type Clock, type Timer } from '../lib/clock.ts';
import type { CredentialProvider, LoginTarget, Secret } from './provider.ts';

/** The secret one login attempt used; the connection reports back whether the server took it. */
export interface SecretLease {
  readonly password: string;
  readonly expiresAt: Date | undefined;
  readonly fetchedAt: number;
  /** A server accepted it at least once. */
  accepted: boolean;
}

export type RefreshReason = 'first-use' | 'expired' | 'ahead-of-expiry' | 'retry' | 'source-changed' | 'reload' | 'rejected';

export type CredentialEvent =
  | { type: 'credential-refreshed'; provider: string; login: string; reason: RefreshReason; changed: boolean; expiresAt: Date | undefined }
  | { type: 'credential-refresh-failed'; provider: string; login: string; reason: RefreshReason; error: string; lastGoodUntil: Date | undefined | null }
  | { type: 'credential-rejected'; provider: string; login: string; retry: 'fresh' | 'previous' | 'changed' | 'none' };

export interface CredentialEntrySnapshot {
  provider: string;
  login: string;
  fetchedAt: Date | null;
  expiresAt: Date | undefined;
  consecutiveFailures: number;
  lastError: string | null;
}

export interface CredentialCacheOptions {
  clock?: Clock;
  onEvent?: (event: CredentialEvent) => void;
  /** Least time between two fetches for one login, except on reload and source changes (ms; default 1000). */
  minIntervalMs?: number;
  /** How often to look again for a rotated secret while a rejected login waits (ms; default 250). */
  rotationPollMs?: number;
  /** After a wait for a rotated secret found none, later rejections of that secret fail at once for this long (ms; default 5000). */
  rotationCooldownMs?: number;
  /** An entry nobody used for this long is dropped: no more refreshes ahead or on reload (ms; default one hour). */
  idleAfterMs?: number;
}

/**
 * A secret this close to expiry is treated as expired: a login started with it might not finish
 * in time. A tenth of the lifetime for short-lived secrets, so the refresh at 80% comes first.
 */
const EXPIRY_SAFETY_MS = 1000;
const safetyMs = (lifetimeMs: number): number => Math.min(EXPIRY_SAFETY_MS, Math.max(0, lifetimeMs) / 10);
const MAX_RETRY_DELAY_MS = 30_000;

interface Entry {
  readonly key: string;
  readonly login: LoginTarget;
  current: SecretLease | null;
  /** What `current` replaced, while `current` has not yet been accepted by a server. */
  previous: SecretLease | null;
  inflight: Promise<SecretLease> | null;
  /** A rejected login waiting for the source to change (shared by concurrent rejections). */
  waiting: Promise<SecretLease | null> | null;
  /** The latest deadline among the rejections sharing `waiting`. */
  waitUntil: number;
  timer: Timer | null;
  lastFetchAt: number;
  lastUsedAt: number;
  failures: number;
  lastError: string | null;
  /** The rejected password a wait found unchanged, and until when that answer holds. */
  unchanged: { password: string; until: number } | null;
}

export class CredentialCache {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  private readonly minIntervalMs: number;
  private readonly rotationPollMs: number;
  private readonly rotationCooldownMs: number;
  private readonly idleAfterMs: number;
  private readonly stopWatching: (() => void) | null;
  private closed = false;

  constructor(
    readonly provider: CredentialProvider,
    private readonly options: CredentialCacheOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.minIntervalMs = options.minIntervalMs ?? 1000;
    this.rotationPollMs = options.rotationPollMs ?? 250;
    this.rotationCooldownMs = options.rotationCooldownMs ?? 5000;
    this.idleAfterMs = options.idleAfterMs ?? 3_600_000;
    this.stopWatching = provider.watch ? provider.watch(() => void this.refreshAll('source-changed')) : null;
  }

  /** The user name the server sees (GCP trims service account emails). */
  loginUser(user: string): string {
    return this.provider.loginUser ? this.provider.loginUser(user) : user;
  }

  /** The secret for a new login: the cached one while valid, else a fetch (which may throw). */
  async get(login: LoginTarget): Promise<SecretLease> {
    const entry = this.entry(login);
    entry.lastUsedAt = this.clock.now();
    const current = entry.current;
    if (current && !this.expired(current)) return current;
    return this.refresh(entry, current ? 'expired' : 'first-use');
  }

  /** A server accepted `lease`: the value it replaced is no longer needed. */
  accepted(login: LoginTarget, lease: SecretLease): void {
    lease.accepted = true;
    const entry = this.entries.get(keyOf(login));
    if (entry && entry.current?.password === lease.password) entry.previous = null;
  }

  /**
   * A server rejected `lease` (28P01/28000). Returns the secret to retry with once, or null when
   * nothing differs from the rejected one within `waitMs` from now (0: do not wait for a change,
   * as when the refusal may not be about the password at all: 28000 also means no pg_hba entry).
   * A span, not a deadline: the caller's clock need not be this cache's (the pool measures by
   * spanClock, expiry times here go by the wall clock).
   */
  async rejected(login: LoginTarget, lease: SecretLease, waitMs: number): Promise<SecretLease | null> {
    const deadline = waitMs > 0 ? this.clock.now() + waitMs : 0;
    const entry = this.entry(login);
    const differs = (candidate: SecretLease | null): candidate is SecretLease =>
      candidate !== null && candidate.password !== lease.password && !this.expired(candidate);
    const answer = (retry: 'fresh' | 'previous' | 'changed' | 'none', value: SecretLease | null): SecretLease | null => {
      this.emit({ type: 'credential-rejected', provider: this.provider.kind, login: entry.key, retry });
      return value;
    };
    if (differs(entry.current)) return answer('fresh', entry.current);
    // One forced fetch, shared with concurrent rejections and rate-limited.
    if (this.clock.now() - entry.lastFetchAt >= this.minIntervalMs || entry.inflight) {
      await this.refresh(entry, 'rejected').catch(() => undefined);
    }
    if (differs(entry.current)) return answer('fresh', entry.current);
    if (differs(entry.previous)) return answer('previous', entry.previous);
    // Waiting is for a rotation: a secret that worked until now and a source that ops update by
    // hand. A secret that never worked (a typo, a role that does not exist) fails at once.
    if (!this.provider.rotates || !lease.accepted || deadline <= this.clock.now()) return answer('none', null);
    const changed = await this.awaitChange(entry, lease.password, deadline);
    return answer(changed ? 'changed' : 'none', changed);
  }

  /** Fetches every login's secret now (SIGHUP, POST /reload, a watched source changed). */
  async refreshAll(reason: RefreshReason): Promise<{ refreshed: number; failed: number }> {
    const live = [...this.entries.values()].filter((entry) => !this.dropIfIdle(entry));
    await Promise.allSettled(live.map((entry) => this.refresh(entry, reason)));
    // A failed fetch that kept the last good secret resolves too: the entry's error tells.
    const failed = live.filter((entry) => entry.lastError !== null).length;
    return { refreshed: live.length - failed, failed };
  }

  snapshot(): CredentialEntrySnapshot[] {
    return [...this.entries.values()].map((entry) => ({
      provider: this.provider.kind,
      login: entry.key,
      fetchedAt: entry.current ? new Date(entry.current.fetchedAt) : null,
      expiresAt: entry.current?.expiresAt,
      consecutiveFailures: entry.failures,
      lastError: entry.lastError,
    }));
  }

  close(): void {
    this.closed = true;
    this.stopWatching?.();
    for (const entry of this.entries.values()) if (entry.timer) this.clock.clearTimeout(entry.timer);
  }

  private entry(login: LoginTarget): Entry {
    const key = keyOf(login);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = {
        key, login: { host: login.host, port: login.port, user: login.user },
        current: null, previous: null, inflight: null, waiting: null, waitUntil: 0, timer: null,
        lastFetchAt: Number.NEGATIVE_INFINITY, lastUsedAt: this.clock.now(), failures: 0, lastError: null, unchanged: null,
      };
      this.entries.set(key, entry);
    }
    return entry;
  }

  /** Nobody logged in with this entry for a long while: forget it (the next login fetches anew). */
  private dropIfIdle(entry: Entry): boolean {
    if (this.clock.now() - entry.lastUsedAt <= this.idleAfterMs || entry.waiting || entry.inflight) return false;
    if (entry.timer) this.clock.clearTimeout(entry.timer);
    entry.timer = null;
    this.entries.delete(entry.key);
    return true;
  }

  private expired(lease: SecretLease): boolean {
    if (lease.expiresAt === undefined) return false;
    const expiresAt = lease.expiresAt.getTime();
    return expiresAt - safetyMs(expiresAt - lease.fetchedAt) <= this.clock.now();
  }

  /**
   * One fetch per entry at a time; concurrent callers share it. A reload or a source change
   * that finds a fetch in flight fetches again after it: that one may have read the old value.
   */
  private refresh(entry: Entry, reason: RefreshReason): Promise<SecretLease> {
    const earlier = entry.inflight;
    if (earlier && reason !== 'reload' && reason !== 'source-changed') return earlier;
    const next = (earlier ? earlier.catch(() => undefined) : Promise.resolve()).then(() => this.fetch(entry, reason));
    const tracked: Promise<SecretLease> = next.finally(() => {
      if (entry.inflight === tracked) entry.inflight = null;
    });
    entry.inflight = tracked;
    return tracked;
  }

  private async fetch(entry: Entry, reason: RefreshReason): Promise<SecretLease> {
    entry.lastFetchAt = this.clock.now();
    let secret: Secret;
    try {
      secret = await this.provider.fetch(entry.login);
      if (secret.expiresAt && secret.expiresAt.getTime() - EXPIRY_SAFETY_MS / 10 <= this.clock.now()) {
        throw new AmbassadorError('CREDENTIALS_UNAVAILABLE', `the ${this.provider.kind} provider returned a secret that expires at ${secret.expiresAt.toISOString()}, too soon to use`);
      }
    } catch (err) {
      entry.failures++;
      entry.lastError = err instanceof Error ? err.message : String(err);
      const lastGood = entry.current && !this.expired(entry.current) ? entry.current : null;
      this.emit({
        type: 'credential-refresh-failed', provider: this.provider.kind, login: entry.key, reason,
        error: entry.lastError, lastGoodUntil: lastGood ? lastGood.expiresAt : null,
      });
      if (lastGood?.expiresAt) this.schedule(entry, Math.min(MAX_RETRY_DELAY_MS, this.minIntervalMs * 2 ** (entry.failures - 1)), 'retry');
      if (lastGood) return lastGood;
      throw err instanceof AmbassadorError ? err : new AmbassadorError('CREDENTIALS_UNAVAILABLE', `${this.provider.kind} credentials: ${entry.lastError}`);
    }
    return this.install(entry, secret, reason);
  }

  private install(entry: Entry, secret: Secret, reason: RefreshReason): SecretLease {
    const before = entry.current;
    const changed = before === null || before.password !== secret.password;
    const lease: SecretLease = { password: secret.password, expiresAt: secret.expiresAt, fetchedAt: this.clock.now(), accepted: before !== null && !changed && before.accepted };
    // Keep the value being replaced until a server accepts the new one; a value that was never
    // accepted is no fallback, so an older accepted one stays in its place.
    if (changed && before && (before.accepted || !entry.previous)) entry.previous = before;
    if (changed) entry.unchanged = null;
    entry.current = lease;
    entry.failures = 0;
    entry.lastError = null;
    this.emit({ type: 'credential-refreshed', provider: this.provider.kind, login: entry.key, reason, changed, expiresAt: secret.expiresAt });
    if (secret.expiresAt) this.schedule(entry, this.refreshDelay(lease), 'ahead-of-expiry');
    return lease;
  }

  /** Expiry minus the margin; at 80% of the lifetime when the margin would leave less than half of it. */
  private refreshDelay(lease: SecretLease): number {
    const expiresAt = lease.expiresAt!.getTime();
    const lifetime = expiresAt - lease.fetchedAt;
    const margin = this.provider.refreshMarginMs;
    let at = margin === undefined ? Number.NaN : expiresAt - margin;
    if (!(at >= lease.fetchedAt + lifetime / 2)) at = lease.fetchedAt + lifetime * 0.8;
    return Math.max(this.minIntervalMs, at - this.clock.now());
  }

  private schedule(entry: Entry, delayMs: number, reason: RefreshReason): void {
    if (this.closed) return;
    if (entry.timer) this.clock.clearTimeout(entry.timer);
    entry.timer = this.clock.setTimeout(() => {
      entry.timer = null;
      if (this.dropIfIdle(entry)) return;
      void this.refresh(entry, reason).catch(() => undefined);
    }, delayMs);
    entry.timer.unref();
  }

  /**
   * Polls the source for a value other than `rejected` until `deadline`. Concurrent rejections
   * share one poll, which runs until the latest of their deadlines; each caller stops at its own.
   */
  private async awaitChange(entry: Entry, rejected: string, deadline: number): Promise<SecretLease | null> {
    const now = this.clock.now();
    if (entry.unchanged && entry.unchanged.password === rejected && entry.unchanged.until > now) return null;
    entry.waitUntil = Math.max(entry.waitUntil, deadline);
    entry.waiting ??= (async () => {
      while (this.clock.now() + this.rotationPollMs <= entry.waitUntil && !this.closed) {
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.rotationPollMs));
        if (entry.current && entry.current.password !== rejected) return entry.current;
        const fresh = await this.refresh(entry, 'rejected').catch(() => null);
        if (fresh && fresh.password !== rejected) return fresh;
      }
      entry.unchanged = { password: rejected, until: this.clock.now() + this.rotationCooldownMs };
      return null;
    })().finally(() => {
      entry.waiting = null;
      entry.waitUntil = 0;
    });
    let timer: Timer | undefined;
    const own = new Promise<null>((resolve) => (timer = this.clock.setTimeout(() => resolve(null), Math.max(0, deadline - now))));
    try {
      return await Promise.race([entry.waiting, own]);
    } finally {
      this.clock.clearTimeout(timer!);
    }
  }

  private emit(event: CredentialEvent): void {
    this.options.onEvent?.(event);
  }
}

function keyOf(login: LoginTarget): string {
  return `${login.user}@${login.host.includes(':') ? `[${login.host}]` : login.host}:${login.port}`;
}
