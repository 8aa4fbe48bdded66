// The soak report (results/latest.json): facts and settings, the verdict and its growth checks,
// totals per kind, the errors, the replica restarts, what the ambassador logged at warn or above,
// every 5 s sample, and the rows of the markdown table (ROW_SAMPLES samples each). Types and the
// pure piece that builds a row; unit-tested.

import type { ErrorEntry } from './errors.ts';
import type { LogLine } from './log-scan.ts';
import type { WorkKind } from './kinds.ts';
import type { WindowSummary } from './op-window.ts';
import type { PlannedRestart, RestartEvent } from './replica-restarts.ts';
import type { ResourceSample } from './sampler.ts';
import type { Growth, Verdict } from './verdict.ts';
import type { HostFacts } from '../bench/cluster.ts';

/** Samples per row of the markdown table (30 s at 5 s samples). */
export const ROW_SAMPLES = 6;

export interface SampleRecord extends ResourceSample {
  kinds: WindowSummary;
}

export interface TableRow {
  fromS: number;
  toS: number;
  kinds: WindowSummary;
  /** Resources at the row's last sample. */
  rssBytes: number;
  fds: number;
  clientTcp: number;
  otherTcp: number;
  activeHandles: number | null;
  heapUsedBytes: number | null;
  /** Mean CPU % of one core over the row's samples. */
  cpuPercent: number | null;
}

export interface SoakFacts extends HostFacts {
  loadAvgAtStart: number[];
  loadAvgAtEnd: number[];
}

export interface SoakSettings {
  minutes: number;
  durationS: number;
  clients: number;
  workers: Record<WorkKind, number>;
  seed: number;
  replicas: number;
  sampleSeconds: number;
  rowSeconds: number;
  ambassador: string;
  kinds: Record<WorkKind, string>;
  restartPlan: PlannedRestart[];
  notes: string[];
}

export interface AfterLoad {
  /** Seconds after the last client closed when the sample was taken. */
  afterS: number;
  sample: ResourceSample | null;
}

export interface SoakReport {
  facts: SoakFacts;
  settings: SoakSettings;
  verdict: Verdict;
  growth: Growth;
  totals: WindowSummary;
  errors: ErrorEntry[];
  restarts: RestartEvent[];
  /** Transactions the replicas ran during the load (pg_stat_database): reads did reach them. */
  replicaTransactions: number | null;
  uncommittedRowsFound: number | null;
  /** The first sample during the load (t = 0, before any client). */
  atStart: ResourceSample;
  afterLoad: AfterLoad;
  /** What the ambassador logged at warn or above during the run, grouped by message (log-scan.ts). */
  ambassadorLog: LogLine[];
  samples: SampleRecord[];
  rows: TableRow[];
  wallTimeS: number;
}

/** A table row from its samples (in order) and the operations of its time span. */
export function tableRow(fromS: number, samples: readonly SampleRecord[], kinds: WindowSummary): TableRow {
  const last = samples[samples.length - 1];
  if (last === undefined) throw new Error('a table row needs at least one sample');
  const cpu = samples.map((sample) => sample.cpuPercent).filter((value): value is number => value !== null);
  return {
    fromS,
    toS: last.tS,
    kinds,
    rssBytes: last.rssBytes,
    fds: last.fds,
    clientTcp: last.sockets.clientTcp,
    otherTcp: last.sockets.otherTcp,
    activeHandles: last.activeHandles,
    heapUsedBytes: last.gauges?.heapUsedBytes ?? null,
    cpuPercent: cpu.length === 0 ? null : cpu.reduce((sum, value) => sum + value, 0) / cpu.length,
  };
}
