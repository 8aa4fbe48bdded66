// Measuring failover from a client's point of view: reconnecting probes that keep working through
// the ambassador while servers die, and the figures the failover tests report and assert on.
// - WriteProbe: a pg client INSERTing increasing ids (autocommit, one statement every ~20 ms);
//   records every acknowledged id with its time, and every error with its SQLSTATE.
// - ReadProbe: the same loop for a SELECT reporting which server answered (port, recovery).
// Both reconnect when the connection is broken (a client 'error'/'end' event, or an error with no
// SQLSTATE such as "Connection terminated unexpectedly"), and count reconnects. A statement that
// hangs past `statementDeadlineMs` counts as an error and the connection is replaced.
// - figures(): errors, seconds from a moment to the first success after it, worst stall (longest
//   gap between successive successes), and lostWrites() (acknowledged ids missing on a server).
// Times are Date.now() milliseconds so they compare with moments the tests take around events.

import { spawn } from 'node:child_process';
import pg from 'pg';
import { parsePgbenchOutput, pgbenchEnv, type Endpoint, type PgbenchSummary } from '../../bench/pgbench.ts';
import { viaAmbassador } from './ambassador.ts';
import { withClient } from './pooling.ts';

export interface ProbeError {
  /** Date.now() when the error arrived. */
  at: number;
  /** When the failed statement (or connect) was sent. */
  sentAt: number;
  sqlstate: string | null;
  severity: string | null;
  message: string;
  /** 'statement' or 'connect' (a failed reconnect). */
  phase: 'statement' | 'connect';
  /** Whether the connection was replaced after it. */
  broken: boolean;
}

export interface ProbeSuccess {
  /** The id written (write probe) or the sequence number (read probe). */
  id: number;
  sentAt: number;
  /** Date.now() when the server's answer arrived (the acknowledgement). */
  at: number;
  /** For read probes: the server that answered. */
  port?: number;
  recovery?: boolean;
}

export interface ProbeOptions {
  /** Ambassador port. */
  port: number;
  database: string;
  /** Pause between statements (default 20 ms). */
  intervalMs?: number;
  /** A statement taking longer counts as failed and the connection is replaced (default 40 s). */
  statementDeadlineMs?: number;
  /** Label for printed figures. */
  name?: string;
}

abstract class ReconnectingProbe {
  readonly successes: ProbeSuccess[] = [];
  readonly errors: ProbeError[] = [];
  reconnects = 0;
  /** Connections opened (the first included). */
  connects = 0;
  readonly name: string;
  protected readonly options: Required<ProbeOptions>;
  private running = false;
  private loop: Promise<void> | null = null;
  private client: pg.Client | null = null;
  /** Clients whose connection broke ('error'/'end' events, or a failure without a SQLSTATE). */
  private readonly broken = new WeakSet<pg.Client>();
  private wake: (() => void) | null = null;
  protected next = 1;

  constructor(options: ProbeOptions) {
    this.options = { intervalMs: 20, statementDeadlineMs: 40_000, name: this.constructor.name, ...options };
    this.name = this.options.name;
  }

  /** Connects (throws if the first connect fails) and starts the loop. */
  async start(): Promise<void> {
    this.client = await this.connect();
    this.running = true;
    this.loop = this.run();
  }

  /** Stops the loop after the statement in flight and closes the connection. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.client?.end().catch(() => {});
    this.client = null;
  }

  /** Runs statement `id`; returns what to record on success. */
  protected abstract statement(client: pg.Client, id: number): Promise<Partial<ProbeSuccess>>;

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      ...viaAmbassador(this.options.port, { database: this.options.database }),
      connectionTimeoutMillis: this.options.statementDeadlineMs,
    } as pg.ClientConfig);
    client.on('error', () => this.broken.add(client));
    client.on('end', () => this.broken.add(client));
    this.connects++;
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    return client;
  }

  private async run(): Promise<void> {
    while (this.running) {
      if (this.client === null || this.broken.has(this.client)) {
        await this.reconnect();
      } else {
        await this.once(this.client);
      }
      if (this.running) await this.pause(this.options.intervalMs);
    }
  }

  private async reconnect(): Promise<void> {
    void this.client?.end().catch(() => {});
    this.client = null;
    const sentAt = Date.now();
    try {
      this.client = await this.connect();
      this.reconnects++;
    } catch (error) {
      this.errors.push({ ...describeError(error), at: Date.now(), sentAt, phase: 'connect', broken: true });
    }
  }

  private async once(client: pg.Client): Promise<void> {
    const id = this.next++;
    const sentAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`probe statement took over ${this.options.statementDeadlineMs} ms`)), this.options.statementDeadlineMs);
    });
    try {
      const extra = await Promise.race([this.statement(client, id), deadline]);
      this.successes.push({ id, sentAt, at: Date.now(), ...extra });
    } catch (error) {
      const described = describeError(error);
      // No SQLSTATE means the driver lost the connection (or the deadline passed): replace it.
      const broken = this.broken.has(client) || described.sqlstate === null || described.severity === 'FATAL' || described.severity === 'PANIC';
      if (broken) this.broken.add(client);
      this.errors.push({ ...described, at: Date.now(), sentAt, phase: 'statement', broken });
    } finally {
      clearTimeout(timer);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
}

