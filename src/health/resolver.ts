// Re-resolving upstream host names, so a DNS-based failover (a cloud endpoint whose name now
// points at another server) is noticed within one health interval. Connections already open
// keep talking to the old address; the monitor reports the change so the pool replaces them.
//
// Only names are resolved: IP literals cannot change, and a host starting with '/' is a Unix
// socket directory (as in libpq). Addresses are compared as sorted sets, so a resolver that
// rotates its answer does not look like a change.

import dns from 'node:dns';
import net from 'node:net';
import type { Clock, Timer } from '../lib/clock.ts';

/** Every address a host name resolves to now; rejects when it does not resolve. */
export type Resolve = (host: string) => Promise<string[]>;

/** The system resolver (getaddrinfo, as connects use), all addresses. */
export const lookupAll: Resolve = async (host) => (await dns.promises.lookup(host, { all: true })).map((entry) => entry.address);

/** Whether `host` is a name worth re-resolving. */
export function isHostName(host: string): boolean {
  return !host.startsWith('/') && net.isIP(host) === 0;
}

export interface AddressChange {
  from: readonly string[];
  to: readonly string[];
}

/** The last addresses of each host (by id), and the lookups that refresh them. */
export class AddressBook {
  private readonly known = new Map<string, readonly string[]>();

  constructor(
    private readonly resolve: Resolve,
    private readonly clock: Clock,
  ) {}

  /** The addresses found by the last successful lookup of `id`, if any. */
  addresses(id: string): readonly string[] | undefined {
    return this.known.get(id);
  }

  /**
   * Looks `name` up again: the change since the last successful lookup of `id`, or null (the
   * first lookup only sets the baseline). Rejects when the lookup fails or takes over timeoutMs;
   * the last known addresses are kept.
   */
  async refresh(id: string, name: string, timeoutMs: number): Promise<AddressChange | null> {
    const found = await this.lookup(name, timeoutMs);
    const to = [...new Set(found)].sort();
    if (to.length === 0) throw new Error(`${name} resolved to no address`);
    const from = this.known.get(id);
    this.known.set(id, to);
    if (from === undefined || sameList(from, to)) return null;
    return { from, to };
  }

  private lookup(name: string, timeoutMs: number): Promise<string[]> {
    let timer: Timer | null = null;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(() => reject(new Error(`resolving ${name} took longer than ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
    });
    const lookup = this.resolve(name).catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      throw new Error(`could not resolve ${name}: ${code ?? (err instanceof Error ? err.message : String(err))}`, { cause: err });
    });
    return Promise.race([lookup, timeout]).finally(() => {
      if (timer) this.clock.clearTimeout(timer);
    });
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
