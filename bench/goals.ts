// The targets issue 9 sets for the ambassador, judged from a bench run's summaries. Each target is
// read from one place and compared with its threshold; a target whose numbers did not run (a
// workload, client count or target left out, or every round failed) is "not measured", never met.
//
//   tps       select-only, 32 clients: ambassador-txn / pgbouncer >= 0.9 in simple and extended,
//             ambassador-txn / pgbouncer-session >= 0.9 in prepared (PgBouncer 1.18 cannot run
//             prepared statements in transaction mode)
//   CPU       the same pairs: CPU µs per transaction ratio <= 1.3
//   latency   select-only, 1 client: latency added over direct, relative to PgBouncer's, <= 1.2
//   scaling   select-only, ambassador-txn: tps at 256 clients >= 0.9 x tps at 32, and no errors at 256
//   memory    idle clients: ambassador-txn RSS per idle client <= 16 KiB
//
// Pure; unit-tested. markdown.ts renders the verdicts.

import type { GoalVerdict, GroupSummary, MemoryResult, RatioSet, ScalingSummary } from './report.ts';

const AMBASSADOR = 'ambassador-txn';
const WORKLOAD = 'select-only';
const MODES = ['simple', 'extended', 'prepared'] as const;
/** PgBouncer's stand-in per mode: session pooling where transaction pooling cannot run -M prepared. */
const PGBOUNCER_OF: Record<(typeof MODES)[number], string> = { simple: 'pgbouncer', extended: 'pgbouncer', prepared: 'pgbouncer-session' };
const THROUGHPUT_CLIENTS = 32;
const LATENCY_CLIENTS = 1;
const SCALING = { from: 32, to: 256 };
export const GOAL_THRESHOLDS = { tpsRatio: 0.9, cpuRatio: 1.3, addedLatencyRatio: 1.2, scalingRatio: 0.9, idleBytesPerClient: 16 * 1024 };

function verdict(goal: string, where: string, value: number | null, threshold: string, pass: (value: number) => boolean, detail: string | null = null): GoalVerdict {
  return { goal, where, value, threshold, met: value === null ? null : pass(value), detail };
}

function comparisonRatios(summary: readonly GroupSummary[], mode: string, clients: number) {
  const group = summary.find((candidate) => candidate.workload === WORKLOAD && candidate.mode === mode && candidate.clients === clients);
  const denominator = PGBOUNCER_OF[mode as (typeof MODES)[number]];
  return group?.comparisons.find((comparison) => comparison.numerator === AMBASSADOR && comparison.denominator === denominator);
}

function medianOf(set: RatioSet | null | undefined): number | null {
  return set?.median ?? null;
}

/** Every target of issue 9 with its measured value and verdict, in a fixed order. */
export function issueGoals(summary: readonly GroupSummary[], scaling: readonly ScalingSummary[], memory: readonly MemoryResult[]): GoalVerdict[] {
  const goals: GoalVerdict[] = [];
  const { tpsRatio, cpuRatio, addedLatencyRatio, scalingRatio, idleBytesPerClient } = GOAL_THRESHOLDS;
  for (const mode of MODES) {
    const comparison = comparisonRatios(summary, mode, THROUGHPUT_CLIENTS);
    const where = `${WORKLOAD} ${mode}, ${THROUGHPUT_CLIENTS} clients: ${AMBASSADOR} / ${PGBOUNCER_OF[mode]}`;
    goals.push(verdict('tps ratio', where, comparison?.medianRatio ?? null, `>= ${tpsRatio}`, (value) => value >= tpsRatio));
  }
  for (const mode of MODES) {
    const comparison = comparisonRatios(summary, mode, THROUGHPUT_CLIENTS);
    const where = `${WORKLOAD} ${mode}, ${THROUGHPUT_CLIENTS} clients: ${AMBASSADOR} / ${PGBOUNCER_OF[mode]}`;
    goals.push(verdict('CPU µs/txn ratio', where, medianOf(comparison?.cpu), `<= ${cpuRatio}`, (value) => value <= cpuRatio));
  }
  for (const mode of MODES) {
    const comparison = comparisonRatios(summary, mode, LATENCY_CLIENTS);
    const where = `${WORKLOAD} ${mode}, ${LATENCY_CLIENTS} client: (${AMBASSADOR} - direct) / (${PGBOUNCER_OF[mode]} - direct)`;
    goals.push(verdict('latency added over direct, ratio', where, medianOf(comparison?.addedLatency), `<= ${addedLatencyRatio}`, (value) => value <= addedLatencyRatio));
  }
  for (const mode of MODES) {
    const row = scaling.find(
      (candidate) => candidate.workload === WORKLOAD && candidate.mode === mode && candidate.target === AMBASSADOR &&
        candidate.fromClients === SCALING.from && candidate.toClients === SCALING.to,
    );
    const errors = row ? row.failedRunsAtTo : 0;
    const detail = row && errors > 0 ? `${errors} of ${row.runsAtTo} runs at ${SCALING.to} clients failed` : null;
    goals.push(
      verdict(`tps at ${SCALING.to} / at ${SCALING.from} clients, no errors`, `${WORKLOAD} ${mode}: ${AMBASSADOR}`, row?.medianRatio ?? null,
        `>= ${scalingRatio}, 0 failed runs`, (value) => value >= scalingRatio && errors === 0, detail),
    );
  }
  const idle = memory.find((result) => result.target === AMBASSADOR);
  const incomplete = idle && idle.connected < idle.clients ? `only ${idle.connected} of ${idle.clients} clients connected` : null;
  goals.push(
    verdict('RSS per idle client (bytes)', `${idle?.clients ?? '–'} idle clients: ${AMBASSADOR}`, idle?.bytesPerClient ?? null,
      `<= ${idleBytesPerClient} (16 KiB)`, (value) => value <= idleBytesPerClient && incomplete === null, incomplete),
  );
  return goals;
}
