// `npm run bench`: pgbench against each target (direct Postgres, the ambassador in session and
// transaction pooling, PgBouncer in both) on a throwaway local cluster, with the results in
// bench/results/latest.{json,md} and on stdout. Options: see USAGE in cli.ts.
//
// Order of work: prepare targets (build the ambassador, install pgbouncer if missing), start the
// cluster (primary only), pgbench -i once (direct), start every target, a 1 s verification run per
// target and mode (also a warm-up), then the measured runs: for each round, workload and mode,
// every target that runs in that mode back to back, so machine noise hits the targets alike and
// each round gives one ratio per pair (target/baseline, and the COMPARISONS such as
// ambassador-txn / pgbouncer). The baseline is the first target.
//
// Nothing about one target stops the others: a target that cannot be prepared or started is
// reported as unavailable; a run with an error (failed transactions, an aborted client, a non-zero
// exit), in verification or measured, is reported as a failed run with pgbench's stderr in the
// JSON; a target whose process dies is reported, and its remaining runs are skipped. Any of these
// makes the exit code 1. Targets and cluster are stopped in every case, also on SIGINT/SIGTERM.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { startCluster, type LocalCluster } from '../src/demo/cluster.ts';
import { parseCli, targetModes, USAGE, type BenchOptions } from './cli.ts';
import { initPgbench, pgbenchVersion, runPgbench, stderrExcerpt, WORKLOADS, type Endpoint, type QueryMode, type Workload } from './pgbench.ts';
import { readCpuSeconds, readRssBytes } from './proc.ts';
import {
  cpuMicrosPerTransaction, renderComparisons, renderMarkdown, renderTable, summarize,
  type BenchReport, type MachineFacts, type RunRow, type TargetProblem,
} from './report.ts';
import { COMPARISONS, ROOT, type RunningTarget } from './targets.ts';

const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

/** Everything started that must be stopped: cleanup() is idempotent and safe from a signal handler. */
class Resources {
  cluster: LocalCluster | undefined;
  readonly targets: RunningTarget[] = [];
  readonly abort = new AbortController();
  #cleaning: Promise<void> | undefined;

  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      this.abort.abort();
      const results = await Promise.allSettled(this.targets.map((target) => target.stop()));
      if (this.cluster) results.push(...(await Promise.allSettled([this.cluster.stop()])));
      for (const result of results) if (result.status === 'rejected') log(`cleanup: ${(result.reason as Error).message}`);
    })();
    return this.#cleaning;
  }

  killNow(): void {
    for (const target of this.targets) target.killNow();
  }
}

function installSignalHandlers(resources: Resources): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      resources.killNow();
      process.exit(1); // the cluster's reaper kills the postmasters on exit
    }
    signalled = true;
    log(`${signal}: stopping targets and the cluster`);
    void resources.cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => resources.killNow());
}

async function machineFacts(cluster: LocalCluster, pgbenchBin: string, loadAvgAtStart: number[]): Promise<MachineFacts> {
  const [row] = await cluster.primary.query<{ server_version: string }>('SHOW server_version');
  let gitCommit: string | null = null;
  try {
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    node: process.version,
    postgres: row?.server_version ?? `${cluster.binaries.version}`,
    pgbench: await pgbenchVersion(pgbenchBin),
    gitCommit,
    loadAvgAtStart,
  };
}

interface RunPlan {
  round: number;
  target: RunningTarget;
  workload: Workload;
  mode: QueryMode;
  durationS: number;
}

/** Targets whose process died, by name (the first reason is kept). */
type Deaths = Map<string, string>;

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** A /proc reading, or null when the process is gone (its death is reported by deathReason()). */
function tryRead(read: () => number): number | null {
  try {
    return read();
  } catch {
    return null;
  }
}

