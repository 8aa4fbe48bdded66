// What the health loop tells the rest of the ambassador: every change of a host's state, of who
// is the primary, of a circuit breaker and of a host's addresses is one HealthEvent with its
// reason. The monitor logs each event once (logHealthEvent) and passes it on; the pool reacts to
// some (drains a host's pools), HealthCounters counts them for metrics. Nothing here imports a
// metrics library: collectors read the counters.

import type { Logger } from 'pino';
import type { HostView } from '../pool/host-choice.ts';

type Role = HostView['role'];

export type HealthEvent =
  /** failureThreshold consecutive probes failed. */
  | { type: 'host-down'; host: string; reason: string; failures: number }
  | { type: 'host-up'; host: string; reason: string }
  /** The server's answer to pg_is_in_recovery() differs from the role known so far. */
  | { type: 'role-changed'; host: string; from: Role; to: Role; configured: 'auto' | 'primary' | 'replica'; reason: string }
  /** The host known as the primary was lost and no other host is the primary. */
  | { type: 'failover-started'; oldPrimary: string; reason: string }
  /** A primary is known again (the old one back, or another). */
  | { type: 'failover-ended'; oldPrimary: string; newPrimary: string; durationMs: number; reason: string }
  /** Two or more healthy hosts report that they are the primary: writes are refused. */
  | { type: 'split-brain'; hosts: readonly string[]; reason: string }
  | { type: 'split-brain-ended'; primary: string | null; reason: string }
  | { type: 'breaker-opened'; host: string; reason: string; failures: number; retryInMs: number }
  | { type: 'breaker-half-open'; host: string; reason: string }
  | { type: 'breaker-closed'; host: string; reason: string }
  /** The host's name now resolves to other addresses (DNS-based failover). */
  | { type: 'address-changed'; host: string; from: readonly string[]; to: readonly string[]; reason: string };

export type HealthEventType = HealthEvent['type'];

export const HEALTH_EVENT_TYPES: readonly HealthEventType[] = [
  'host-down',
  'host-up',
  'role-changed',
  'failover-started',
  'failover-ended',
  'split-brain',
  'split-brain-ended',
  'breaker-opened',
  'breaker-half-open',
  'breaker-closed',
  'address-changed',
];

/** The host an event is about, for per-host counts (failover events count for the old primary). */
export function eventHost(event: HealthEvent): string | null {
  if ('host' in event) return event.host;
  if ('oldPrimary' in event) return event.oldPrimary;
  return null;
}

/** Counts of health events, in total and per host, for metrics to read. */
export class HealthCounters {
  private readonly totals = new Map<HealthEventType, number>();
  private readonly hosts = new Map<string, Map<HealthEventType, number>>();

  record(event: HealthEvent): void {
    this.totals.set(event.type, (this.totals.get(event.type) ?? 0) + 1);
    const host = eventHost(event);
    if (host === null) return;
    let counts = this.hosts.get(host);
    if (counts === undefined) this.hosts.set(host, (counts = new Map()));
    counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
  }

  /** Events of `type` so far, for one host when given. */
  count(type: HealthEventType, host?: string): number {
    if (host === undefined) return this.totals.get(type) ?? 0;
    return this.hosts.get(host)?.get(type) ?? 0;
  }

  /** Every type (zeros included, so metrics can expose them from the start) and the per-host counts. */
  snapshot(): { total: Record<HealthEventType, number>; byHost: Record<string, Partial<Record<HealthEventType, number>>> } {
    const total = Object.fromEntries(HEALTH_EVENT_TYPES.map((type) => [type, this.count(type)])) as Record<HealthEventType, number>;
    const byHost: Record<string, Partial<Record<HealthEventType, number>>> = {};
    for (const [host, counts] of this.hosts) byHost[host] = Object.fromEntries(counts);
    return { total, byHost };
  }
}

/** Logs an event once, at the level its consequence deserves. */
export function logHealthEvent(log: Logger, event: HealthEvent): void {
  switch (event.type) {
    case 'host-down':
      return log.warn({ event: event.type, host: event.host, failures: event.failures, reason: event.reason }, 'host is down');
    case 'host-up':
      return log.info({ event: event.type, host: event.host, reason: event.reason }, 'host is up again');
    case 'role-changed':
      return logRoleChange(log, event);
    case 'failover-started':
      return log.warn({ event: event.type, oldPrimary: event.oldPrimary, reason: event.reason }, 'failover started: the primary is lost; writes wait for a new one');
    case 'failover-ended':
      return log.info(
        { event: event.type, oldPrimary: event.oldPrimary, newPrimary: event.newPrimary, durationMs: event.durationMs, reason: event.reason },
        `failover ended: ${event.newPrimary} is the primary`,
      );
    case 'split-brain':
      return log.error(
        { event: event.type, hosts: event.hosts, reason: event.reason },
        `split brain: ${event.hosts.join(' and ')} both claim to be the primary; writes are refused until one steps down`,
      );
    case 'split-brain-ended':
      return log.info({ event: event.type, primary: event.primary, reason: event.reason }, 'split brain over: at most one host claims to be the primary');
    case 'breaker-opened':
      return log.warn(
        { event: event.type, host: event.host, failures: event.failures, retryInMs: event.retryInMs, reason: event.reason },
        'circuit breaker opened: no new connections to the host until it recovers',
      );
    case 'breaker-half-open':
      return log.info({ event: event.type, host: event.host, reason: event.reason }, 'circuit breaker half-open: one trial connection allowed');
    case 'breaker-closed':
      return log.info({ event: event.type, host: event.host, reason: event.reason }, 'circuit breaker closed');
    case 'address-changed':
      return log.warn(
        { event: event.type, host: event.host, from: event.from, to: event.to, reason: event.reason },
        'host address changed: its connections are replaced',
      );
  }
}

function logRoleChange(log: Logger, event: Extract<HealthEvent, { type: 'role-changed' }>): void {
  const { host, from, to, configured, reason } = event;
  if (configured !== 'auto' && configured !== to) {
    log.error({ event: event.type, host, configured, observed: to, reason }, 'host role differs from the configured one; routing follows the server');
  } else if (from === 'unknown') {
    log.info({ event: event.type, host, role: to, was: from, reason }, 'host role discovered');
  } else {
    log.warn({ event: event.type, host, role: to, was: from, reason }, 'host role changed');
  }
}
