// Running pgbench and reading its report. pgbench is always a child process talking TCP to
// 127.0.0.1 without TLS (PGSSLMODE=disable), with the password in PGPASSWORD and every other PG*
// variable of ours removed, so what it measures depends only on the Endpoint given.
//
// The workload table (WORKLOADS) says which pgbench script each named workload runs, in which
// query modes and at which client counts by default, and whether it is plain (one primary) or split
// (the ambassador-split target reads from replicas); adding a workload is adding an entry.
// Measured runs log every transaction (-l) into a private directory given as logPrefix; latency.ts
// reads those logs. parsePgbenchOutput is pure (unit-tested on captured output). A run is ok only when pgbench exited 0, reported a tps, processed at least one
// transaction, failed none, and aborted no client: pgbench aborts a client on its first error and
// then still prints a (partial) report, and in that case "failed transactions" stays 0.

import { spawn } from 'node:child_process';

export const QUERY_MODES = ['simple', 'extended', 'prepared'] as const;
export type QueryMode = (typeof QUERY_MODES)[number];

/** plain: targets in front of the primary alone; split: reads may go to the replicas (ambassador-split and its partners). */
export type WorkloadKind = 'plain' | 'split';

export interface Workload {
  name: string;
  description: string;
  kind: WorkloadKind;
  /** pgbench arguments selecting the script (before the common ones). */
  args: readonly string[];
  modes: readonly QueryMode[];
  /** Client counts when --clients is not given, in run order. */
  defaultClients: readonly number[];
}

const SELECT_ONLY = 'one primary-key SELECT on pgbench_accounts per transaction';
const TPCB = 'the built-in TPC-B-like script: BEGIN, 3 UPDATEs, a SELECT, an INSERT, END';

export const WORKLOADS: readonly Workload[] = [
  { name: 'select-only', description: `pgbench -S: ${SELECT_ONLY}`, kind: 'plain', args: ['-S'], modes: QUERY_MODES, defaultClients: [1, 32, 256] },
  { name: 'tpcb', description: `pgbench (no -S): ${TPCB}`, kind: 'plain', args: [], modes: ['simple', 'prepared'], defaultClients: [32] },
  {
    name: 'split-select-only',
    description: `pgbench -S through read/write splitting over a primary and 2 replicas: ${SELECT_ONLY}`,
    kind: 'split', args: ['-S'], modes: QUERY_MODES, defaultClients: [32],
  },
  {
    name: 'split-tpcb',
    description: `pgbench (no -S) through read/write splitting: ${TPCB} (all on the primary: every statement is inside BEGIN ... END)`,
    kind: 'split', args: [], modes: ['simple', 'prepared'], defaultClients: [32],
  },
];

/**
 * pgbench's -T for a run of `durationS` at `clients`: pgbench counts -T from before its clients
 * connect (about 1 s for 256 SCRAM logins on 2 CPUs), and reports tps without that time, so many
 * clients get a second per hundred on top, or a short run would measure nothing.
 */
export function pgbenchDurationS(durationS: number, clients: number): number {
  return durationS + Math.floor(clients / 100);
}

