// Cancel keys. Clients receive ambassador-issued (processId, secretKey) pairs in BackendKeyData;
// a CancelRequest carrying a pair is looked up here and, only when the key matches exactly, the
// owning session forwards a cancel to its real server with the server's own pid and key. A
// wrong key cancels nothing and reveals nothing. At most maxInFlight cancels are on their way to
// servers at once (each opens a connection upstream); more are dropped, as a cancel is best effort.

import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  /** Cancels whatever the session's server is running: settles once sent, never rejects; null when there is nothing to cancel. */
  cancelUpstream(): Promise<void> | null;
}

export type CancelOutcome = 'sent' | 'no-match' | 'too-many';

/**
 * What became of cancel requests, as counted: 'sent' reached for the server, 'idle' matched a
 * session that ran nothing on a server (nothing to cancel), and the outcomes that sent nothing.
 */
export const CANCEL_RESULTS = ['sent', 'idle', 'no-match', 'too-many'] as const;
export type CancelResult = (typeof CANCEL_RESULTS)[number];

/** A count of 0 for every result. */
export function noCancelResults(): Record<CancelResult, number> {
  return { sent: 0, idle: 0, 'no-match': 0, 'too-many': 0 };
}

const NOTHING = (): void => {};

interface Entry {
  key: Buffer;
  target: Cancellable;
}

export class CancelRegistry {
  private readonly entries = new Map<number, Entry>();
  private inFlight = 0;
  /** Cancels on their way, by the session they cancel (for SHOW POOLS). */
  private readonly inFlightFor = new Map<Cancellable, number>();
  /** Cancel requests since start, by what became of them. */
  readonly results = noCancelResults();

  constructor(private maxInFlight = Number.POSITIVE_INFINITY) {}

  configure(maxInFlight: number): void {
    this.maxInFlight = maxInFlight;
  }

  /** Issues a fresh pair for a session. */
  register(target: Cancellable): { processId: number; secretKey: number } {
    let processId: number;
    do processId = randomInt(1, 0x7fffffff);
    while (this.entries.has(processId));
    const key = randomBytes(4);
    this.entries.set(processId, { key, target });
    return { processId, secretKey: key.readInt32BE(0) };
  }

  unregister(processId: number): void {
    this.entries.delete(processId);
  }

  /**
   * Cancels what the session owning (processId, key) runs, unless too many cancels are on their
   * way. `landed` runs once a cancel sent ('sent') has reached the server (at once when there was
   * nothing to send it to): the client's cancel connection is closed only then, as Postgres closes
   * it only after signalling the backend, so a client that waits for that close knows its next
   * statement is safe from the cancel.
   */
  cancel(processId: number, key: Buffer, landed: () => void = NOTHING): CancelOutcome {
    const entry = this.entries.get(processId);
    if (!entry || entry.key.length !== key.length || !timingSafeEqual(entry.key, key)) return this.count('no-match');
    if (this.inFlight >= this.maxInFlight) return this.count('too-many');
    const sent = entry.target.cancelUpstream();
    this.results[sent === null ? 'idle' : 'sent']++;
    if (sent !== null) {
      const target = entry.target;
      this.inFlight++;
      this.inFlightFor.set(target, (this.inFlightFor.get(target) ?? 0) + 1);
      // Settled either way (cancelUpstream never rejects, but a close must not hang on it).
      const settled = (): void => {
        this.inFlight--;
        const left = (this.inFlightFor.get(target) ?? 1) - 1;
        if (left > 0) this.inFlightFor.set(target, left);
        else this.inFlightFor.delete(target);
        landed();
      };
      void sent.then(settled, settled);
    } else landed();
    return 'sent';
  }

  private count(outcome: 'no-match' | 'too-many'): CancelOutcome {
    this.results[outcome]++;
    return outcome;
  }

  /** Cancels on their way to servers now. */
  get pending(): number {
    return this.inFlight;
  }

  /** Cancels on their way to the server of the session `target`. */
  pendingFor(target: Cancellable): number {
    return this.inFlightFor.get(target) ?? 0;
  }

  get size(): number {
    return this.entries.size;
  }
}