/** One pgbench run against one target, with the target process's CPU and RSS around it. */
async function measure(plan: RunPlan, options: BenchOptions, pgbenchBin: string, deaths: Deaths, signal: AbortSignal): Promise<RunRow> {
  const { target, workload, mode, durationS } = plan;
  const startedAt = new Date().toISOString();
  const cpuBefore = target.pid === null ? null : tryRead(() => readCpuSeconds(target.pid!));
  const run = await runPgbench(pgbenchBin, { endpoint: target.endpoint, workload, mode, clients: options.clients, threads: options.threads, durationS, signal });
  // A target killed mid-run fails pgbench before its own exit event arrives: give it a moment to show.
  if (run.problem !== null && target.pid !== null) await sleep(250);
  const death = target.deathReason();
  let cpuSeconds: number | null = null;
  let rssBytes: number | null = null;
  if (death === null && target.pid !== null && cpuBefore !== null) {
    const cpuAfter = tryRead(() => readCpuSeconds(target.pid!));
    cpuSeconds = cpuAfter === null ? null : cpuAfter - cpuBefore;
    rssBytes = tryRead(() => readRssBytes(target.pid!));
  }
  if (death !== null && !deaths.has(target.name)) deaths.set(target.name, `during ${plan.round === 0 ? 'verification' : `round ${plan.round}`} (${workload.name}, -M ${mode}): ${death}`);
  const { summary } = run;
  const problem = death !== null ? `target process died: ${firstLine(death)}${run.problem ? `; pgbench: ${run.problem}` : ''}` : run.problem;
  return {
    round: plan.round, target: target.name, workload: workload.name, mode, clients: options.clients, threads: options.threads, durationS, startedAt,
    ok: problem === null,
    problem,
    tps: summary.tps,
    latencyAvgMs: summary.latencyAvgMs,
    initialConnectionMs: summary.initialConnectionMs,
    transactions: summary.transactions,
    failedTransactions: summary.failed,
    abortedClients: summary.abortedClients,
    cpuSeconds,
    cpuUsPerTxn: cpuMicrosPerTransaction(cpuSeconds, summary.transactions),
    rssBytes,
    loadAvg1: os.loadavg()[0]!,
    stderr: stderrExcerpt(run.stderr),
  };
}

