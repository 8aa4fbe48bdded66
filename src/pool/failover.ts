// Riding out a failover: what a failed connect means, and the loop behind ServerPool.acquireFor.
//
// A connect can fail because the host cannot be reached now (refused, timed out, closed on us,
// the server starting up or shutting down, its breaker open, its pool drained): then another
// host, or the same one a moment later, may serve, so the caller reports it to the health loop
// and chooses again after the next round, until health.failoverTimeout. Or the server answered
// and said no (bad password, no such database): that will not change by waiting, and the client
// hears it at once. Two hosts claiming to be the primary is refused at once too: waiting would
// hide a split brain that needs a human.

import type { BackendConnection } from '../backend/connection.ts';
import { UpstreamLoginError } from '../backend/connection.ts';
import { AmbassadorError, type ErrorCode } from '../errors.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import type { Choice, HostView } from './host-choice.ts';
import type { RouteRequest, ServerRequest } from './server-pool.ts';

/** Server refusals at login that mean "not now": starting up, shutting down, crash recovery. */
const SERVER_NOT_READY = new Set(['57P01', '57P02', '57P03']);
/** The server is full: a retry may find a free slot, but the host is reachable. */
const SERVER_FULL = '53300';
const UNREACHABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'UPSTREAM_CONNECT_FAILED',
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_LOST',
  'HOST_UNAVAILABLE',
  'POOL_CLOSED',
]);
const NEVER_RETRIED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['HOST_UNAVAILABLE', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_PROTOCOL', 'INTERNAL']);
/** Routing answers no health round will change: split brain needs a human, weight 0 is configuration. */
const NOT_WORTH_WAITING = ['two-primaries', 'all-weight-zero'];
const NETWORK_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT']);

/**
 * Whether a failed connect (or lease) says the host cannot be reached now, as opposed to the
 * server refusing for a reason waiting will not fix. Feeds the breaker and acquireFor's retry.
 */
export function unreachable(err: unknown): boolean {
  if (err instanceof UpstreamLoginError) return SERVER_NOT_READY.has(err.serverCode);
  if (err instanceof AmbassadorError) {
    if (err.code === 'UPSTREAM_TLS_FAILED') return networkErrno(err.cause);
    return UNREACHABLE.has(err.code);
  }
  return networkErrno(err);
}

/** Whether the pool should try connecting again for the same request (ConnectionFactory.retryable). */
export function retryableConnectError(err: unknown): boolean {
  if (err instanceof UpstreamLoginError) return SERVER_NOT_READY.has(err.serverCode) || err.serverCode === SERVER_FULL;
  if (err instanceof AmbassadorError) {
    if (err.code === 'UPSTREAM_TLS_FAILED') return networkErrno(err.cause);
    return !NEVER_RETRIED.has(err.code);
  }
  return true; // unknown: retrying costs a delay, refusing may cost a client
}

function networkErrno(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' && NETWORK_ERRNOS.has(code);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface FailoverDeps {
  choose(route: RouteRequest): Choice;
  acquireOn(host: HostView, request: ServerRequest): Promise<BackendConnection>;
  /** The host's probes or connects are failing: a pool timeout there is about reachability, not load. */
  struggling(host: HostView): boolean;
  /** Why the host that would serve `route` refuses connects (its open breaker), or null. */
  blocked(route: RouteRequest): AmbassadorError | null;
  /** Asks the health loop for a round now (rate-limited there). */
  kick(reason: string): void;
  /** Resolves when the next health round has completed. */
  nextRound(): Promise<void>;
  /** The pool is closing: stop waiting. */
  closed(): boolean;
  clock: Clock;
  failoverTimeoutMs: number;
  /** Longest wait for a round before choosing again anyway (a round may never come). */
  intervalMs: number;
}

/** ServerPool.acquireFor; see there and the file comment. */
/** The first attempt, made by the caller (ServerPool.waitFor), failed: the loop goes on from there. */
export interface FailedAttempt {
  choice: Choice & { host: HostView };
  error: unknown;
  /** clock.now() when the caller started (the failover deadline counts from then). */
  since: number;
}

export async function acquireWithFailover(
  deps: FailoverDeps,
  requested: RouteRequest,
  request: ServerRequest,
  firstChoice: Choice | null = null,
  failed: FailedAttempt | null = null,
): Promise<BackendConnection> {
  let route = requested;
  const deadline = (failed?.since ?? deps.clock.now()) + deps.failoverTimeoutMs;
  let lastError: unknown = null;
  let made = failed?.choice ?? firstChoice;
  for (;;) {
    const choice = made ?? deps.choose(route);
    made = null;
    if (choice.host === null && NOT_WORTH_WAITING.some((reason) => choice.reason.includes(reason))) throw noHost(choice.reason, route.kind);
    let waitForRound = true;
    if (choice.host !== null) {
      try {
        if (failed !== null) throw failed.error;
        return await deps.acquireOn(choice.host, request);
      } catch (err) {
        failed = null;
        const waitable = unreachable(err) || (isCode(err, 'POOL_TIMEOUT') && deps.struggling(choice.host));
        if (!waitable) throw err;
        lastError = err;
        // A drained pool means the snapshot already changed: choose again now. A failed connect
        // is news for the health loop; an open breaker is not (the loop knows, and probes it).
        if (isCode(err, 'POOL_CLOSED')) waitForRound = false;
        else if (!isCode(err, 'HOST_UNAVAILABLE')) deps.kick(`${choice.host.id}: ${errorText(err)}`);
        // Another host can serve now (a read while one replica fails): no need to wait.
        const next = deps.choose(route).host;
        if (next !== null && next.id !== choice.host.id) waitForRound = false;
      }
    } else {
      // Nothing to try (no primary known, or its breaker is open): the health loop's own rounds
      // will tell; kicking them from every waiting client would only hammer the dead host.
      lastError = deps.blocked(route) ?? lastError;
    }
    if (deps.closed()) throw lastError ?? new AmbassadorError('SHUTTING_DOWN', 'the ambassador is shutting down');
    const remaining = deadline - deps.clock.now();
    // failoverTimeout 0 means "do not wait": the client gets the connect error itself.
    if (remaining <= 0 && deps.failoverTimeoutMs <= 0 && lastError !== null) throw lastError;
    if (remaining <= 0) throw gaveUp(route.kind, choice, lastError, deps.failoverTimeoutMs);
    if (waitForRound) {
      await nextRoundOrTimeout(deps, Math.min(remaining, deps.intervalMs));
      // `avoid` steers the choice made right after a failure; after a round the fresh snapshot
      // decides (a single host whose name now points at the new primary may serve again).
      if (route.avoid !== undefined) route = { ...route, avoid: undefined };
    }
  }
}

function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof AmbassadorError && err.code === code;
}