function describeError(error: unknown): { sqlstate: string | null; severity: string | null; message: string } {
  const e = error as { code?: unknown; severity?: unknown; message?: unknown };
  // pg puts SQLSTATEs in `code`; Node's socket errors use `code` too (ECONNRESET...): keep only SQLSTATEs.
  const code = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : null;
  return {
    sqlstate: code,
    severity: typeof e.severity === 'string' ? e.severity : null,
    message: typeof e.message === 'string' ? e.message : String(error),
  };
}

/** Creates the table the write probe fills (id bigint primary key, written_at timestamptz). */
export async function createProbeTable(config: pg.ClientConfig, table: string): Promise<void> {
  await withClient(config, (client) => client.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())`));
}

export class WriteProbe extends ReconnectingProbe {
  constructor(
    options: ProbeOptions,
    readonly table: string,
  ) {
    super(options);
  }

  protected async statement(client: pg.Client, id: number): Promise<Partial<ProbeSuccess>> {
    const result = await client.query(`INSERT INTO ${this.table} (id) VALUES (${id})`);
    if (result.rowCount !== 1) throw new Error(`INSERT of id ${id} reported ${result.rowCount} rows`);
    return {};
  }

  /** Ids the server acknowledged. */
  acknowledged(): number[] {
    return this.successes.map((s) => s.id);
  }
}

export class ReadProbe extends ReconnectingProbe {
  protected async statement(client: pg.Client, id: number): Promise<Partial<ProbeSuccess>> {
    const result = await client.query(`SELECT pg_is_in_recovery() AS recovery, inet_server_port() AS port, ${id} AS n`);
    const row = result.rows[0] as { recovery: boolean; port: number; n: number } | undefined;
    if (row?.n !== id) throw new Error(`read ${id} answered ${JSON.stringify(row)}`);
    return { port: Number(row.port), recovery: row.recovery };
  }
}

export interface Figures {
  probe: string;
  /** Errors (statement and connect) at or after `since`. */
  errors: number;
  /** SQLSTATEs of those errors (null = no SQLSTATE: a dropped connection or a deadline). */
  sqlstates: Array<string | null>;
  reconnects: number;
  successes: number;
  /** Seconds from `since` to the first success acknowledged after it (null: none yet). */
  secondsToRecovery: number | null;
  /** Longest gap between successive successes, in seconds, over the whole run. */
  worstStallS: number | null;
  /** When the worst stall started (Date.now()). */
  worstStallFrom: number | null;
}

/** Figures of one probe; `since` is the moment recovery is measured from (e.g. the promote). */
export function figures(probe: ReconnectingProbe, since: number, errorsFrom = since): Figures {
  const after = probe.successes.find((s) => s.at >= since);
  let worst: { gap: number; from: number } | null = null;
  for (let i = 1; i < probe.successes.length; i++) {
    const gap = probe.successes[i]!.at - probe.successes[i - 1]!.at;
    if (worst === null || gap > worst.gap) worst = { gap, from: probe.successes[i - 1]!.at };
  }
  const errors = probe.errors.filter((e) => e.at >= errorsFrom);
  return {
    probe: probe.name,
    errors: errors.length,
    sqlstates: errors.map((e) => e.sqlstate),
    reconnects: probe.reconnects,
    successes: probe.successes.length,
    secondsToRecovery: after ? round((after.at - since) / 1000) : null,
    worstStallS: worst ? round(worst.gap / 1000) : null,
    worstStallFrom: worst?.from ?? null,
  };
}

/** Acknowledged ids of `probe` that `server` does not have (read directly, bypassing the ambassador). */
export async function lostWrites(probe: WriteProbe, server: pg.ClientConfig): Promise<number[]> {
  const acknowledged = probe.acknowledged();
  const present = await withClient(server, async (client) => {
    const { rows } = await client.query<{ id: string }>(`SELECT id FROM ${probe.table} WHERE id = ANY($1::bigint[])`, [acknowledged]);
    return new Set(rows.map((row) => Number(row.id)));
  });
  return acknowledged.filter((id) => !present.has(id));
}

/** Prints one JSON line of figures (quoted by the closing notes of the failover issue). */
export function printFigures(scenario: string, values: Record<string, unknown>): void {
  console.log(JSON.stringify({ figures: scenario, ...values }));
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/**
 * Polls a server directly (a new connection each time, as `login`) until one SELECT 1 succeeds;
 * returns Date.now() when it did. For "when did the server accept connections again".
 */
export async function firstAcceptedAt(config: pg.ClientConfig, options: { timeoutMs: number; intervalMs?: number }): Promise<number> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      await withClient({ ...config, connectionTimeoutMillis: 1000 }, (client) => client.query('SELECT 1'));
      return Date.now();
    } catch (error) {
      lastError = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${config.host}:${config.port} did not accept a connection within ${options.timeoutMs} ms (last error: ${lastError})`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

export type { ReconnectingProbe };

/**
 * The ambassador's health event counters (host-down, host-up, role-changed, failover-started,
 * failover-ended, breaker-opened, ...), read through `Ambassador.healthCounters()`. Throws an
 * assertion-style error naming the missing method while the feature does not expose it yet.
 */
export function healthCounters(ambassador: object): Record<string, number> {
  const read = (ambassador as { healthCounters?: unknown }).healthCounters;
  if (typeof read !== 'function') throw new Error('Ambassador.healthCounters() is not implemented (expected counts of health events by name)');
  const counters = (read as () => unknown).call(ambassador) as { snapshot?: unknown } | Map<string, number> | Record<string, number>;
  // HealthCounters (src/health/events.ts): snapshot().total has every event type.
  if (typeof (counters as { snapshot?: unknown }).snapshot === 'function') {
    return (counters as { snapshot(): { total: Record<string, number> } }).snapshot().total;
  }
  if (counters instanceof Map) return Object.fromEntries(counters) as Record<string, number>;
  return counters as Record<string, number>;
}

/** The health counters, or null while Ambassador.healthCounters() does not exist (for figures). */
export function tryHealthCounters(ambassador: object): Record<string, number> | null {
  try {
    return healthCounters(ambassador);
  } catch {
    return null;
  }
}

/** A health counter by name (0 when absent from the counters). */
export function counter(ambassador: object, name: string): number {
  return healthCounters(ambassador)[name] ?? 0;
}

export interface BackgroundPgbench {
  /** Resolves at pgbench's first progress report (its clients are connected and running). */
  running: Promise<void>;
  /** Resolves when pgbench exits (never rejects). */
  done: Promise<BackgroundPgbenchResult>;
  /** Kills pgbench if it is still running. */
  stop(): Promise<void>;
}

export interface BackgroundPgbenchResult {
  exitCode: number | null;
  summary: PgbenchSummary;
  /** tps of each progress report (-P 1), in order: how the load fared second by second. */
  progressTps: number[];
  /** "client N aborted ..." lines (pgbench aborts a client on its first error). */
  abortLines: string[];
  stderrTail: string;
}

/**
 * pgbench (`args` select the workload, e.g. ['-S', '-M', 'simple', '-c', '4', '-j', '2', '-T', '10'])
 * against `endpoint` in the background, with a progress report every second.
 */
export function startPgbench(bin: string, endpoint: Endpoint, args: string[]): BackgroundPgbench {
  const child = spawn(bin, ['-h', endpoint.host, '-p', String(endpoint.port), '-U', endpoint.user, '--no-vacuum', '-P', '1', ...args, endpoint.database], {
    env: pgbenchEnv(endpoint),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let markRunning: () => void = () => {};
  let failRunning: (error: Error) => void = () => {};
  const running = new Promise<void>((resolve, reject) => {
    markRunning = resolve;
    failRunning = reject;
  });
  running.catch(() => {});
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    if (/^progress: /m.test(stderr)) markRunning();
  });
  const done = new Promise<BackgroundPgbenchResult>((resolve) => {
    child.once('error', (error) => {
      failRunning(error);
      resolve({ exitCode: null, summary: parsePgbenchOutput('', error.message), progressTps: [], abortLines: [], stderrTail: error.message });
    });
    child.once('close', (code) => {
      failRunning(new Error(`pgbench exited (${code}) before its first progress report:\n${stderr.slice(-2000)}`));
      resolve({
        exitCode: code,
        summary: parsePgbenchOutput(stdout, stderr),
        progressTps: [...stderr.matchAll(/^progress: [\d.]+ s, ([\d.]+) tps/gm)].map((m) => Number(m[1])),
        abortLines: stderr.split('\n').filter((line) => /client \d+ .*abort/.test(line)),
        stderrTail: stderr.slice(-3000),
      });
    });
  });
  return {
    running,
    done,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await done;
    },
  };
}
