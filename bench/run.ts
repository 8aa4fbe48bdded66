// `npm run bench`: pgbench against each target (direct Postgres, the ambassador in session,
// transaction and read/write-splitting setups, PgBouncer in transaction and session pooling) on a
// throwaway local cluster, then idle clients held open for memory; results in
// <--out>/latest.{json,md,svg} (default bench/results) and on stdout. Options: see USAGE in cli.ts.
//
// Order of work: prepare targets (build the ambassador, install pgbouncer if missing), start the
// cluster (primary, plus 2 replicas when split work is selected; max_connections sized for every
// pool at once, see cluster.ts), pgbench -i once (direct) and wait for the replicas to replay it,
// start every target that has work, a 1 s verification run per target, workload and mode (also a
// warm-up), then the measured runs: for each round, each (workload, clients, mode) group runs its
// targets back to back, so machine noise hits the targets alike and each round gives one ratio per
// pair (target/baseline, and the COMPARISONS such as ambassador-txn / pgbouncer). The baseline is
// the first target. Then the pgbench targets stop, and the memory bench (memory.ts) starts its own
// instances, one at a time.
//
// Nothing about one target stops the others: a target that cannot be prepared or started is
// reported as unavailable; a run with an error (failed transactions, an aborted client, a non-zero
// exit), in verification or measured, is reported as a failed run with pgbench's stderr in the
// JSON; a target whose process dies is reported, and its remaining runs are skipped. Any of these
// makes the exit code 1. Targets and cluster are stopped in every case, also on SIGINT/SIGTERM.

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { LocalCluster } from '../src/demo/cluster.ts';
import { chartPanels, renderChart } from './chart.ts';
import { estimateSeconds, memoryTargets, parseCli, runGroups, targetModes, USAGE, type BenchOptions, type RunGroup } from './cli.ts';
import { optionsOrExitCode } from './options.ts';
import { hostFacts, replicaTransactions, requiredMaxConnections, startBenchCluster, waitForReplicas } from './cluster.ts';
import { issueGoals } from './goals.ts';
import { renderComparisons, renderMarkdown, renderTable } from './markdown.ts';
import { MEMORY_DEFAULTS, measureIdleMemory } from './memory.ts';
import { resolveCommit } from './other-build.ts';
import { initPgbench, pgbenchVersion, type Endpoint } from './pgbench.ts';
import { summarize, summarizeScaling, type BenchReport, type MachineFacts, type MemoryResult, type RunRow, type TargetProblem } from './report.ts';
import { firstLine, measureAll, verifyTargets, type Deaths, type RunContext } from './runs.ts';
import { COMPARISONS, LATENCY_REFERENCE, ROOT, type RunningTarget, type TargetSpec } from './targets.ts';

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
  return { ...(await hostFacts(cluster)), pgbench: await pgbenchVersion(pgbenchBin), loadAvgAtStart };
}

/** Builds the ambassador and installs pgbouncer as needed; a spec that cannot be prepared is reported and left out. */
async function prepareAll(specs: readonly TargetSpec[], unavailable: TargetProblem[]): Promise<TargetSpec[]> {
  const prepared: TargetSpec[] = [];
  for (const spec of specs) {
    try {
      await spec.prepare?.(log);
      prepared.push(spec);
    } catch (error) {
      const reason = `prepare failed: ${(error as Error).message}`;
      log(`${spec.name}: unavailable (${reason}); continuing without it`);
      unavailable.push({ target: spec.name, reason });
    }
  }
  return prepared;
}

interface Work {
  options: BenchOptions;
  groups: RunGroup[];
  /** Targets with pgbench work, prepared. */
  pgbenchSpecs: TargetSpec[];
  memorySpecs: TargetSpec[];
  maxClients: number;
}

interface Outcome {
  facts: MachineFacts;
  verification: RunRow[];
  rows: RunRow[];
  memory: MemoryResult[];
  details: Map<string, string>;
  maxConnections: number;
  replicas: number;
  /** Transactions the replicas ran while the pgbench targets were up (null without replicas). */
  replicaTransactions: number | null;
}

