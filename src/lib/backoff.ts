// Exponential backoff with full jitter, for reconnecting to a host that refuses us.
//
// `backoffDelay` is the pure formula: random() * min(maxDelay, initialDelay * 2^attempt), so
// attempt 0 waits up to initialDelay, and the ceiling doubles until it reaches maxDelay. Full
// jitter spreads many clients' retries over the whole window instead of synchronising them.
// `FailureBackoff` tracks consecutive failures of one target (shared by every caller that
// connects to it): no delay while things work, a growing one after failures, reset by a success.

export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** Delay before retry number `attempt` (0-based). Never NaN or Infinity. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(0, attempt), 1000);
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exponent);
  return random() * Math.max(0, ceiling);
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
