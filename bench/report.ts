// The numbers of a bench run: raw rows in, per-(workload, mode, clients) summaries out. Pure (no
// I/O), unit-tested; markdown.ts renders them, chart.ts draws them, goals.ts judges them.
//
// Ratios compare like with like: within one round, a target's run is divided by the baseline's
// run of the same workload, mode and client count (they ran back to back), and the summary is the
// median of those per-round ratios, not a ratio of medians (ratios.ts). The same holds for the
// named comparisons (ambassador-txn / pgbouncer, ...), computed in every group where both targets
// ran: tps, CPU µs per transaction and p99 latency, plus, in 1-client groups, the latency added
// over direct Postgres. Scaling compares one target with itself at its two highest client counts.
// Failed runs count in `runs` but in no median or ratio. A run of a target with no measured
// process has null CPU and RSS.

import { addedLatencyRatios, median, pairRatios, scalingRatios } from './ratios.ts';
import type { HostFacts } from './cluster.ts';

export { median, pairRatios } from './ratios.ts';

export interface RunRow {
  round: number;
  target: string;
  workload: string;
  mode: string;
  clients: number;
  threads: number;
  /** pgbench's -T: --duration plus the connection allowance at many clients (pgbenchDurationS). */
  durationS: number;
  startedAt: string;
  ok: boolean;
  /** Why the run does not count (null when ok). */
  problem: string | null;
  tps: number | null;
  /** pgbench's "latency average" (derived by pgbench from duration, clients and transactions). */
  latencyAvgMs: number | null;
  /** Mean of the per-transaction latencies in pgbench's -l log. */
  latencyMeanMs: number | null;
  /** Nearest-rank 99th percentile of the per-transaction latencies in pgbench's -l log. */
  latencyP99Ms: number | null;
  initialConnectionMs: number | null;
  transactions: number | null;
  failedTransactions: number | null;
  abortedClients: number;
  /** CPU seconds (user + system) the target's process used during the run. */
  cpuSeconds: number | null;
  cpuUsPerTxn: number | null;
  /** The user-mode part of cpuUsPerTxn (utime): the proxy's own work, without the kernel's. */
  userCpuUsPerTxn: number | null;
  /** The target process's VmRSS right after the run. */
  rssBytes: number | null;
  /**
   * CPU (user + system) every process of the cluster's servers used during the run, per
   * transaction: what the same transactions cost the database behind this target. It is not the
   * same for every proxy: the servers share the CPUs and their caches with it.
   */
  serverCpuUsPerTxn: number | null;
  serverUserCpuUsPerTxn: number | null;
  /** How much of the whole machine's CPU time went idle during the run (0-100). */
  idlePercent: number | null;
  /** The machine's 1-minute load average right after the run (noise from other work shows here). */
  loadAvg1: number;
  /** pgbench's stderr (an excerpt when long), null when empty. */
  stderr: string | null;
}

export interface TargetSummary {
  target: string;
  runs: number;
  okRuns: number;
  medianTps: number | null;
  /** Median of pgbench's "latency average". */
  medianLatencyMs: number | null;
  medianLatencyMeanMs: number | null;
  medianLatencyP99Ms: number | null;
  medianCpuUsPerTxn: number | null;
  medianUserCpuUsPerTxn: number | null;
  medianServerCpuUsPerTxn: number | null;
  medianIdlePercent: number | null;
  maxRssBytes: number | null;
  /** target tps / baseline tps per round where both runs are ok (in round order); empty for the baseline. */
  ratios: number[];
  medianRatio: number | null;
}

/** numerator / denominator, as named in a Comparison. */
export interface ComparisonSpec {
  numerator: string;
  denominator: string;
  note: string;
}

/** Per-round values (in round order) and their median. */
export interface RatioSet {
  ratios: number[];
  median: number | null;
}

export interface ComparisonSummary extends ComparisonSpec {
  /** numerator tps / denominator tps per round where both runs are ok (in round order). */
  ratios: number[];
  medianRatio: number | null;
  /** Rounds in which both targets ran (ok or not). */
  rounds: number;
  /** numerator / denominator CPU µs per transaction (empty when either has no process). */
  cpu: RatioSet;
  /** The same for user CPU alone (the proxies' own work; their kernel time is much alike). */
  userCpu: RatioSet;
  /** numerator / denominator p99 latency. */
  p99: RatioSet;
  /** (numerator - reference) / (denominator - reference) mean latency; only in 1-client groups where the reference ran. */
  addedLatency: RatioSet | null;
}

export interface GroupSummary {
  workload: string;
  mode: string;
  clients: number;
  baseline: string;
  targets: TargetSummary[];
  /** The comparisons whose two targets both ran in this group, in the order given. */
  comparisons: ComparisonSummary[];
}

