// `npm run soak -- --minutes N`: mixed load through the ambassador for N minutes (default 10) on a
// throwaway local cluster, watching the ambassador process for growth; results in
// <--out>/latest.{json,md} and <--out>/soak-<time>.json (default soak/results). Options: cli.ts.
//
// Order of work: build dist/ (bench/targets.ts), start a primary and 1-2 streaming replicas
// (bench/cluster.ts, src/demo/cluster.ts: postgres runs as the `postgres` OS user when we are
// root), make the soak tables on the primary and wait for the replicas to replay them, start the
// built ambassador CLI as a child process (transaction pooling, read/write splitting over every
// host, scram-sha-256 clients, admin HTTP on an OS-chosen port, config in a temp dir), then the
// load (load.ts), then the checks at the end (uncommitted rows, reads on the replicas), the
// verdict (verdict.ts) and the report. Exit code 0 when the verdict passes, 1 when it fails or
// the soak itself fails, 2 for bad options.
//
// Everything started is stopped by pid: the ambassador (SIGTERM, SIGKILL after 5 s) and every
// postmaster (fast shutdown, SIGKILL later), on success, failure, SIGINT and SIGTERM; a second
// signal kills the ambassador at once and exits (the cluster's reaper kills the postmasters).

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { hostFacts, replicaTransactions, requiredMaxConnections, startBenchCluster, waitForReplicas } from '../bench/cluster.ts';
import type { Endpoint } from '../bench/pgbench.ts';
import { buildAmbassador, spawnAmbassador, type AmbassadorTarget } from '../bench/targets.ts';
import type { LocalCluster } from '../src/demo/cluster.ts';
import { optionsOrExitCode } from '../bench/options.ts';
import { parseSoakArgs, USAGE, type SoakOptions } from './cli.ts';
import { KIND_DESCRIPTIONS, WORK_KINDS } from './kinds.ts';
import { runLoad, type LoadResult } from './load.ts';
import { renderMarkdown } from './markdown.ts';
import { planRestarts, DOWN_MS, RESTART_GRACE_MS } from './replica-restarts.ts';
import { ROW_SAMPLES, type SoakFacts, type SoakReport } from './report.ts';
import { countUncommittedRows, createTables } from './schema.ts';
import { growthVerdict, soakVerdict } from './verdict.ts';
import { STEP_TIMEOUT_MS } from './worker.ts';

const log = (line: string): void => void process.stderr.write(`[soak] ${line}\n`);

/** Everything started that must be stopped: cleanup() is idempotent and safe from a signal handler. */
class Resources {
  cluster: LocalCluster | undefined;
  ambassador: AmbassadorTarget | undefined;
  #cleaning: Promise<void> | undefined;

  cleanup(): Promise<void> {
    this.#cleaning ??= (async () => {
      const results = await Promise.allSettled([this.ambassador?.stop()]);
      if (this.cluster) results.push(...(await Promise.allSettled([this.cluster.stop()])));
      for (const result of results) if (result.status === 'rejected') log(`cleanup: ${(result.reason as Error).message}`);
    })();
    return this.#cleaning;
  }

  killNow(): void {
    this.ambassador?.killNow();
  }
}

function installSignalHandlers(resources: Resources): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      resources.killNow();
      process.exit(1);
    }
    signalled = true;
    log(`${signal}: stopping the ambassador and the cluster`);
    void resources.cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => resources.killNow());
}

async function machineFacts(cluster: LocalCluster, loadAvgAtStart: number[]): Promise<SoakFacts> {
  return { ...(await hostFacts(cluster)), loadAvgAtStart, loadAvgAtEnd: [] };
}

function notes(options: SoakOptions): string[] {
  return [
    `ambassador: the production build (dist/, node bin/pg-ambassador.js) as a child process; pool.mode=transaction, pool.size=${options.poolSize} per host, ` +
      'routing.readWriteSplit over the primary and every replica (roles fixed), scram-sha-256 clients, upstream without TLS, logging at info, health defaults (1 s interval)',
    `every step is checked (row counts and values), and a wrong answer is an unexpected error; a step with no answer within ${STEP_TIMEOUT_MS / 1000} s is a hang (unexpected)`,
    `replica restarts: fast shutdown, ${DOWN_MS / 1000} s down, start; a lost-connection error (SQLSTATE 08xxx, 57P01-57P03, or a driver's connection-closed error) ` +
      `of an operation overlapping a restart, until ${RESTART_GRACE_MS / 1000} s after the replica is back, is expected; any other error is unexpected`,
    'disconnects: the disconnect kind destroys its own client sockets; the errors its clients see are expected (counted, not listed)',
    'latency is reported, never judged: the machine is shared and has 2 CPUs',
  ];
}

