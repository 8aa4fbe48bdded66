// A Pooler on a FakeClock with no network: an Upstream whose hosts accept or refuse connects
// (each connection a small fake with a socket that can close), a prober whose answer per host
// the test sets, a fixed resolver, and a loop that advances time until a promise settles.

import { EventEmitter } from 'node:events';
import type { BackendConnection } from '../../../src/backend/connection.ts';
import { UpstreamLoginError } from '../../../src/backend/connection.ts';
import { AmbassadorError } from '../../../src/errors.ts';
import { HealthCounters, type HealthEvent } from '../../../src/health/events.ts';
import type { Prober, ProbeResult } from '../../../src/health/monitor.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import { Pooler, type PoolerOptions, type ServerConnect } from '../../../src/pool/pooler.ts';
import type { HostEntry, ServerRequest } from '../../../src/pool/server-pool.ts';
import { memoryLog, settle, type LogLine } from '../health/health-fakes.ts';
import type { Tracked } from './pool-fakes.ts';

export function loginError(code: string, message = 'refused'): UpstreamLoginError {
  return new UpstreamLoginError(Buffer.from(`SFATAL\0C${code}\0M${message}\0\0`), { host: 'db', port: 5432 });
}

export function refusedError(id: string): AmbassadorError {
  return new AmbassadorError('UPSTREAM_CONNECT_FAILED', `could not connect to ${id}: ECONNREFUSED`);
}

/** Hosts that accept connects, or throw a set error; remembers every attempt. */
export class Upstream {
  readonly attempts: Array<{ id: string; at: number }> = [];
  readonly opened: BackendConnection[] = [];
  private readonly refusals = new Map<string, unknown>();

  constructor(private readonly clock: FakeClock) {}

  refuse(id: string, error: unknown = refusedError(id)): void {
    this.refusals.set(id, error);
  }

  accept(id: string): void {
    this.refusals.delete(id);
  }

  attemptsOn(id: string): number {
    return this.attempts.filter((attempt) => attempt.id === id).length;
  }

  readonly connect: ServerConnect = async (target) => {
    const id = `${target.host}:${target.port}`;
    this.attempts.push({ id, at: this.clock.now() });
    const refusal = this.refusals.get(id);
    if (refusal !== undefined) throw refusal;
    const connection = fakeConnection(target);
    this.opened.push(connection);
    return connection;
  };
}

function fakeConnection(target: { host: string; port: number }): BackendConnection {
  const socket = new EventEmitter();
  const connection = {
    target,
    isClosed: false,
    pooledBy: null,
    cancelling: null as Promise<void> | null,
    socket,
    parameters: new Map<string, string>(),
    close(): void {
      if (connection.isClosed) return;
      connection.isClosed = true;
      socket.emit('close');
    },
  };
  return connection as unknown as BackendConnection;
}

/** Answers each host with what the test set last (an Error rejects). */
export class SwitchProber implements Prober {
  readonly answers = new Map<string, ProbeResult | Error>();
  readonly calls: string[] = [];

  async probe(host: HostEntry): Promise<ProbeResult> {
    const id = `${host.host}:${host.port}`;
    this.calls.push(id);
    const answer = this.answers.get(id);
    if (answer === undefined) throw new Error(`test: no answer set for ${id}`);
    if (answer instanceof Error) throw answer;
    return answer;
  }

  close(): void {}
}

export const PRIMARY: ProbeResult = { inRecovery: false, lsn: 100n, lagMs: 0 };
export const REPLICA: ProbeResult = { inRecovery: true, lsn: 100n, lagMs: 0 };
export const REQUEST: ServerRequest = { user: 'app', database: 'appdb', params: new Map() };

export interface PoolerSetup {
  pooler: Pooler;
  clock: FakeClock;
  upstream: Upstream;
  prober: SwitchProber;
  events: HealthEvent[];
  counters: HealthCounters;
  lines: LogLine[];
}

export function setupPooler(ids: readonly string[], overrides: Partial<PoolerOptions> = {}): PoolerSetup {
  const clock = new FakeClock(0);
  const upstream = new Upstream(clock);
  const prober = new SwitchProber();
  const events: HealthEvent[] = [];
  const counters = new HealthCounters();
  const { log, lines } = memoryLog();
  const hosts = ids.map((id) => ({ host: id.split(':')[0]!, port: Number(id.split(':')[1]), role: 'auto' as const }));
  const pooler = new Pooler({
    connector: { connect: () => Promise.reject(new Error('test: the fake connect is used')) },
    hosts,
    tls: () => ({ mode: 'disable' }),
    connectTimeoutMs: 1000,
    credentials: null,
    maxMessageSize: 1 << 20,
    pool: { size: 2, minIdle: 0, idleTimeoutMs: 0, maxLifetimeMs: 0, acquireTimeoutMs: 5000, retry: { max: 1, initialDelayMs: 50, maxDelayMs: 200 } },
    choice: { loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'fallback' },
    health: { intervalMs: 1000, timeoutMs: 250, failureThreshold: 2, failoverTimeoutMs: 10_000, circuitBreaker: { threshold: 5, cooldownMs: 10_000 } },
    probeLogin: { user: 'app', database: 'appdb' },
    log,
    onHealthEvent: (event) => {
      events.push(event);
      counters.record(event);
    },
    clock,
    resolve: async () => ['10.0.0.1'],
    connect: upstream.connect,
    prober,
    ...overrides,
  });
  return { pooler, clock, upstream, prober, events, counters, lines };
}

/** Advances the clock in steps until `tracked` settles or `limitMs` passed; returns the time taken. */
export async function runUntilSettled<T>(clock: FakeClock, tracked: Tracked<T>, limitMs: number, stepMs = 50): Promise<number> {
  const start = clock.now();
  await settle();
  while (!tracked.settled && clock.now() - start < limitMs) await clock.advanceAsync(stepMs);
  return clock.now() - start;
}
