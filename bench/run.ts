// `npm run bench`: pgbench against each target (direct Postgres, the ambassador, ...) on a
// throwaway local cluster, with the results in bench/results/latest.{json,md} and on stdout.
//
//   npm run bench -- [--duration S | --quick] [--repeat N] [--clients N] [--threads N] [--scale N]
//                    [--targets direct,ambassador] [--modes simple,extended,prepared]
//
// Order of work: prepare targets (build), start the cluster (primary only), pgbench -i once
// (direct), start every target, a 1 s verification run per target and mode (also a warm-up), then
// the measured runs: for each round, workload and mode, every target back to back, so machine
// noise hits the targets alike and each round gives one target/baseline ratio. The baseline is the
// first target. A run with an error (failed transactions, an aborted client, a non-zero exit)
// counts as failed and makes the exit code 1; a target process that dies ends the bench.
// Targets and cluster are stopped in every case, also on SIGINT/SIGTERM.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { startCluster, type LocalCluster } from '../src/demo/cluster.ts';
import { initPgbench, pgbenchVersion, QUERY_MODES, runPgbench, WORKLOADS, type Endpoint, type QueryMode, type Workload } from './pgbench.ts';
import { readCpuSeconds, readRssBytes } from './proc.ts';
import { cpuMicrosPerTransaction, renderMarkdown, renderTable, summarize, type BenchReport, type MachineFacts, type RunRow } from './report.ts';
import { ROOT, TARGETS, type RunningTarget, type TargetSpec } from './targets.ts';

const USAGE = `usage: npm run bench -- [--duration S | --quick] [--repeat N] [--clients N] [--threads N] [--scale N]
                        [--targets ${TARGETS.map((t) => t.name).join(',')}] [--modes ${QUERY_MODES.join(',')}]`;

interface BenchOptions {
  durationS: number;
  repeats: number;
  clients: number;
  threads: number;
  scale: number;
  targets: TargetSpec[];
  modes: QueryMode[];
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} expects a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

function pick<T>(name: string, text: string | undefined, all: readonly T[], key: (item: T) => string): T[] {
  if (text === undefined) return [...all];
  return text.split(',').map((wanted) => {
    const found = all.find((item) => key(item) === wanted.trim());
    if (!found) throw new Error(`--${name}: unknown ${JSON.stringify(wanted)}; expected some of ${all.map(key).join(', ')}`);
    return found;
  });
}

function parseCli(argv: string[]): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' }, quick: { type: 'boolean' }, repeat: { type: 'string' }, clients: { type: 'string' },
      threads: { type: 'string' }, scale: { type: 'string' }, targets: { type: 'string' }, modes: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return null;
  return {
    durationS: positiveInt('duration', values.duration, values.quick ? 5 : 15),
    repeats: positiveInt('repeat', values.repeat, 3),
    clients: positiveInt('clients', values.clients, 32),
    threads: positiveInt('threads', values.threads, 2),
    scale: positiveInt('scale', values.scale, 10),
    targets: pick('targets', values.targets, TARGETS, (target) => target.name),
    modes: pick('modes', values.modes, QUERY_MODES, (mode) => mode),
  };
}

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

/** One pgbench run against one target, with the target process's CPU and RSS around it. */
async function measure(plan: RunPlan, options: BenchOptions, pgbenchBin: string, signal: AbortSignal): Promise<RunRow> {
  const { target, workload, mode, durationS } = plan;
  const startedAt = new Date().toISOString();
  const cpuBefore = target.pid === null ? null : readCpuSeconds(target.pid);
  const run = await runPgbench(pgbenchBin, { endpoint: target.endpoint, workload, mode, clients: options.clients, threads: options.threads, durationS, signal });
  target.assertAlive();
  const cpuSeconds = target.pid === null || cpuBefore === null ? null : readCpuSeconds(target.pid) - cpuBefore;
  const { summary } = run;
  return {
    round: plan.round, target: target.name, workload: workload.name, mode, clients: options.clients, threads: options.threads, durationS, startedAt,
    ok: run.problem === null,
    problem: run.problem,
    tps: summary.tps,
    latencyAvgMs: summary.latencyAvgMs,
    initialConnectionMs: summary.initialConnectionMs,
    transactions: summary.transactions,
    failedTransactions: summary.failed,
    abortedClients: summary.abortedClients,
    cpuSeconds,
    cpuUsPerTxn: cpuMicrosPerTransaction(cpuSeconds, summary.transactions),
    rssBytes: target.pid === null ? null : readRssBytes(target.pid),
    loadAvg1: os.loadavg()[0]!,
  };
}

