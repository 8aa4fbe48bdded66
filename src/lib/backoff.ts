// Exponential backoff with equal jitter, for reconnecting to a host that refuses us.
//
// `backoffDelay` is the pure formula: with c = min(maxDelay, initialDelay * 2^attempt), the delay
// is uniform in [c/2, c]. So attempt 0 waits between initialDelay/2 and initialDelay, and while
// the ceiling doubles each delay is at least the largest the previous attempt could have drawn:
// the spacing between attempts never shrinks until it reaches maxDelay (then it stays in
// [maxDelay/2, maxDelay]). Full jitter ([0, c]) spreads retries wider but can retry at once after
// many failures, which looks like hammering from the host's side; half the window is enough to
// keep many clients from synchronising.
// `FailureBackoff` tracks consecutive failures of one target (shared by every caller that
// connects to it): no delay while things work, a growing one after failures, reset by a success.

export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** Delay before retry number `attempt` (0-based), uniform in [c/2, c]. Never NaN or Infinity. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(0, attempt), 1000);
  const ceiling = Math.max(0, Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exponent));
  return ceiling / 2 + (random() * ceiling) / 2;
}

export class FailureBackoff {
  private consecutiveFailures = 0;

  constructor(private policy: BackoffPolicy, private readonly random: () => number = Math.random) {}

  /** Consecutive failures since the last success. */
  get failures(): number {
    return this.consecutiveFailures;
  }

  /** How long the next attempt should wait: 0 after a success, jittered and growing after failures. */
  delay(): number {
    if (this.consecutiveFailures === 0) return 0;
    return backoffDelay(this.consecutiveFailures - 1, this.policy, this.random);
  }

  fail(): void {
    this.consecutiveFailures += 1;
  }

  succeed(): void {
    this.consecutiveFailures = 0;
  }

  /** New limits (config reload); the failure count is kept. */
  setPolicy(policy: BackoffPolicy): void {
    this.policy = policy;
  }
}
