// Cancel keys. Clients receive ambassador-issued (processId, secretKey) pairs in BackendKeyData;
// a CancelRequest carrying a pair is looked up here and, only when the key matches exactly, the
// owning session forwards a cancel to its real server with the server's own pid and key. A
// wrong key cancels nothing and reveals nothing.

import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface Cancellable {
  /** Cancels whatever the session's server is running; never throws. */
  cancelUpstream(): void;
}

interface Entry {
  key: Buffer;
  target: Cancellable;
}

export class CancelRegistry {
  private readonly entries = new Map<number, Entry>();

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

  /** Cancels the session owning (processId, key); returns whether one matched. */
  cancel(processId: number, key: Buffer): boolean {
    const entry = this.entries.get(processId);
    if (!entry || entry.key.length !== key.length || !timingSafeEqual(entry.key, key)) return false;
    entry.target.cancelUpstream();
    return true;
  }

  get size(): number {
    return this.entries.size;
  }
}
