// The pgbench runs of a bench: one measured run (pgbench with its per-transaction log, the target
// process's CPU and RSS around it, and the CPU of the cluster's servers and how idle the machine
// was), the 1 s verification runs, and the rounds.
//
// Within a run, the order matters: CPU before, pgbench, CPU and RSS after, and only then the log
// parsing (latency.ts), so the bench's own work never lands in the proxy's CPU reading; the
// target's process is a different process anyway, but the two share 2 CPUs. Logs go to a private
// temp dir, removed once parsed.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { BenchOptions, RunGroup } from './cli.ts';
import { readLatencyLogs } from './latency.ts';
import { pgbenchDurationS, runPgbench, stderrExcerpt, type QueryMode, type Workload } from './pgbench.ts';
import { readCpuTimes, readMachineTicks, readRssBytes, readServerCpu, type CpuReading } from './proc.ts';
import { cpuMicrosPerTransaction, type RunRow } from './report.ts';
import type { RunningTarget } from './targets.ts';

export interface RunPlan {
  round: number;
  target: RunningTarget;
  workload: Workload;
  mode: QueryMode;
  clients: number;
  /** Seconds of the run proper; pgbench gets more at many clients (pgbenchDurationS). */
  durationS: number;
}

/** Targets whose process died, by name (the first reason is kept). */
export type Deaths = Map<string, string>;

export interface RunContext {
  options: BenchOptions;
  pgbenchBin: string;
  deaths: Deaths;
  signal: AbortSignal;
  log: (line: string) => void;
  /** The postmasters of the cluster's servers (primary and replicas), whose CPU each run also reads. */
  serverPids: () => number[];
}

const LOG_NAME = 'pgbench_log';

export function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** A /proc reading, or null when the process is gone (its death is reported by deathReason()). */
function tryRead<T>(read: () => T): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}

function where(plan: RunPlan): string {
  return `${plan.round === 0 ? 'verification' : `round ${plan.round}`} (${plan.workload.name}, -M ${plan.mode}, ${plan.clients} clients)`;
}

/** One pgbench run against one target, with the target process's CPU and RSS around it and latencies from its log. */
export async function measure(plan: RunPlan, context: RunContext): Promise<RunRow> {
  const { target, workload, mode, clients } = plan;
  const durationS = pgbenchDurationS(plan.durationS, clients);
  const { options, deaths } = context;
  const startedAt = new Date().toISOString();
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-bench-log-'));
  const roots = context.serverPids();
  const serverBefore = tryRead(() => readServerCpu(roots));
  const machineBefore = tryRead(readMachineTicks);
  const cpuBefore = target.pid === null ? null : tryRead(() => readCpuTimes(target.pid!));
  const run = await runPgbench(context.pgbenchBin, {
    endpoint: target.endpoint, workload, mode, clients, threads: options.threads, durationS, logPrefix: path.join(logDir, LOG_NAME), signal: context.signal,
  }).catch((error: unknown) => {
    rmSync(logDir, { recursive: true, force: true });
    throw error;
  });
  // A target killed mid-run fails pgbench before its own exit event arrives: give it a moment to show.
  if (run.problem !== null && target.pid !== null) await sleep(250);
  const death = target.deathReason();
  let cpuSeconds: number | null = null;
  let userCpuSeconds: number | null = null;
  let rssBytes: number | null = null;
  if (death === null && target.pid !== null && cpuBefore !== null) {
    const cpuAfter = tryRead(() => readCpuTimes(target.pid!));
    if (cpuAfter !== null) {
      userCpuSeconds = cpuAfter.user - cpuBefore.user;
      cpuSeconds = userCpuSeconds + cpuAfter.system - cpuBefore.system;
    }
    rssBytes = tryRead(() => readRssBytes(target.pid!));
  }
  const serverAfter = tryRead(() => readServerCpu(roots));
  const machineAfter = tryRead(readMachineTicks);
  const serverUsed: CpuReading | null =
    serverBefore === null || serverAfter === null ? null : { user: serverAfter.user - serverBefore.user, total: serverAfter.total - serverBefore.total };
  const machineTicks = machineBefore === null || machineAfter === null ? 0 : machineAfter.all - machineBefore.all;
  const loadAvg1 = os.loadavg()[0]!;
  // After every reading of the target: parsing costs only the bench's own CPU, between runs.
  const latency = readLatencyLogs(logDir, LOG_NAME);
  if (death !== null && !deaths.has(target.name)) deaths.set(target.name, `during ${where(plan)}: ${death}`);
  const { summary } = run;
  const problem = death !== null ? `target process died: ${firstLine(death)}${run.problem ? `; pgbench: ${run.problem}` : ''}` : run.problem;
  return {
    round: plan.round, target: target.name, workload: workload.name, mode, clients, threads: Math.min(options.threads, clients), durationS, startedAt,
    ok: problem === null,
    problem,
    tps: summary.tps,
    latencyAvgMs: summary.latencyAvgMs,
    latencyMeanMs: latency.meanMs,
    latencyP99Ms: latency.p99Ms,
    initialConnectionMs: summary.initialConnectionMs,
    transactions: summary.transactions,
    failedTransactions: summary.failed,
    abortedClients: summary.abortedClients,
    cpuSeconds,
    cpuUsPerTxn: cpuMicrosPerTransaction(cpuSeconds, summary.transactions),
    userCpuUsPerTxn: cpuMicrosPerTransaction(userCpuSeconds, summary.transactions),
    rssBytes,
    serverCpuUsPerTxn: cpuMicrosPerTransaction(serverUsed?.total ?? null, summary.transactions),
    serverUserCpuUsPerTxn: cpuMicrosPerTransaction(serverUsed?.user ?? null, summary.transactions),
    idlePercent: machineTicks > 0 ? (100 * (machineAfter!.idle - machineBefore!.idle)) / machineTicks : null,
    loadAvg1,
    stderr: stderrExcerpt(run.stderr),
  };
}