async function endChecks(direct: Endpoint, cluster: LocalCluster, replicasBefore: number, problems: string[]): Promise<{ uncommitted: number | null; replicaTxns: number | null }> {
  let uncommitted: number | null = null;
  let replicaTxns: number | null = null;
  try {
    uncommitted = await countUncommittedRows(direct);
  } catch (error) {
    problems.push(`could not count uncommitted rows: ${(error as Error).message}`);
  }
  try {
    replicaTxns = (await replicaTransactions(cluster)) - replicasBefore;
    if (replicaTxns <= 0) problems.push('the replicas ran no transactions during the load: read/write splitting sent nothing there');
  } catch (error) {
    problems.push(`could not read the replicas' transaction counts: ${(error as Error).message}`);
  }
  return { uncommitted, replicaTxns };
}

function buildReport(options: SoakOptions, facts: SoakFacts, ambassador: AmbassadorTarget, load: LoadResult, end: { uncommitted: number | null; replicaTxns: number | null }, startedMs: number): SoakReport {
  const growth = growthVerdict(load.samples, load.durationS);
  const totals = load.recorder.run.close();
  const unexpectedErrors = WORK_KINDS.reduce((sum, kind) => sum + totals[kind].unexpectedErrors, 0);
  const clientSocketsLeft = load.afterLoad.sample?.sockets.clientTcp ?? null;
  const verdict = soakVerdict({
    growth, unexpectedErrors, clientSocketsLeft, uncommittedRowsFound: end.uncommitted, ambassadorDied: load.ambassadorDied, problems: load.problems,
  });
  return {
    facts: { ...facts, loadAvgAtEnd: os.loadavg() },
    settings: {
      minutes: options.minutes, durationS: load.durationS, clients: options.clients, workers: options.workers, seed: options.seed, replicas: options.replicas,
      sampleSeconds: options.sampleSeconds, rowSeconds: options.sampleSeconds * ROW_SAMPLES, ambassador: ambassador.details ?? 'pg-ambassador',
      kinds: { ...KIND_DESCRIPTIONS }, restartPlan: planRestarts(load.durationS, options.replicas), notes: notes(options),
    },
    verdict,
    growth,
    totals,
    errors: load.recorder.errors.entries(),
    restarts: load.restarts,
    replicaTransactions: end.replicaTxns,
    uncommittedRowsFound: end.uncommitted,
    atStart: load.atStart,
    afterLoad: load.afterLoad,
    ambassadorLog: load.warnings,
    samples: load.samples,
    rows: load.rows,
    wallTimeS: (Date.now() - startedMs) / 1000,
  };
}

function writeResults(report: SoakReport, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const stamp = report.facts.date.replace(/[:.]/g, '-');
  const files = [path.join(outDir, 'latest.json'), path.join(outDir, 'latest.md'), path.join(outDir, `soak-${stamp}.json`)];
  writeFileSync(files[0]!, json);
  writeFileSync(files[1]!, renderMarkdown(report));
  writeFileSync(files[2]!, json);
  return files;
}

async function soak(options: SoakOptions, resources: Resources): Promise<SoakReport> {
  const startedMs = Date.now();
  const loadAvgAtStart = os.loadavg();
  await buildAmbassador(log);
  const hosts = 1 + options.replicas;
  const cluster = (resources.cluster = await startBenchCluster(options.replicas, requiredMaxConnections([options.poolSize * hosts]), log));
  const { user, password } = cluster.users.app;
  const direct: Endpoint = { host: cluster.primary.host, port: cluster.primary.port, user, password, database: cluster.database };
  await createTables(direct);
  await waitForReplicas(cluster, log);
  const context = { cluster, clients: options.clients, poolSize: options.poolSize, log };
  const ambassador = (resources.ambassador = await spawnAmbassador(context, 'ambassador', { pool: { mode: 'transaction', size: options.poolSize }, split: true }));
  const facts = await machineFacts(cluster, loadAvgAtStart);
  const replicasBefore = await replicaTransactions(cluster);
  const load = await runLoad(options, cluster, ambassador, log);
  const end = await endChecks(direct, cluster, replicasBefore, load.problems);
  return buildReport(options, facts, ambassador, load, end, startedMs);
}

async function main(): Promise<number> {
  const options = optionsOrExitCode(() => parseSoakArgs(process.argv.slice(2)), USAGE);
  if (typeof options === 'number') return options;
  log(`seed ${options.seed}; ${options.clients} clients: ${WORK_KINDS.map((kind) => `${options.workers[kind]} ${kind}`).join(', ')}; ${options.minutes} min`);
  const resources = new Resources();
  installSignalHandlers(resources);
  let report: SoakReport;
  try {
    report = await soak(options, resources);
  } finally {
    await resources.cleanup();
  }
  const files = writeResults(report, options.outDir);
  process.stdout.write(`\n${report.verdict.ok ? 'PASS' : 'FAIL'}${report.verdict.reasons.map((reason) => `\n- ${reason}`).join('')}\n`);
  log(`wrote ${files.join(', ')}; wall time ${(report.wallTimeS / 60).toFixed(1)} min`);
  return report.verdict.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