function describeRow(row: RunRow): string {
  const cpu = row.cpuUsPerTxn === null ? '' : `, ${row.cpuUsPerTxn.toFixed(1)} CPU µs/txn, RSS ${((row.rssBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;
  return row.ok
    ? `${row.tps?.toFixed(0)} tps, latency ${row.latencyAvgMs} ms${cpu}, load ${row.loadAvg1.toFixed(1)}`
    : `FAILED: ${row.problem}`;
}

/** 1 s per target, workload and mode: proves each path works before anything is measured, and warms up. */
async function verifyTargets(targets: RunningTarget[], options: BenchOptions, pgbenchBin: string, signal: AbortSignal): Promise<void> {
  for (const target of targets) {
    for (const workload of WORKLOADS) {
      for (const mode of workload.modes.filter((m) => options.modes.includes(m))) {
        const row = await measure({ round: 0, target, workload, mode, durationS: 1 }, options, pgbenchBin, signal);
        log(`verify ${target.name} ${workload.name} ${mode}: ${describeRow(row)}`);
        if (!row.ok) throw new Error(`verification run through ${target.name} (${workload.name}, -M ${mode}) failed: ${row.problem}`);
      }
    }
  }
}

async function measureAll(targets: RunningTarget[], options: BenchOptions, pgbenchBin: string, signal: AbortSignal): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  for (let round = 1; round <= options.repeats; round++) {
    for (const workload of WORKLOADS) {
      for (const mode of workload.modes.filter((m) => options.modes.includes(m))) {
        for (const target of targets) {
          const row = await measure({ round, target, workload, mode, durationS: options.durationS }, options, pgbenchBin, signal);
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
  let rows: RunRow[];
  let facts: MachineFacts;
  try {
    const loadAvgAtStart = os.loadavg();
    for (const spec of options.targets) await spec.prepare?.(log);
    const cluster = (resources.cluster = await startCluster({ replicas: 0, log }));
    const pgbenchBin = cluster.binaries.has('pgbench') ? cluster.binaries.path('pgbench') : 'pgbench';
    const { user, password } = cluster.users.app;
    const direct: Endpoint = { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database };
    log(`pgbench -i -s ${options.scale} (direct)`);
    await initPgbench(pgbenchBin, direct, options.scale, signal);
    facts = await machineFacts(cluster, pgbenchBin, loadAvgAtStart);
    for (const spec of options.targets) resources.targets.push(await spec.start({ cluster, clients: options.clients, log }));
    await verifyTargets(resources.targets, options, pgbenchBin, signal);
    rows = await measureAll(resources.targets, options, pgbenchBin, signal);
  } finally {
    await resources.cleanup();
  }
  const baseline = options.targets[0]!.name;
  const report: BenchReport = {
    facts,
    settings: {
      durationS: options.durationS, repeats: options.repeats, clients: options.clients, threads: options.threads, scale: options.scale,
      targets: options.targets.map((target) => target.name),
      baseline,
      workloads: WORKLOADS.map((w) => ({ name: w.name, description: w.description, modes: w.modes.filter((m) => options.modes.includes(m)) })),
      notes: [
        ...options.targets.map((target) => `${target.name}: ${target.description}`),
        'every run: one connection per client for the whole run (no -C), --no-vacuum, no progress reports, PGSSLMODE=disable',
        'CPU µs/txn: user+system CPU of the target process (/proc/<pid>/stat) during the run / transactions processed; RSS: VmRSS after the run',
      ],
    },
    summary: summarize(rows, baseline),
    failedRuns: rows.filter((row) => !row.ok).length,
    wallTimeS: (Date.now() - startedMs) / 1000,
    runs: rows,
  };
  const files = writeResults(report);
  process.stdout.write(`\n${renderTable(report.summary)}\n\n`);
  log(`wrote ${files.map((file) => path.relative(ROOT, file)).join(', ')}; wall time ${report.wallTimeS.toFixed(1)} s`);
  if (report.failedRuns > 0) log(`${report.failedRuns} run(s) failed; see bench/results/latest.md`);
  return report.failedRuns > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