/** One target at its highest client count against its next highest, same workload and mode. */
export interface ScalingSummary {
  workload: string;
  mode: string;
  target: string;
  fromClients: number;
  toClients: number;
  /** tps at toClients / tps at fromClients per round where both runs are ok. */
  ratios: number[];
  medianRatio: number | null;
  runsAtTo: number;
  /** Runs at toClients that failed (aborted clients, failed transactions, pgbench errors, a dead target). */
  failedRunsAtTo: number;
  /** Summed over the runs at toClients. */
  failedTransactionsAtTo: number;
  abortedClientsAtTo: number;
}

/** The idle-connection memory of one target (memory.ts). */
export interface MemoryResult {
  target: string;
  /** Clients asked for. */
  clients: number;
  /** Clients that logged in and were still connected when RSS was read. */
  connected: number;
  failedLogins: number;
  /** First few login errors. */
  errors: string[];
  rssBeforeBytes: number | null;
  rssAfterBytes: number | null;
  /** (rssAfter - rssBefore) / connected. */
  bytesPerClient: number | null;
  /** From "go" to the last client logged in. */
  connectSeconds: number | null;
  /** Why the measurement is missing or incomplete; null when complete. */
  problem: string | null;
  details: string | null;
}

/** Verdict on one target of issue 9 (goals.ts). */
export interface GoalVerdict {
  goal: string;
  /** Which group or comparison it was read from. */
  where: string;
  value: number | null;
  /** e.g. ">= 0.9". */
  threshold: string;
  /** null: not measured in this run. */
  met: boolean | null;
  detail: string | null;
}

export interface MachineFacts extends HostFacts {
  pgbench: string;
  /** 1-, 5- and 15-minute load averages before the cluster started; above nproc means others share the CPUs. */
  loadAvgAtStart: number[];
}

export interface BenchSettings {
  durationS: number;
  repeats: number;
  threads: number;
  scale: number;
  poolSize: number;
  targets: string[];
  baseline: string;
  workloads: Array<{ name: string; description: string; kind: string; modes: readonly string[]; clients: readonly number[] }>;
  /** Idle clients of the memory bench, null when it did not run. */
  memoryClients: number | null;
  notes: string[];
}

/** A target that could not be measured (not installed, did not start) or died during the runs. */
export interface TargetProblem {
  target: string;
  reason: string;
}

export interface BenchReport {
  facts: MachineFacts;
  settings: BenchSettings;
  summary: GroupSummary[];
  scaling: ScalingSummary[];
  /**
   * Whether split reads reached the replicas: transactions the replicas ran while the pgbench
   * targets were up (health probes included) against those ambassador-split processed in
   * split-select-only; null without replicas.
   */
  splitCheck: { replicaTransactions: number; splitReadTransactions: number } | null;
  memory: MemoryResult[];
  goals: GoalVerdict[];
  failedRuns: number;
  /** Targets left out: their prepare or start failed. */
  unavailableTargets: TargetProblem[];
  /** Targets whose process exited during verification or the measured runs (their later runs were skipped). */
  deadTargets: TargetProblem[];
  wallTimeS: number;
  /** The 1 s runs (round 0) before the measured ones; they also warm up. Failures here do not stop the bench. */
  verification: RunRow[];
  runs: RunRow[];
}

/** CPU microseconds per transaction; null without a CPU reading or without transactions. */
export function cpuMicrosPerTransaction(cpuSeconds: number | null, transactions: number | null): number | null {
  if (cpuSeconds === null || !transactions) return null;
  return (cpuSeconds * 1e6) / transactions;
}

function present(values: ReadonlyArray<number | null>): number[] {
  return values.filter((value): value is number => value !== null);
}

function ratioSet(ratios: number[]): RatioSet {
  return { ratios, median: median(ratios) };
}

function summarizeTarget(rows: readonly RunRow[], target: string, baseline: string): TargetSummary {
  const mine = rows.filter((row) => row.target === target);
  const ok = mine.filter((row) => row.ok);
  const ratios = target === baseline ? [] : pairRatios(rows, target, baseline);
  const rss = present(ok.map((row) => row.rssBytes));
  return {
    target,
    runs: mine.length,
    okRuns: ok.length,
    medianTps: median(present(ok.map((row) => row.tps))),
    medianLatencyMs: median(present(ok.map((row) => row.latencyAvgMs))),
    medianLatencyMeanMs: median(present(ok.map((row) => row.latencyMeanMs))),
    medianLatencyP99Ms: median(present(ok.map((row) => row.latencyP99Ms))),
    medianCpuUsPerTxn: median(present(ok.map((row) => row.cpuUsPerTxn))),
    medianUserCpuUsPerTxn: median(present(ok.map((row) => row.userCpuUsPerTxn))),
    medianServerCpuUsPerTxn: median(present(ok.map((row) => row.serverCpuUsPerTxn))),
    medianIdlePercent: median(present(ok.map((row) => row.idlePercent))),
    maxRssBytes: rss.length > 0 ? Math.max(...rss) : null,
    ratios,
    medianRatio: median(ratios),
  };
}

