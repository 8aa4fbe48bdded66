// Where sessions get server connections: the interface the frontend depends on (implemented by
// pooler.ts) and the policy that chooses a host, kept apart from the pool mechanics.

import type { BackendConnection } from '../backend/connection.ts';
import type { UpstreamTarget } from '../backend/connector.ts';

export interface ServerRequest {
  user: string;
  database: string;
  /** Startup parameters carried from the client. */
  params: ReadonlyMap<string, string>;
}

export type ReleaseOutcome = 'reusable' | 'broken';

export interface ServerPool {
  acquire(request: ServerRequest): Promise<BackendConnection>;
  release(connection: BackendConnection, outcome: ReleaseOutcome): void;
  /** Closes every connection this pool holds. */
  close(): Promise<void>;
}

export interface HostEntry extends UpstreamTarget {
  role: 'auto' | 'primary' | 'replica';
}

/** Policy: the host a session-mode client is sent to (first declared primary, else first host). */
export function choosePrimary(hosts: readonly HostEntry[]): HostEntry {
  const chosen = hosts.find((h) => h.role === 'primary') ?? hosts.find((h) => h.role === 'auto') ?? hosts[0];
  if (!chosen) throw new Error('no upstream hosts configured');
  return chosen;
}