export function describeRow(row: RunRow): string {
  const user = row.userCpuUsPerTxn === null ? '' : ` (user ${row.userCpuUsPerTxn.toFixed(1)})`;
  const cpu = row.cpuUsPerTxn === null ? '' : `, ${row.cpuUsPerTxn.toFixed(1)} CPU µs/txn${user}, RSS ${((row.rssBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;
  const servers = row.serverCpuUsPerTxn === null ? '' : `, servers ${row.serverCpuUsPerTxn.toFixed(1)} µs/txn (user ${row.serverUserCpuUsPerTxn?.toFixed(1) ?? '–'})`;
  const idle = row.idlePercent === null ? '' : `, idle ${row.idlePercent.toFixed(1)}%`;
  const latency = `latency mean ${row.latencyMeanMs?.toFixed(3) ?? '–'} ms, p99 ${row.latencyP99Ms?.toFixed(3) ?? '–'} ms`;
  return row.ok ? `${row.tps?.toFixed(0)} tps, ${latency}${cpu}${servers}${idle}, load ${row.loadAvg1.toFixed(1)}` : `FAILED: ${row.problem}`;
}

function label(group: RunGroup, target: string): string {
  return `${target} ${group.workload.name} ${group.mode} ×${group.clients}`;
}

/**
 * 1 s per target, workload and mode, at the workload's highest client count: shows each path
 * works (and admits that many clients) before anything is measured, and warms up. Failures are
 * recorded, not fatal.
 */
export async function verifyTargets(groups: readonly RunGroup[], running: ReadonlyMap<string, RunningTarget>, context: RunContext): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  const done = new Set<string>();
  const highest = new Map<string, number>();
  for (const group of groups) highest.set(group.workload.name, Math.max(group.clients, highest.get(group.workload.name) ?? 0));
  for (const group of groups) {
    if (group.clients !== highest.get(group.workload.name)) continue;
    for (const spec of group.targets) {
      const target = running.get(spec.name);
      const key = `${spec.name} ${group.workload.name} ${group.mode}`;
      if (!target || context.deaths.has(spec.name) || done.has(key)) continue;
      done.add(key);
      const row = await measure({ round: 0, target, workload: group.workload, mode: group.mode, clients: group.clients, durationS: 1 }, context);
      context.log(`verify ${label(group, spec.name)}: ${describeRow(row)}`);
      rows.push(row);
    }
  }
  return rows;
}

/**
 * The targets of a group in the order they run in `round`: as listed in odd rounds, reversed in
 * even ones, so that neighbours stay back to back and no target always runs first after another
 * group. With the same build in both slots of `--against`, the first ran extended 4% slower.
 */
export function roundOrder<T>(targets: readonly T[], round: number): readonly T[] {
  return round % 2 === 1 ? targets : [...targets].reverse();
}

/** The measured rounds: every group in order, its targets back to back (roundOrder). */
export async function measureAll(groups: readonly RunGroup[], running: ReadonlyMap<string, RunningTarget>, context: RunContext): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  const { repeats, durationS } = context.options;
  for (let round = 1; round <= repeats; round++) {
    for (const group of groups) {
      for (const spec of roundOrder(group.targets, round)) {
        const target = running.get(spec.name);
        if (!target || context.deaths.has(spec.name)) continue;
        const row = await measure({ round, target, workload: group.workload, mode: group.mode, clients: group.clients, durationS }, context);
        context.log(`round ${round}/${repeats} ${label(group, spec.name)}: ${describeRow(row)}`);
        rows.push(row);
      }
    }
  }
  return rows;
}
