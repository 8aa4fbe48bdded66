// The numbers of a bench run: raw rows in, per-(workload, mode, target) summaries out, rendered
// as markdown. Pure (no I/O), unit-tested.
//
// Ratios compare like with like: within one round, a target's run is divided by the baseline's
// run of the same workload and mode (they ran back to back), and the summary is the median of
// those per-round ratios, not a ratio of medians. The same holds for the named comparisons
// (ambassador-txn / pgbouncer, ...): each is computed in every group where both targets ran.
// Failed runs count in `runs` but in no median or ratio. A run of a target with no measured
// process has null CPU and RSS.

export interface RunRow {
  round: number;
  target: string;
  workload: string;
  mode: string;
  clients: number;
  threads: number;
  durationS: number;
  startedAt: string;
  ok: boolean;
  /** Why the run does not count (null when ok). */
  problem: string | null;
  tps: number | null;
  latencyAvgMs: number | null;
  initialConnectionMs: number | null;
  transactions: number | null;
  failedTransactions: number | null;
  abortedClients: number;
  /** CPU seconds (user + system) the target's process used during the run. */
  cpuSeconds: number | null;
  cpuUsPerTxn: number | null;
  /** The target process's VmRSS right after the run. */
  rssBytes: number | null;
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
  medianLatencyMs: number | null;
  medianCpuUsPerTxn: number | null;
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

export interface ComparisonSummary extends ComparisonSpec {
  /** numerator tps / denominator tps per round where both runs are ok (in round order). */
  ratios: number[];
  medianRatio: number | null;
  /** Rounds in which both targets ran (ok or not). */
  rounds: number;
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

export interface MachineFacts {
  date: string;
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgres: string;
  pgbench: string;
  gitCommit: string | null;
  /** 1-, 5- and 15-minute load averages before the cluster started; above nproc means others share the CPUs. */
  loadAvgAtStart: number[];
}

export interface BenchSettings {
  durationS: number;
  repeats: number;
  clients: number;
  threads: number;
  scale: number;
  targets: string[];
  baseline: string;
  workloads: Array<{ name: string; description: string; modes: readonly string[] }>;
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

/** Median of the values (mean of the middle two for an even count); null when empty. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** CPU microseconds per transaction; null without a CPU reading or without transactions. */
export function cpuMicrosPerTransaction(cpuSeconds: number | null, transactions: number | null): number | null {
  if (cpuSeconds === null || !transactions) return null;
  return (cpuSeconds * 1e6) / transactions;
}

/** target/baseline tps for each round in which both ran ok, in round order. */
export function pairRatios(rows: readonly RunRow[], target: string, baseline: string): number[] {
  const ratios: number[] = [];
  const rounds = [...new Set(rows.map((row) => row.round))].sort((a, b) => a - b);
  for (const round of rounds) {
    const mine = rows.find((row) => row.round === round && row.target === target);
    const base = rows.find((row) => row.round === round && row.target === baseline);
    if (mine?.ok && base?.ok && mine.tps !== null && base.tps) ratios.push(mine.tps / base.tps);
  }
  return ratios;
}

function present(values: ReadonlyArray<number | null>): number[] {
  return values.filter((value): value is number => value !== null);
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
    medianCpuUsPerTxn: median(present(ok.map((row) => row.cpuUsPerTxn))),
    maxRssBytes: rss.length > 0 ? Math.max(...rss) : null,
    ratios,
    medianRatio: median(ratios),
  };
}

function summarizeComparison(rows: readonly RunRow[], comparison: ComparisonSpec): ComparisonSummary {
  const roundsOf = (target: string): Set<number> => new Set(rows.filter((row) => row.target === target).map((row) => row.round));
  const denominatorRounds = roundsOf(comparison.denominator);
  const ratios = pairRatios(rows, comparison.numerator, comparison.denominator);
  return {
    ...comparison,
    ratios,
    medianRatio: median(ratios),
    rounds: [...roundsOf(comparison.numerator)].filter((round) => denominatorRounds.has(round)).length,
  };
}

/** One summary per (workload, mode, clients), in the order the rows first appear; targets likewise. */
export function summarize(rows: readonly RunRow[], baseline: string, comparisons: readonly ComparisonSpec[] = []): GroupSummary[] {
  const groups = new Map<string, RunRow[]>();
  for (const row of rows) {
    const key = JSON.stringify([row.workload, row.mode, row.clients]);
    const group = groups.get(key);
    if (group) group.push(row);
    else groups.set(key, [row]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    const targets = [...new Set(group.map((row) => row.target))];
    return {
      workload: first.workload,
      mode: first.mode,
      clients: first.clients,
      baseline,
      targets: targets.map((target) => summarizeTarget(group, target, baseline)),
      comparisons: comparisons
        .filter((comparison) => targets.includes(comparison.numerator) && targets.includes(comparison.denominator))
        .map((comparison) => summarizeComparison(group, comparison)),
    };
  });
}

function fixed(value: number | null, digits: number): string {
  return value === null ? '–' : value.toFixed(digits);
}

function ratioCell(summary: TargetSummary, baseline: string): string {
  if (summary.target === baseline) return 'baseline';
  if (summary.medianRatio === null) return '–';
  return `**${summary.medianRatio.toFixed(3)}** (${summary.ratios.map((ratio) => ratio.toFixed(3)).join(', ')})`;
}

/** The results table: one line per (workload, mode, target). */
export function renderTable(summary: readonly GroupSummary[]): string {
  const lines = [
    '| workload | mode | clients | target | median tps | tps / baseline: median (per round) | latency avg ms | CPU µs/txn | RSS MiB (max) | ok runs |',
    '|---|---|---:|---|---:|---|---:|---:|---:|---:|',
  ];
  for (const group of summary) {
    for (const target of group.targets) {
      lines.push(
        `| ${group.workload} | ${group.mode} | ${group.clients} | ${target.target} | ${fixed(target.medianTps, 0)} | ` +
          `${ratioCell(target, group.baseline)} | ${fixed(target.medianLatencyMs, 3)} | ${fixed(target.medianCpuUsPerTxn, 1)} | ` +
          `${target.maxRssBytes === null ? '–' : (target.maxRssBytes / 2 ** 20).toFixed(1)} | ${target.okRuns}/${target.runs} |`,
      );
    }
  }
  return lines.join('\n');
}

function comparisonCell(comparison: ComparisonSummary): string {
  if (comparison.medianRatio === null) return `– (no round with both runs ok, of ${comparison.rounds})`;
  const rounds = comparison.ratios.length < comparison.rounds ? `; ${comparison.ratios.length} of ${comparison.rounds} rounds with both runs ok` : '';
  return `**${comparison.medianRatio.toFixed(3)}** (${comparison.ratios.map((ratio) => ratio.toFixed(3)).join(', ')}${rounds})`;
}

/** The named comparisons: one line per (workload, mode, pair) where both targets ran. */
export function renderComparisons(summary: readonly GroupSummary[]): string {
  const lines = ['| workload | mode | clients | ratio | tps ratio: median (per round) | compares |', '|---|---|---:|---|---|---|'];
  for (const group of summary) {
    for (const comparison of group.comparisons) {
      lines.push(
        `| ${group.workload} | ${group.mode} | ${group.clients} | ${comparison.numerator} / ${comparison.denominator} | ` +
          `${comparisonCell(comparison)} | ${comparison.note} |`,
      );
    }
  }
  return lines.length > 2 ? lines.join('\n') : '(no comparison: no pair of compared targets ran in the same mode)';
}

/** The first `max` lines of a text, as an indented block for a markdown list item. */
function indentedLines(text: string, max: number): string[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const shown = lines.slice(0, max).map((line) => `      ${line}`);
  if (lines.length > max) shown.push(`      … (${lines.length - max} more lines)`);
  return shown;
}

function failedRunLines(row: RunRow): string[] {
  const head = `- ${row.round === 0 ? 'verification' : `round ${row.round}`} ${row.target} ${row.workload} ${row.mode}: ${row.problem}`;
  return row.stderr ? [head, '', '      pgbench stderr:', ...indentedLines(row.stderr, 6), ''] : [head];
}

function loadRange(runs: readonly RunRow[]): string {
  if (runs.length === 0) return '–';
  const loads = runs.map((row) => row.loadAvg1);
  return `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`;
}

/** The whole markdown report: facts, settings, table, failed runs. */
export function renderMarkdown(report: BenchReport): string {
  const { facts, settings } = report;
  const failed = report.runs.filter((row) => !row.ok);
  const out = [
    '# pg-ambassador bench',
    '',
    `${facts.date} · ${facts.nproc} CPUs (${facts.cpuModel}) · ${facts.memoryGiB.toFixed(1)} GiB · Linux ${facts.kernel} · ` +
      `Node ${facts.node} · PostgreSQL ${facts.postgres} · ${facts.pgbench}${facts.gitCommit ? ` · commit ${facts.gitCommit.slice(0, 12)}` : ''} · ` +
      `load avg at start ${facts.loadAvgAtStart.map((load) => load.toFixed(2)).join(' ')}, after runs ${loadRange(report.runs)}`,
    '',
    `pgbench -s ${settings.scale}, ${settings.clients} clients, ${settings.threads} threads, ${settings.durationS} s per run, ` +
      `${settings.repeats} rounds; targets ${settings.targets.join(', ')} alternated within each round; baseline: ${settings.baseline}. ` +
      `Wall time ${report.wallTimeS.toFixed(0)} s.`,
    '',
    ...settings.workloads.map((workload) => `- ${workload.name}: ${workload.description} (modes: ${workload.modes.join(', ')})`),
    ...settings.notes.map((note) => `- ${note}`),
    '',
    renderTable(report.summary),
    '',
    '## Comparisons',
    '',
    renderComparisons(report.summary),
    '',
  ];
  const targetProblems = (title: string, problems: readonly TargetProblem[]): void => {
    if (problems.length === 0) return;
    out.push(`## ${title} (${problems.length})`, '');
    for (const problem of problems) {
      const [first = '', ...rest] = problem.reason.split('\n');
      out.push(`- ${problem.target}: ${first}`, ...(rest.some((line) => line.trim() !== '') ? ['', ...indentedLines(rest.join('\n'), 20), ''] : []));
    }
    out.push('');
  };
  targetProblems('Unavailable targets', report.unavailableTargets);
  targetProblems('Targets that died', report.deadTargets);
  const failedVerification = report.verification.filter((row) => !row.ok);
  if (failedVerification.length > 0) {
    out.push(`## Failed verification runs (${failedVerification.length}; 1 s each, before the measured runs)`, '');
    for (const row of failedVerification) out.push(...failedRunLines(row));
    out.push('');
  }
  if (failed.length > 0) {
    out.push(`## Failed runs (${failed.length})`, '');
    for (const row of failed) out.push(...failedRunLines(row));
    out.push('');
  }
  return out.join('\n');
}