/** Where pgbench connects (always TCP, no TLS). */
export interface Endpoint {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface PgbenchSummary {
  /** "tps = N (without initial connection time)". */
  tps: number | null;
  latencyAvgMs: number | null;
  initialConnectionMs: number | null;
  /** "number of transactions actually processed". */
  transactions: number | null;
  /** "number of failed transactions" (serialization/deadlock retries exhausted; not aborts). */
  failed: number | null;
  /** Clients that pgbench aborted ("client N ... aborted"). */
  abortedClients: number;
  /** pgbench said "Run was aborted; the above results are incomplete". */
  runAborted: boolean;
  queryMode: string | null;
  clients: number | null;
  threads: number | null;
  /** First error lines from stderr ("pgbench: error: ..."), for reports. */
  errors: string[];
}

function numberAfter(text: string, pattern: RegExp): number | null {
  const match = pattern.exec(text);
  if (!match?.[1]) return null;
  const value = Number(match[1]);
  return Number.isFinite(value) ? value : null;
}

/** Reads pgbench's final report (stdout) and its error lines (stderr). */
export function parsePgbenchOutput(stdout: string, stderr: string): PgbenchSummary {
  const errorLines = stderr.split('\n').filter((line) => /^pgbench: (error|fatal):/.test(line));
  return {
    tps: numberAfter(stdout, /^tps = ([\d.]+) \(without initial connection time\)/m),
    latencyAvgMs: numberAfter(stdout, /^latency average = ([\d.]+) ms/m),
    initialConnectionMs: numberAfter(stdout, /^initial connection time = ([\d.]+) ms/m),
    transactions: numberAfter(stdout, /^number of transactions actually processed: (\d+)/m),
    failed: numberAfter(stdout, /^number of failed transactions: (\d+)/m),
    abortedClients: errorLines.filter((line) => /client \d+ .*aborted/.test(line)).length,
    runAborted: /Run was aborted/.test(stderr),
    queryMode: /^query mode: (\S+)/m.exec(stdout)?.[1] ?? null,
    clients: numberAfter(stdout, /^number of clients: (\d+)/m),
    threads: numberAfter(stdout, /^number of threads: (\d+)/m),
    errors: errorLines.slice(0, 5),
  };
}

/** pgbench's stderr for the report: null when empty, else at most `max` characters (the first errors are the telling ones). */
export function stderrExcerpt(stderr: string, max = 8000): string | null {
  const text = stderr.trim();
  if (text === '') return null;
  return text.length <= max ? text : `${text.slice(0, max)}\n… (${text.length - max} more characters)`;
}

/** Why a run does not count, or null when it does. */
export function pgbenchProblem(exitCode: number | null, summary: PgbenchSummary): string | null {
  if (summary.abortedClients > 0 || summary.runAborted) {
    return `${summary.abortedClients} client(s) aborted: ${summary.errors[0] ?? '(no error line)'}`;
  }
  if (summary.failed !== null && summary.failed > 0) return `${summary.failed} failed transaction(s)`;
  if (exitCode !== 0) return `pgbench exited with ${exitCode}: ${summary.errors[0] ?? '(no error line)'}`;
  if (summary.tps === null) return 'no "tps = ..." line in the pgbench report';
  if (!summary.transactions) return 'pgbench processed no transactions';
  return null;
}

export interface PgbenchRunOptions {
  endpoint: Endpoint;
  workload: Workload;
  mode: QueryMode;
  clients: number;
  threads: number;
  durationS: number;
  /** Per-transaction log files go to `<logPrefix>.<pid>[.<thread>]` (-l --log-prefix); none when absent. */
  logPrefix?: string;
  signal?: AbortSignal;
}

export interface PgbenchRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  summary: PgbenchSummary;
  /** null when the run counts; see pgbenchProblem. */
  problem: string | null;
}

/** Arguments of one measured run: one connection per client for the whole run (no -C); never more threads than clients. */
export function pgbenchArgs(options: Omit<PgbenchRunOptions, 'signal'>): string[] {
  const { endpoint, workload, mode, clients, threads, durationS, logPrefix } = options;
  return [
    ...connectionArgs(endpoint),
    ...workload.args,
    '-M', mode,
    '-c', String(clients),
    '-j', String(Math.min(threads, clients)),
    '-T', String(durationS),
    '--no-vacuum',
    ...(logPrefix === undefined ? [] : ['-l', `--log-prefix=${logPrefix}`]),
    // No -P: progress reports are off by default, and pgbench 15 rejects "-P 0".
    endpoint.database,
  ];
}

function connectionArgs(endpoint: Endpoint): string[] {
  return ['-h', endpoint.host, '-p', String(endpoint.port), '-U', endpoint.user];
}

/** Our environment without PG* variables, plus the endpoint's password and sslmode=disable. */
export function pgbenchEnv(endpoint: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG')) env[key] = value;
  return { ...env, PGPASSWORD: endpoint.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
}

interface Output {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, signal?: AbortSignal): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL', signal });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', (error) => reject(new Error(`${file} ${args.join(' ')}: ${error.message}`)));
    child.once('close', (code, killedBy) => {
      if (killedBy) stderr += `\npgbench: error: killed by ${killedBy} (timeout ${timeoutMs} ms or abort)\n`;
      resolve({ exitCode: code, stdout, stderr });
    });
  });
}

/** One measured run. Never throws for a failed benchmark (see `problem`); throws if pgbench cannot start. */
export async function runPgbench(bin: string, options: PgbenchRunOptions): Promise<PgbenchRun> {
  const timeoutMs = (options.durationS + 60) * 1000;
  const output = await runTool(bin, pgbenchArgs(options), pgbenchEnv(options.endpoint), timeoutMs, options.signal);
  const summary = parsePgbenchOutput(output.stdout, output.stderr);
  return { ...output, summary, problem: pgbenchProblem(output.exitCode, summary) };
}

/** `pgbench -i -s <scale>`: creates and fills the pgbench tables (vacuum and primary keys included). */
export async function initPgbench(bin: string, endpoint: Endpoint, scale: number, signal?: AbortSignal): Promise<void> {
  const args = [...connectionArgs(endpoint), '-i', '-q', '-s', String(scale), endpoint.database];
  const output = await runTool(bin, args, pgbenchEnv(endpoint), 15 * 60_000, signal);
  if (output.exitCode !== 0) throw new Error(`pgbench -i -s ${scale} failed (exit ${output.exitCode}):\n${output.stderr}${output.stdout}`);
}

/** First line of `pgbench --version`, e.g. "pgbench (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". */
export async function pgbenchVersion(bin: string): Promise<string> {
  const output = await runTool(bin, ['--version'], process.env, 10_000);
  return output.stdout.trim().split('\n')[0] ?? 'unknown';
}