function nextRoundOrTimeout(deps: FailoverDeps, ms: number): Promise<void> {
  let timer: Timer | null = null;
  const timeout = new Promise<void>((resolve) => {
    timer = deps.clock.setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([deps.nextRound(), timeout]).finally(() => {
    if (timer) deps.clock.clearTimeout(timer);
  });
}

/** failoverTimeout passed: which host was missing, and the last connect error if there was one. */
function gaveUp(kind: RouteRequest['kind'], choice: Choice, lastError: unknown, timeoutMs: number): AmbassadorError {
  const what = kind === 'write' ? 'no primary is available for writes' : 'no host can serve this read';
  const lastTried = choice.host === null ? `routing: ${choice.reason}` : `${choice.host.id} did not accept a connection`;
  const last = lastError === null ? '' : `; last connect error: ${errorText(lastError)}`;
  return new AmbassadorError(kind === 'write' ? 'NO_PRIMARY' : 'NO_REPLICA', `${what} after waiting ${timeoutMs} ms for a failover (${lastTried})${last}`, {
    cause: lastError ?? undefined,
    detail: lastError === null ? `routing reason: ${choice.reason}` : errorText(lastError),
    hint:
      kind === 'write'
        ? 'Check that the primary is running and reachable, or that a replica was promoted; health.failoverTimeout sets how long clients wait.'
        : 'Replicas are down or lagging past routing.maxReplicaLag, and routing.readsFromPrimary forbids the primary.',
  });
}

/** The error a client gets when no host can serve its request. */
export function noHost(reason: string, kind: 'write' | 'read'): AmbassadorError {
  if (kind === 'write') {
    const twoPrimaries = reason === 'two-primaries';
    return new AmbassadorError(
      'NO_PRIMARY',
      twoPrimaries ? 'two hosts claim to be the primary: writes are refused until one steps down' : 'no primary is available for writes',
      { hint: twoPrimaries ? 'Demote one of them; see the ambassador log.' : 'Check that the primary is running and reachable.' },
    );
  }
  return new AmbassadorError('NO_REPLICA', `no host can serve this read (${reason})`, {
    hint: 'Replicas are down or lagging past routing.maxReplicaLag, and routing.readsFromPrimary forbids the primary.',
  });
}