async function startTargets(work: Work, cluster: LocalCluster, resources: Resources, unavailable: TargetProblem[], details: Map<string, string>): Promise<Map<string, RunningTarget>> {
  const running = new Map<string, RunningTarget>();
  for (const spec of work.pgbenchSpecs) {
    try {
      const target = await spec.start({ cluster, clients: work.maxClients, poolSize: work.options.poolSize, nodeOptions: work.options.nodeOptions, log });
      resources.targets.push(target);
      running.set(target.name, target);
      if (target.details) details.set(target.name, target.details);
    } catch (error) {
      const reason = `start failed: ${(error as Error).message}`;
      log(`${spec.name}: unavailable (${firstLine(reason)}); continuing without it`);
      unavailable.push({ target: spec.name, reason });
    }
  }
  return running;
}

interface Failures {
  unavailable: TargetProblem[];
  deaths: Deaths;
}

/** Verification and measured rounds against every target with pgbench work; they are stopped at the end. */
async function measurePgbench(work: Work, cluster: LocalCluster, pgbenchBin: string, resources: Resources, failures: Failures) {
  const details = new Map<string, string>();
  const replicaBefore = cluster.replicas.length > 0 ? await replicaTransactions(cluster) : null;
  const running = await startTargets(work, cluster, resources, failures.unavailable, details);
  const serverPids = (): number[] => [cluster.primary, ...cluster.replicas].flatMap((server) => (server.pid === undefined ? [] : [server.pid]));
  const context: RunContext = { options: work.options, pgbenchBin, deaths: failures.deaths, signal: resources.abort.signal, log, serverPids };
  const verification = await verifyTargets(work.groups, running, context);
  const rows = await measureAll(work.groups, running, context);
  await Promise.all([...running.values()].map((target) => target.stop()));
  let replicaCount: number | null = null;
  if (replicaBefore !== null) {
    await sleep(1000); // the pools' server connections end, and their backends flush their statistics
    replicaCount = (await replicaTransactions(cluster)) - replicaBefore;
  }
  return { verification, rows, details, replicaTransactions: replicaCount };
}

/** The memory bench, one target at a time. */
async function measureMemory(work: Work, cluster: LocalCluster, resources: Resources): Promise<MemoryResult[]> {
  const { options } = work;
  const results: MemoryResult[] = [];
  for (const spec of work.memorySpecs) {
    log(`memory ${spec.name}: ${options.memoryClients} idle clients`);
    const context = { cluster, poolSize: options.poolSize, nodeOptions: options.nodeOptions, log, onStart: (target: RunningTarget) => resources.targets.push(target) };
    const { processes, concurrency, settleMs } = MEMORY_DEFAULTS;
    results.push(await measureIdleMemory(spec, context, { clients: options.memoryClients, processes, concurrency, settleMs, log }));
  }
  return results;
}

async function runEverything(work: Work, resources: Resources, failures: Failures): Promise<Outcome> {
  const { options, groups } = work;
  const loadAvgAtStart = os.loadavg();
  log(`load average at start: ${loadAvgAtStart.map((load) => load.toFixed(2)).join(' ')} (${os.availableParallelism()} CPUs)`);
  const replicas = groups.some((group) => group.workload.kind === 'split') ? 2 : 0;
  const maxConnections = requiredMaxConnections(work.pgbenchSpecs.map((spec) => spec.serverConnections({ clients: work.maxClients, poolSize: options.poolSize })));
  const cluster = (resources.cluster = await startBenchCluster(replicas, maxConnections, log));
  const pgbenchBin = cluster.binaries.has('pgbench') ? cluster.binaries.path('pgbench') : 'pgbench';
  const { user, password } = cluster.users.app;
  const direct: Endpoint = { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database };
  if (groups.length > 0) {
    log(`pgbench -i -s ${options.scale} (direct)`);
    await initPgbench(pgbenchBin, direct, options.scale, resources.abort.signal);
    await waitForReplicas(cluster, log);
  }
  const facts = await machineFacts(cluster, pgbenchBin, loadAvgAtStart);
  const pgbench = await measurePgbench(work, cluster, pgbenchBin, resources, failures);
  const memory = await measureMemory(work, cluster, resources);
  return { facts, ...pgbench, memory, maxConnections, replicas };
}

