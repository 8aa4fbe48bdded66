// Who the primary is, round after round, and the failover and split-brain events that follow
// from it. Pure: it reads the hosts after each round and returns the events to publish.
//
// - A failover starts when the host known as the primary is lost (down, or it reports being a
//   replica) and no other host is the primary; it ends when a primary is known again, the old one
//   back or another, with how long it took. A primary replaced within one round (the old one lost
//   and a new one seen together) is a failover that started and ended in that round.
// - Before any primary was seen there is nothing to fail over from: discovering one is not a failover.
// - Split brain (two healthy hosts claiming primary, see claimPrimary) is reported when it begins
//   and when it ends; meanwhile the known primary and any failover under way are left as they are.
// - Only hosts that are up count here (unlike routing, which tries every host when all are down),
//   so losing every host starts a failover.

import { claimPrimary, type HostView } from '../pool/host-choice.ts';
import type { HealthEvent } from './events.ts';

export interface TrackedHost extends HostView {
  lastError: string | null;
}

export class PrimaryTracker {
  private known: string | null = null;
  private failover: { from: string; since: number } | null = null;
  private splitBrain: readonly string[] | null = null;

  /** The host last known to be the primary (it may be lost while a failover is under way). */
  get primary(): string | null {
    return this.known;
  }

  /** clock.now() when the failover under way started, or null. */
  get failoverSince(): number | null {
    return this.failover?.since ?? null;
  }

  observe(hosts: readonly TrackedHost[], now: number): HealthEvent[] {
    const claim = claimPrimary(hosts.filter((host) => host.up));
    if (claim.kind === 'two') return this.twoPrimaries(claim.hosts.map((host) => host.id));
    const events: HealthEvent[] = [];
    if (this.splitBrain !== null) {
      this.splitBrain = null;
      const primary = claim.kind === 'one' ? claim.host.id : null;
      events.push({ type: 'split-brain-ended', primary, reason: primary ? `only ${primary} claims to be the primary` : 'no host claims to be the primary' });
    }
    if (claim.kind === 'one') return [...events, ...this.primaryIs(claim.host.id, now)];
    const lost = this.known === null ? undefined : hosts.find((host) => host.id === this.known);
    if (lost !== undefined && this.failover === null) {
      this.failover = { from: lost.id, since: now };
      events.push({ type: 'failover-started', oldPrimary: lost.id, reason: lostReason(lost) });
    }
    return events;
  }

  private primaryIs(id: string, now: number): HealthEvent[] {
    const previous = this.known;
    this.known = id;
    if (this.failover !== null) {
      const { from, since } = this.failover;
      this.failover = null;
      const reason = from === id ? `${id} answers as the primary again` : `${id} answers as the primary`;
      return [{ type: 'failover-ended', oldPrimary: from, newPrimary: id, durationMs: now - since, reason }];
    }
    if (previous === null || previous === id) return [];
    return [
      { type: 'failover-started', oldPrimary: previous, reason: `${id} answers as the primary instead of ${previous}` },
      { type: 'failover-ended', oldPrimary: previous, newPrimary: id, durationMs: 0, reason: `${id} answers as the primary` },
    ];
  }

  private twoPrimaries(ids: readonly string[]): HealthEvent[] {
    const sorted = [...ids].sort();
    if (this.splitBrain !== null && this.splitBrain.join() === sorted.join()) return [];
    this.splitBrain = sorted;
    return [{ type: 'split-brain', hosts: sorted, reason: `${sorted.join(' and ')} all report pg_is_in_recovery() = false` }];
  }
}

function lostReason(host: TrackedHost): string {
  if (!host.up) return `${host.id} is down: ${host.lastError ?? 'probes fail'}`;
  if (host.role === 'replica') return `${host.id} reports being a replica now`;
  return `${host.id} no longer answers as the primary`;
}
