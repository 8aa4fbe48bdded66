// The load phase: the workers and the replica restarts run for the duration while the ambassador
// is sampled every 5 s; then the workers stop (each finishes its step, at most STOP_TIMEOUT_MS),
// and once every client has closed, one more sample shows what the ambassador still holds.
// A sample that finds the ambassador dead ends the load early. Each sample also scans the
// ambassador's recent output for warnings (log-scan.ts).

import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import type { AmbassadorTarget } from '../bench/targets.ts';
import type { LocalCluster } from '../src/demo/cluster.ts';
import type { SoakOptions } from './cli.ts';
import { WarningScanner, type LogLine } from './log-scan.ts';
import { windowTotals } from './op-window.ts';
import { SoakRecorder } from './recorder.ts';
import { planRestarts, RESTART_GRACE_MS, runRestarts, type RestartEvent } from './replica-restarts.ts';
import { ROW_SAMPLES, tableRow, type AfterLoad, type SampleRecord, type TableRow } from './report.ts';
import { ResourceSampler, type ResourceSample } from './sampler.ts';
import { runWorker } from './worker.ts';
import { makeWorks } from './workers.ts';

const STOP_TIMEOUT_MS = 60_000;
/** After the load, how long to wait for the ambassador's client sockets to go. */
const CLOSE_WAIT_MS = 10_000;

export interface LoadResult {
  durationS: number;
  atStart: ResourceSample;
  samples: SampleRecord[];
  rows: TableRow[];
  recorder: SoakRecorder;
  restarts: RestartEvent[];
  afterLoad: AfterLoad;
  ambassadorDied: string | null;
  problems: string[];
  /** What the ambassador logged at warn or above. */
  warnings: LogLine[];
}

/** The duration actually run: whole samples. */
export function loadDurationS(options: Pick<SoakOptions, 'minutes' | 'sampleSeconds'>): number {
  return Math.max(1, Math.floor((options.minutes * 60) / options.sampleSeconds)) * options.sampleSeconds;
}

async function settleWithin<T>(promise: Promise<T>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function progress(row: TableRow, log: (line: string) => void): void {
  const all = windowTotals(row.kinds);
  log(`${row.toS.toFixed(0)} s: ${all.ops} ops, errors ${all.expectedErrors} expected / ${all.unexpectedErrors} unexpected, ` +
    `RSS ${(row.rssBytes / 2 ** 20).toFixed(1)} MiB, ${row.fds} fds, sockets ${row.clientTcp} client / ${row.otherTcp} other, handles ${row.activeHandles ?? '–'}`);
}

/** Waits until the ambassador holds no client socket, or CLOSE_WAIT_MS, then samples it. */
async function sampleAfterLoad(sampler: ResourceSampler, durationS: number): Promise<AfterLoad> {
  const closedMs = Date.now();
  let sample: ResourceSample | null = null;
  await sleep(1000);
  while (Date.now() - closedMs < CLOSE_WAIT_MS) {
    sample = await sampler.take(durationS + (Date.now() - closedMs) / 1000).catch(() => null);
    if (sample === null || sample.sockets.clientTcp === 0) break;
    await sleep(500);
  }
  return { afterS: (Date.now() - closedMs) / 1000, sample };
}

export async function runLoad(options: SoakOptions, cluster: LocalCluster, ambassador: AmbassadorTarget, log: (line: string) => void): Promise<LoadResult> {
  const durationS = loadDurationS(options);
  const sampler = new ResourceSampler({ pid: ambassador.pid!, listenPort: ambassador.endpoint.port, adminPort: ambassador.adminPort });
  const atStart = await sampler.take(0);
  const startMs = Date.now();
  const recorder = new SoakRecorder(startMs, RESTART_GRACE_MS, log);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // every worker's pause listens to it
  const works = makeWorks(options.workers, ambassador.endpoint, options.seed);
  const workers = Promise.all(works.map((work) => runWorker(work, recorder, stop.signal)));
  const restarts = runRestarts(planRestarts(durationS, cluster.replicas.length), cluster, startMs, recorder.restarts, stop.signal, log);
  log(`load: ${works.length} workers for ${durationS} s, samples every ${options.sampleSeconds} s`);

  const samples: SampleRecord[] = [];
  const rows: TableRow[] = [];
  let row: SampleRecord[] = [];
  let ambassadorDied: string | null = null;
  const warnings = new WarningScanner();
  for (let index = 1; index * options.sampleSeconds <= durationS; index++) {
    const tS = index * options.sampleSeconds;
    await sleep(Math.max(0, startMs + tS * 1000 - Date.now()));
    const taken = await sampler.take(tS).catch((error: unknown) => error as Error);
    ambassadorDied = ambassador.deathReason();
    if (ambassadorDied !== null) break;
    if (taken instanceof Error) throw taken;
    const sample: SampleRecord = { ...taken, kinds: recorder.sample.close() };
    warnings.scan(ambassador.output());
    samples.push(sample);
    row.push(sample);
    if (row.length === ROW_SAMPLES || (index + 1) * options.sampleSeconds > durationS) {
      rows.push(tableRow(row[0]!.tS - options.sampleSeconds, row, recorder.row.close()));
      progress(rows[rows.length - 1]!, log);
      row = [];
    }
  }

  stop.abort();
  log('load: stopping the workers (each finishes its step)');
  const problems: string[] = [];
  if (!(await settleWithin(workers, STOP_TIMEOUT_MS))) problems.push(`workers did not stop within ${STOP_TIMEOUT_MS / 1000} s of the end of the load`);
  const events = await restarts;
  for (const event of events) if (event.error !== null) problems.push(`restart of ${event.replica} failed: ${event.error.split('\n')[0]}`);
  const afterLoad = ambassadorDied === null ? await sampleAfterLoad(sampler, durationS) : { afterS: 0, sample: null };
  ambassadorDied ??= ambassador.deathReason();
  warnings.scan(ambassador.output());
  return { durationS, atStart, samples, rows, recorder, restarts: events, afterLoad, ambassadorDied, problems, warnings: warnings.lines() };
}