export interface SummaryOptions {
  comparisons?: readonly ComparisonSpec[];
  /** The target latency is "added over" (direct Postgres); added-latency ratios need it in the group. */
  latencyReference?: string;
  /** Groups with this many clients get added-latency ratios (default 1: latency, not queueing). */
  addedLatencyClients?: number;
}

function summarizeComparison(rows: readonly RunRow[], comparison: ComparisonSpec, reference: string | null): ComparisonSummary {
  const roundsOf = (target: string): Set<number> => new Set(rows.filter((row) => row.target === target).map((row) => row.round));
  const denominatorRounds = roundsOf(comparison.denominator);
  const { numerator, denominator } = comparison;
  const ratios = pairRatios(rows, numerator, denominator);
  return {
    ...comparison,
    ratios,
    medianRatio: median(ratios),
    rounds: [...roundsOf(numerator)].filter((round) => denominatorRounds.has(round)).length,
    cpu: ratioSet(pairRatios(rows, numerator, denominator, 'cpuUsPerTxn')),
    userCpu: ratioSet(pairRatios(rows, numerator, denominator, 'userCpuUsPerTxn')),
    p99: ratioSet(pairRatios(rows, numerator, denominator, 'latencyP99Ms')),
    addedLatency: reference === null ? null : ratioSet(addedLatencyRatios(rows, numerator, denominator, reference)),
  };
}

function groupBy(rows: readonly RunRow[], key: (row: RunRow) => unknown[]): RunRow[][] {
  const groups = new Map<string, RunRow[]>();
  for (const row of rows) {
    const id = JSON.stringify(key(row));
    const group = groups.get(id);
    if (group) group.push(row);
    else groups.set(id, [row]);
  }
  return [...groups.values()];
}

/** One summary per (workload, mode, clients), in the order the rows first appear; targets likewise. */
export function summarize(rows: readonly RunRow[], baseline: string, options: SummaryOptions = {}): GroupSummary[] {
  const { comparisons = [], latencyReference, addedLatencyClients = 1 } = options;
  return groupBy(rows, (row) => [row.workload, row.mode, row.clients]).map((group) => {
    const first = group[0]!;
    const targets = [...new Set(group.map((row) => row.target))];
    const hasReference = latencyReference !== undefined && targets.includes(latencyReference) && first.clients === addedLatencyClients;
    return {
      workload: first.workload,
      mode: first.mode,
      clients: first.clients,
      baseline,
      targets: targets.map((target) => summarizeTarget(group, target, baseline)),
      comparisons: comparisons
        .filter((comparison) => targets.includes(comparison.numerator) && targets.includes(comparison.denominator))
        .map((comparison) => {
          const involvesReference = comparison.numerator === latencyReference || comparison.denominator === latencyReference;
          return summarizeComparison(group, comparison, hasReference && !involvesReference ? latencyReference! : null);
        }),
    };
  });
}

/** For each (workload, mode, target) run at two or more client counts: its highest count against the next highest. */
export function summarizeScaling(rows: readonly RunRow[]): ScalingSummary[] {
  const out: ScalingSummary[] = [];
  for (const group of groupBy(rows, (row) => [row.workload, row.mode, row.target])) {
    const counts = [...new Set(group.map((row) => row.clients))].sort((a, b) => a - b);
    if (counts.length < 2) continue;
    const toClients = counts[counts.length - 1]!;
    const fromClients = counts[counts.length - 2]!;
    const first = group[0]!;
    const atTo = group.filter((row) => row.clients === toClients);
    const ratios = scalingRatios(group, first.target, fromClients, toClients);
    out.push({
      workload: first.workload,
      mode: first.mode,
      target: first.target,
      fromClients,
      toClients,
      ratios,
      medianRatio: median(ratios),
      runsAtTo: atTo.length,
      failedRunsAtTo: atTo.filter((row) => !row.ok).length,
      failedTransactionsAtTo: atTo.reduce((sum, row) => sum + (row.failedTransactions ?? 0), 0),
      abortedClientsAtTo: atTo.reduce((sum, row) => sum + row.abortedClients, 0),
    });
  }
  return out;
}