function describeRow(row: RunRow): string {
  const cpu = row.cpuUsPerTxn === null ? '' : `, ${row.cpuUsPerTxn.toFixed(1)} CPU µs/txn, RSS ${((row.rssBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;
  return row.ok
    ? `${row.tps?.toFixed(0)} tps, latency ${row.latencyAvgMs} ms${cpu}, load ${row.loadAvg1.toFixed(1)}`
    : `FAILED: ${row.problem}`;
}

/** The (workload, mode) pairs a target runs in, in run order. */
function workOf(target: RunningTarget, modesOf: Map<string, QueryMode[]>): Array<{ workload: Workload; mode: QueryMode }> {
  const modes = modesOf.get(target.name) ?? [];
  return WORKLOADS.flatMap((workload) => workload.modes.filter((mode) => modes.includes(mode)).map((mode) => ({ workload, mode })));
}

/** 1 s per target, workload and mode: shows each path works before anything is measured, and warms up. Failures are recorded, not fatal. */
async function verifyTargets(targets: RunningTarget[], modesOf: Map<string, QueryMode[]>, options: BenchOptions, pgbenchBin: string, deaths: Deaths, signal: AbortSignal): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  for (const target of targets) {
    for (const { workload, mode } of workOf(target, modesOf)) {
      if (deaths.has(target.name)) break;
      const row = await measure({ round: 0, target, workload, mode, durationS: 1 }, options, pgbenchBin, deaths, signal);
      log(`verify ${target.name} ${workload.name} ${mode}: ${describeRow(row)}`);
      rows.push(row);
    }
  }
  return rows;
}

async function measureAll(targets: RunningTarget[], modesOf: Map<string, QueryMode[]>, options: BenchOptions, pgbenchBin: string, deaths: Deaths, signal: AbortSignal): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  for (let round = 1; round <= options.repeats; round++) {
    for (const workload of WORKLOADS) {
      for (const mode of workload.modes.filter((m) => options.modes.includes(m))) {
        for (const target of targets) {
          if (!modesOf.get(target.name)?.includes(mode) || deaths.has(target.name)) continue;
          const row = await measure({ round, target, workload, mode, durationS: options.durationS }, options, pgbenchBin, deaths, signal);
          log(`round ${round}/${options.repeats} ${target.name} ${workload.name} ${mode}: ${describeRow(row)}`);
          rows.push(row);
        }
      }
    }
  }
  return rows;
}

function writeResults(report: BenchReport): string[] {
  const dir = path.join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const files = [path.join(dir, 'latest.json'), path.join(dir, 'latest.md')];
  writeFileSync(files[0]!, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(files[1]!, renderMarkdown(report));
  return files;
}

async function main(): Promise<number> {
  const startedMs = Date.now();
  let options: BenchOptions | null;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!options) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const resources = new Resources();
  installSignalHandlers(resources);
  const signal = resources.abort.signal;
  const unavailable: TargetProblem[] = [];
  const deaths: Deaths = new Map();
  const modesOf = new Map(options.targets.map((target) => [target.name, targetModes(target, options)]));
  const details = new Map<string, string>();
  let verification: RunRow[];
  let rows: RunRow[];
  let facts: MachineFacts;
  try {
    const loadAvgAtStart = os.loadavg();
    log(`load average at start: ${loadAvgAtStart.map((load) => load.toFixed(2)).join(' ')} (${os.availableParallelism()} CPUs)`);
    const prepared = [];
    for (const spec of options.targets) {
      try {
        await spec.prepare?.(log);
        prepared.push(spec);
      } catch (error) {
        const reason = `prepare failed: ${(error as Error).message}`;
        log(`${spec.name}: unavailable (${reason}); continuing without it`);
        unavailable.push({ target: spec.name, reason });
      }
    }
    const cluster = (resources.cluster = await startCluster({ replicas: 0, log }));
    const pgbenchBin = cluster.binaries.has('pgbench') ? cluster.binaries.path('pgbench') : 'pgbench';
    const { user, password } = cluster.users.app;
    const direct: Endpoint = { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database };
    log(`pgbench -i -s ${options.scale} (direct)`);
    await initPgbench(pgbenchBin, direct, options.scale, signal);
    facts = await machineFacts(cluster, pgbenchBin, loadAvgAtStart);
    for (const spec of prepared) {
      try {
        const target = await spec.start({ cluster, clients: options.clients, poolSize: options.poolSize, log });
        resources.targets.push(target);
        if (target.details) details.set(target.name, target.details);
        log(`${spec.name}: runs in ${modesOf.get(spec.name)!.join(', ')}`);
      } catch (error) {
        const reason = `start failed: ${(error as Error).message}`;
        log(`${spec.name}: unavailable (${firstLine(reason)}); continuing without it`);
        unavailable.push({ target: spec.name, reason });
      }
    }
    verification = await verifyTargets(resources.targets, modesOf, options, pgbenchBin, deaths, signal);
    rows = await measureAll(resources.targets, modesOf, options, pgbenchBin, deaths, signal);
  } finally {
    await resources.cleanup();
  }
  const baseline = options.targets[0]!.name;
  const deadTargets = [...deaths].map(([target, reason]) => ({ target, reason }));
  const report: BenchReport = {
    facts,
    settings: {
      durationS: options.durationS, repeats: options.repeats, clients: options.clients, threads: options.threads, scale: options.scale,
      targets: options.targets.map((target) => target.name),
      baseline,
      workloads: WORKLOADS.map((w) => ({ name: w.name, description: w.description, modes: w.modes.filter((m) => options.modes.includes(m)) })),
      notes: [
        ...options.targets.map(
          (target) =>
            `${target.name}: ${target.description}${details.has(target.name) ? ` [${details.get(target.name)}]` : ''}; modes: ${modesOf.get(target.name)!.join(', ')}`,
        ),
        `--pool-size ${options.poolSize}: server connections of the transaction-pooling targets; session-pooling targets get max(${options.poolSize}, clients) = ${Math.max(options.poolSize, options.clients)}`,
        'every run: one connection per client for the whole run (no -C), --no-vacuum, no progress reports, PGSSLMODE=disable',
        'CPU µs/txn: user+system CPU of the target process (/proc/<pid>/stat; for pgbouncer its single process) during the run / transactions processed; RSS: VmRSS after the run',
      ],
    },
    summary: summarize(rows, baseline, COMPARISONS),
    failedRuns: rows.filter((row) => !row.ok).length,
    unavailableTargets: unavailable,
    deadTargets,
    wallTimeS: (Date.now() - startedMs) / 1000,
    verification,
    runs: rows,
  };
  const files = writeResults(report);
  process.stdout.write(`\n${renderTable(report.summary)}\n\n${renderComparisons(report.summary)}\n\n`);
  log(`wrote ${files.map((file) => path.relative(ROOT, file)).join(', ')}; wall time ${report.wallTimeS.toFixed(1)} s`);
  const failedVerification = verification.filter((row) => !row.ok).length;
  if (failedVerification > 0) log(`${failedVerification} verification run(s) failed; see bench/results/latest.md`);
  if (report.failedRuns > 0) log(`${report.failedRuns} run(s) failed; see bench/results/latest.md`);
  for (const { target, reason } of unavailable) log(`${target} unavailable: ${firstLine(reason)}`);
  for (const { target, reason } of deadTargets) log(`${target} died ${firstLine(reason)}`);
  return report.failedRuns > 0 || failedVerification > 0 || unavailable.length > 0 || deadTargets.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
