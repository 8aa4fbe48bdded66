// Fakes for the health tests: a Prober answering from per-host scripts, a pino logger writing
// into memory, probe results and host entries, and a HealthMonitor wired to them.

import { pino, type Logger } from 'pino';
import { HealthCounters, type HealthEvent } from '../../../src/health/events.ts';
import { HealthMonitor, type HealthMonitorOptions, type HostState, type Prober, type ProbeResult } from '../../../src/health/monitor.ts';
import { FakeClock } from '../../../src/lib/clock.ts';
import { parseLsn } from '../../../src/pool/host-choice.ts';
import type { HostEntry } from '../../../src/pool/server-pool.ts';

export type Outcome = ProbeResult | Error;

/** Answers each host from its script (the last outcome repeats); can hold probes until let go. */
export class ScriptedProber implements Prober {
  readonly calls: Array<{ id: string; timeoutMs: number }> = [];
  closed = false;
  private readonly scripts = new Map<string, Outcome[]>();
  private gate: Promise<void> | null = null;
  private openGate: () => void = () => {};

  /** Queues outcomes for `id` ("host:port"). */
  script(id: string, ...outcomes: Outcome[]): this {
    this.scripts.set(id, [...(this.scripts.get(id) ?? []), ...outcomes]);
    return this;
  }

  /** Probes wait until the returned function is called. */
  hold(): () => void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
    return () => {
      this.gate = null;
      this.openGate();
    };
  }

  async probe(host: HostEntry, timeoutMs: number): Promise<ProbeResult> {
    const id = `${host.host}:${host.port}`;
    this.calls.push({ id, timeoutMs });
    if (this.gate) await this.gate;
    const script = this.scripts.get(id) ?? [];
    const outcome = script.length > 1 ? script.shift() : script[0];
    if (outcome === undefined) throw new Error(`test: nothing scripted for ${id}`);
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /** Hosts whose kept connection was dropped (their address changed). */
  readonly forgotten: string[] = [];

  forget(host: HostEntry): void {
    this.forgotten.push(`${host.host}:${host.port}`);
  }

  close(): void {
    this.closed = true;
  }
}

export interface LogLine {
  level: number;
  msg: string;
  host?: string;
  [field: string]: unknown;
}

export const LEVEL = { info: 30, warn: 40, error: 50 } as const;

/** A pino logger writing JSON lines into memory. */
export function memoryLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

export function primary(lsn: string): ProbeResult {
  return { inRecovery: false, lsn: parseLsn(lsn), lagMs: 0 };
}

export function replica(lsn: string, lagMs: number | null = 0): ProbeResult {
  return { inRecovery: true, lsn: parseLsn(lsn), lagMs };
}

export function entry(id: string, role: HostEntry['role'] = 'auto'): HostEntry {
  const [host, port] = id.split(':');
  return { host: host!, port: Number(port), role };
}

/** Every name resolves to one fixed address (the DNS tests script their own). */
export const STATIC_DNS = async (): Promise<string[]> => ['10.0.0.1'];

/** Lets pending promise callbacks run (setImmediate is not faked in these tests). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A HealthMonitor over `prober` on a FakeClock starting at `startAt` (interval 1 s, timeout
 * 250 ms, threshold 2, fixed DNS), with its events recorded and counted.
 */
export function monitorHarness(prober: ScriptedProber, hosts: HostEntry[], overrides: Partial<HealthMonitorOptions> = {}, startAt = 0) {
  const { log, lines } = memoryLog();
  const clock = new FakeClock(startAt);
  const events: HealthEvent[] = [];
  const counters = new HealthCounters();
  const health = new HealthMonitor({
    hosts,
    prober,
    intervalMs: 1000,
    timeoutMs: 250,
    failureThreshold: 2,
    log,
    clock,
    resolve: STATIC_DNS,
    onEvent: (event) => {
      events.push(event);
      counters.record(event);
    },
    ...overrides,
  });
  const find = (id: string): HostState | undefined => health.hosts.find((host) => host.id === id);
  const types = (): string[] => events.map((event) => event.type);
  const probesOf = (id: string): number => prober.calls.filter((call) => call.id === id).length;
  return { health, lines, events, types, counters, clock, find, probesOf };
}
