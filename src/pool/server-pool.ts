// Where sessions get server connections: the interface the frontend depends on (implemented by
// pooler.ts), kept apart from the pool mechanics and from the host-choice policy (host-choice.ts).

import type { BackendConnection } from '../backend/connection.ts';
import type { UpstreamTarget } from '../backend/connector.ts';
import type { Choice, HostView } from './host-choice.ts';

export interface ServerRequest {
  user: string;
  database: string;
  /** Startup parameters carried from the client. */
  params: ReadonlyMap<string, string>;
}

/** What a request needs from a host: the primary, or a host that may serve a read. */
export interface RouteRequest {
  kind: 'write' | 'read';
  /** Reads only: the replica must have replayed WAL up to here (read-your-writes). */
  minLsn?: bigint;
}

export type ReleaseOutcome = 'reusable' | 'broken';

export interface ServerPool {
  /** Resolves once the hosts' roles are known (the first health round), using `request`'s login if needed. */
  ready(request: ServerRequest): Promise<void>;
  /** The host that would serve `route` now, and why (synchronous; reads the health snapshot). */
  choose(route: RouteRequest): Choice;
  /** A connection to the primary (logins, writes). */
  acquire(request: ServerRequest): Promise<BackendConnection>;
  /** A connection to a chosen host. */
  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection>;
  release(connection: BackendConnection, outcome: ReleaseOutcome): void;
  /** The role of the host a connection belongs to, as the health snapshot has it now. */
  roleOf(connection: BackendConnection): HostView['role'];
  /** Closes every connection this pool holds. */
  close(): Promise<void>;
}

export interface HostEntry extends UpstreamTarget {
  role: 'auto' | 'primary' | 'replica';
  /** Share of reads among replicas (0: none); default 1. */
  weight?: number;
}
