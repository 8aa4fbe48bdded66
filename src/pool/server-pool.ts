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
  /** Host ids ("host:port") not to use for this request (a retry after a failure there). */
  avoid?: readonly string[];
}

export type ReleaseOutcome = 'reusable' | 'broken';

/**
 * Who waits in waitFor: an object told once, where a callback would be a closure made per wait
 * (a client in transaction pooling waits for a server on most transactions under load).
 */
export interface LeaseWaiter {
  leaseSettled(err: unknown, connection: BackendConnection | null): void;
}

export interface ServerPool {
  /** Resolves once the hosts' roles are known (the first health round), using `request`'s login if needed. */
  ready(request: ServerRequest): Promise<void>;
  /** The host that would serve `route` now, and why (synchronous; reads the health snapshot). */
  choose(route: RouteRequest): Choice;
  /**
   * A connection to a host that can serve `route` now. When no host can (no primary known, or the
   * chosen host's connect fails at the connection level: refused, timeout, closed, 57P03 "starting
   * up"/57P01, breaker open, its pool closed by a drain), the choice is made again after the next
   * health round (at once after a drain), until health.failoverTimeout has passed since the call;
   * then it rejects with an AmbassadorError (NO_PRIMARY / NO_REPLICA with the last connect error
   * in its message/detail; with failoverTimeout 0, the connect error itself). A failed connect is
   * reported to the health loop (probe now); an open breaker or a missing primary is not (the
   * loop's own rounds watch those, and kicks from every waiting client would hammer a dead host).
   * Two hosts claiming primary: rejects at once (NO_PRIMARY with the split-brain message); so does
   * a read only weight-0 replicas could serve. Errors that are not about reachability (auth
   * failure 28xxx, database does not exist, POOL_TIMEOUT while the host is healthy) reject at once.
   */
  acquireFor(route: RouteRequest, request: ServerRequest, choice?: Choice | null): Promise<BackendConnection>;
  /**
   * The hot path's shortcut: a connection that acquireFor would hand over at once (an idle one
   * on the host it would choose, the pool not paused), leased synchronously. Otherwise the
   * choice it made (pass it to acquireFor, so that round-robin moves on once per request), or
   * null when it made none (paused or closed).
   */
  tryAcquireFor(route: RouteRequest, request: ServerRequest): BackendConnection | Choice | null;
  /**
   * acquireFor after tryAcquireFor made `choice`, for the hot path: the same outcome told to
   * `waiter` (never synchronously, nor inside the release that freed the connection: a freed
   * connection is handed over in the event loop's check phase), without a promise per wait when
   * the chosen host's pool is only busy.
   */
  waitFor(route: RouteRequest, request: ServerRequest, choice: Choice | null, waiter: LeaseWaiter): void;
  /** A connection to the primary (logins, writes): acquireFor({ kind: 'write' }, request). */
  acquire(request: ServerRequest): Promise<BackendConnection>;
  /** A connection to a chosen host (no waiting, no second choice). */
  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection>;
  release(connection: BackendConnection, outcome: ReleaseOutcome): void;
  /** Some client waits for a server connection now (the pool is the bottleneck). */
  readonly contended: boolean;
  /** The role of the host a connection belongs to, as the health snapshot has it now. */
  roleOf(connection: BackendConnection): HostView['role'];
  /** The id ("host:port") of the host a connection belongs to, or null. */
  hostIdOf(connection: BackendConnection): string | null;
  /**
   * Whether the server behind `connection` is a standby now, although it may have been leased as
   * the primary: the server said so itself (in_hot_standby on, reported at login by Postgres 14+),
   * or the health snapshot has its host as a replica.
   */
  demoted(connection: BackendConnection): boolean;
  /**
   * A server connection failed in a way that suggests its host is gone or demoted (closed in the
   * middle of a request, refused a write as read-only 25006): probe now instead of at the next
   * interval (rate-limited; never more than one extra round at a time).
   */
  suspect(connection: BackendConnection, reason: string): void;
  /** Closes every connection this pool holds. */
  close(): Promise<void>;
}

export interface HostEntry extends UpstreamTarget {
  role: 'auto' | 'primary' | 'replica';
  /** Share of reads among replicas (0: none); default 1. */
  weight?: number;
}