function settingsNotes(work: Work, outcome: Outcome): string[] {
  const { options } = work;
  const modes = (spec: TargetSpec): string => targetModes(spec, options).join(', ');
  return [
    ...options.targets.map((target) => {
      const details = outcome.details.get(target.name);
      return `${target.name}: ${target.description}${details ? ` [${details}]` : ''}; modes: ${modes(target)}`;
    }),
    `--pool-size ${options.poolSize}: server connections of the transaction-pooling targets (per host for ambassador-split); ` +
      `session-pooling targets get max(${options.poolSize}, highest client count) = ${Math.max(options.poolSize, work.maxClients)}`,
    `cluster: primary${outcome.replicas > 0 ? ` + ${outcome.replicas} streaming replicas (idle but for replaying the primary's WAL)` : ' only'}; ` +
      `max_connections ${outcome.maxConnections} (every target's pool at once)`,
    'every run: one connection per client for the whole run (no -C), --no-vacuum, no progress reports, PGSSLMODE=disable, -j min(threads, clients), ' +
      '-l per-transaction log in a temp dir (parsed after the CPU reading, then removed)',
    'latency mean and p99: from the -l log (p99: nearest rank over every completed transaction of the run); CPU µs/txn: user+system CPU ' +
      'of the target process (/proc/<pid>/stat; for pgbouncer its single process) during the run / transactions processed; user µs/txn: its user ' +
      'part alone (utime: the process\'s own work; the system part is the kernel\'s, much the same for every proxy); RSS: VmRSS after the run',
    'servers µs/txn: user+system CPU of the cluster\'s servers (every process under each postmaster, those that exited during the run ' +
      'included) from pgbench\'s start to its end, connections, autovacuum and WAL replay included, / transactions processed: what the ' +
      'database used behind each target, which shares the CPUs and their caches with it (its user part is in the run log); idle %: the ' +
      'whole machine\'s idle share of CPU time over the same span (/proc/stat)',
    'comparisons: per-round ratios of runs back to back, median over rounds; "latency added over direct" (1 client): ' +
      '(numerator mean latency - direct) / (denominator - direct), rounds where the denominator adds nothing left out',
    ...(work.memorySpecs.length > 0
      ? [
          `memory: ${options.memoryClients} raw-socket scram-sha-256 clients in ${MEMORY_DEFAULTS.processes} processes (${MEMORY_DEFAULTS.concurrency} logins in flight each) ` +
            `against a fresh instance of each target admitting ${options.memoryClients + 100}; per idle client = (VmRSS ${MEMORY_DEFAULTS.settleMs / 1000} s after the last login ` +
            '- VmRSS after one warm-up login) / clients still connected',
        ]
      : []),
  ];
}

function buildReport(work: Work, outcome: Outcome, failures: Failures, startedMs: number): BenchReport {
  const { options } = work;
  const baseline = options.targets[0]!.name;
  const summary = summarize(outcome.rows, baseline, { comparisons: COMPARISONS, latencyReference: LATENCY_REFERENCE });
  const scaling = summarizeScaling(outcome.rows);
  return {
    facts: outcome.facts,
    settings: {
      durationS: options.durationS, repeats: options.repeats, threads: options.threads, scale: options.scale, poolSize: options.poolSize,
      targets: options.targets.map((target) => target.name),
      baseline,
      workloads: options.workloads.map((workload) => ({
        name: workload.name, description: workload.description, kind: workload.kind,
        modes: workload.modes.filter((mode) => options.modes.includes(mode)),
        clients: [...new Set(work.groups.filter((group) => group.workload === workload).map((group) => group.clients))],
      })),
      memoryClients: work.memorySpecs.length > 0 ? options.memoryClients : null,
      notes: settingsNotes(work, outcome),
    },
    summary,
    scaling,
    splitCheck: outcome.replicaTransactions === null ? null : splitCheck(outcome),
    memory: outcome.memory,
    goals: issueGoals(summary, scaling, outcome.memory),
    failedRuns: outcome.rows.filter((row) => !row.ok).length,
    unavailableTargets: failures.unavailable,
    deadTargets: [...failures.deaths].map(([target, reason]) => ({ target, reason })),
    wallTimeS: (Date.now() - startedMs) / 1000,
    verification: outcome.verification,
    runs: outcome.rows,
  };
}

/** Transactions the replicas ran against those ambassador-split processed in read-only workloads. */
function splitCheck(outcome: Outcome): BenchReport['splitCheck'] {
  const reads = [...outcome.verification, ...outcome.rows].filter((row) => row.target === 'ambassador-split' && row.workload === 'split-select-only');
  return { replicaTransactions: outcome.replicaTransactions!, splitReadTransactions: reads.reduce((sum, row) => sum + (row.transactions ?? 0), 0) };
}

function writeResults(report: BenchReport, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const files = ['latest.json', 'latest.md', 'latest.svg'].map((name) => path.join(outDir, name));
  writeFileSync(files[0]!, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(files[1]!, renderMarkdown(report));
  writeFileSync(files[2]!, renderChart(chartPanels(report.summary, report.memory)));
  return files;
}

async function main(): Promise<number> {
  const startedMs = Date.now();
  const options = optionsOrExitCode(() => parseCli(process.argv.slice(2)), USAGE);
  if (typeof options === 'number') return options;
  if (options.against !== null) {
    // A ref that names no commit fails now, not after the cluster is up (prepare would leave the target out).
    try {
      resolveCommit(ROOT, options.against);
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n`);
      return 2;
    }
  }
  const resources = new Resources();
  installSignalHandlers(resources);
  const unavailable: TargetProblem[] = [];
  const deaths: Deaths = new Map();
  const groups = runGroups(options);
  log(`${groups.length} groups a round, ${options.repeats} rounds; estimated wall time ${Math.round(estimateSeconds(options) / 60)} min`);
  let work: Work;
  let outcome: Outcome;
  try {
    const withWork = options.targets.filter((target) => groups.some((group) => group.targets.includes(target)));
    const memorySpecs = memoryTargets(options);
    const prepared = await prepareAll([...new Set([...withWork, ...memorySpecs])], unavailable);
    work = {
      options,
      groups,
      pgbenchSpecs: withWork.filter((spec) => prepared.includes(spec)),
      memorySpecs: memorySpecs.filter((spec) => prepared.includes(spec)),
      maxClients: Math.max(1, ...groups.map((group) => group.clients)),
    };
    outcome = await runEverything(work, resources, { unavailable, deaths });
  } finally {
    await resources.cleanup();
  }
  const report = buildReport(work, outcome, { unavailable, deaths }, startedMs);
  const files = writeResults(report, options.outDir);
  process.stdout.write(`\n${renderTable(report.summary)}\n\n${renderComparisons(report.summary)}\n\n`);
  log(`wrote ${files.join(', ')}; wall time ${report.wallTimeS.toFixed(1)} s`);
  const failedVerification = report.verification.filter((row) => !row.ok).length;
  const failedMemory = report.memory.filter((result) => result.problem !== null).length;
  if (failedVerification > 0) log(`${failedVerification} verification run(s) failed; see ${files[1]}`);
  if (report.failedRuns > 0) log(`${report.failedRuns} run(s) failed; see ${files[1]}`);
  if (failedMemory > 0) log(`${failedMemory} memory measurement(s) incomplete; see ${files[1]}`);
  for (const { target, reason } of unavailable) log(`${target} unavailable: ${firstLine(reason)}`);
  for (const { target, reason } of report.deadTargets) log(`${target} died ${firstLine(reason)}`);
  const problems = report.failedRuns + failedVerification + failedMemory + unavailable.length + report.deadTargets.length;
  return problems > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
