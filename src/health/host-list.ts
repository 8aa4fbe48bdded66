// The health snapshot's hosts and how a new host list (a config reload) is laid over it. Pure:
// no timers, no probes; the monitor owns the array and swaps it in one synchronous step.
//
// - A host is identified by "host:port". One that stays keeps its HostState object (routing,
//   pools and breakers hold it), its health history and its learned role; its configured role
//   and weight are updated in place.
// - A host's role is the configured one ('auto' is 'unknown') until a probe tells its real one
//   (learned): with roles probed, a learned role stands whatever the configuration now says.
// - Without role probes (a single host) the role is the configured one, which the pool sets to
//   primary. Switching probes off forgets what probes said about health (up, failures, lag):
//   nothing would update it any more. Switching them on starts the role from the configuration.
// - A configured role never contradicts a probe (see unclaimConfiguredPrimaries).

import type { HostView } from '../pool/host-choice.ts';
import type { HostEntry } from '../pool/server-pool.ts';
import type { BreakerState } from './circuit-breaker.ts';

export interface HostState extends HostView {
  readonly host: string;
  readonly port: number;
  /** As configured (a config reload may change it). */
  configuredRole: HostEntry['role'];
  /** Consecutive failed probes. */
  failures: number;
  lastError: string | null;
  /** The WAL position last reported (current for a primary, replayed for a replica). */
  lsn: bigint | undefined;
  /** clock.now() of the last completed probe, successful or not. */
  probedAt: number | null;
  breaker: BreakerState;
  /** Consecutive pool connects that could not reach the host (kept by the pool). */
  connectFailures: number;
  /** What the host's name resolved to at the last successful lookup; null for IP literals and sockets. */
  addresses: readonly string[] | null;
}

export function hostId(entry: { host: string; port: number }): string {
  return `${entry.host}:${entry.port}`;
}

function configuredRole(role: HostEntry['role']): HostState['role'] {
  return role === 'auto' ? 'unknown' : role;
}

export function newHostState(entry: HostEntry): HostState {
  return {
    id: hostId(entry),
    host: entry.host,
    port: entry.port,
    configuredRole: entry.role,
    role: configuredRole(entry.role),
    up: true,
    weight: entry.weight ?? 1,
    activeConnections: 0,
    failures: 0,
    lastError: null,
    lsn: undefined,
    probedAt: null,
    breaker: 'closed',
    connectFailures: 0,
    addresses: null,
  };
}

export interface HostListChange {
  /** The new list, in configuration order. */
  hosts: HostState[];
  added: HostState[];
  removed: HostState[];
}

export interface ProbeModes {
  /** Roles were probed before the change. */
  before: boolean;
  /** Roles are probed after it. */
  after: boolean;
  /** Whether a probe has told this host's role. */
  learned(host: HostState): boolean;
}

/** Lays `entries` over `current`: kept hosts updated in place (see the file comment), new ones created. */
export function nextHostList(current: readonly HostState[], entries: readonly HostEntry[], modes: ProbeModes): HostListChange {
  const byId = new Map(current.map((host) => [host.id, host]));
  const hosts: HostState[] = [];
  const added: HostState[] = [];
  for (const entry of entries) {
    const kept = byId.get(hostId(entry));
    if (kept === undefined) {
      const fresh = newHostState(entry);
      hosts.push(fresh);
      added.push(fresh);
      continue;
    }
    byId.delete(kept.id);
    updateHost(kept, entry, modes);
    hosts.push(kept);
  }
  if (modes.after) unclaimConfiguredPrimaries(hosts, modes);
  return { hosts, added, removed: [...byId.values()] };
}

/**
 * A configured role never contradicts a probe: while a host is known by probe to be the primary,
 * a host merely configured as primary (added, or not probed yet) is unknown until its own probe,
 * so routing never sees two primaries (split brain: writes refused) because of a reload.
 */
function unclaimConfiguredPrimaries(hosts: readonly HostState[], modes: ProbeModes): void {
  if (!hosts.some((host) => host.role === 'primary' && modes.learned(host))) return;
  for (const host of hosts) if (host.role === 'primary' && !modes.learned(host)) host.role = 'unknown';
}

function updateHost(host: HostState, entry: HostEntry, modes: ProbeModes): void {
  host.configuredRole = entry.role;
  host.weight = entry.weight ?? 1;
  if (!modes.after) {
    host.role = configuredRole(entry.role);
    if (modes.before) forgetProbedHealth(host);
    return;
  }
  if (!modes.before || !modes.learned(host)) host.role = configuredRole(entry.role);
}

function forgetProbedHealth(host: HostState): void {
  host.up = true;
  host.failures = 0;
  host.lagBytes = undefined;
  host.lagMs = undefined;
  host.replayLsn = undefined;
}
