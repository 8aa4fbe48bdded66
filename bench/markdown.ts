// The markdown report of a bench run (bench/results/latest.md): facts and settings, the targets
// of issue 9 with their verdicts, the results table, the comparisons, 256-vs-32-client scaling,
// idle-connection memory, and every problem (unavailable or dead targets, failed runs with
// pgbench's stderr). Pure: a BenchReport in, text out.

import type {
  BenchReport, ComparisonSummary, GoalVerdict, GroupSummary, MemoryResult, RatioSet, RunRow, ScalingSummary, TargetProblem, TargetSummary,
} from './report.ts';

/** A markdown table; a column title ending in ':' is right-aligned (the ':' is not shown). */
export function markdownTable(columns: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const titles = columns.map((column) => column.replace(/:$/, ''));
  const align = columns.map((column) => (column.endsWith(':') ? '---:' : '---'));
  return [titles, align, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

function fixed(value: number | null, digits: number): string {
  return value === null ? '–' : value.toFixed(digits);
}

/** "**median** (per round, ...[; note])" or "–". */
function perRound(set: RatioSet, note = ''): string {
  if (set.median === null) return '–';
  return `**${set.median.toFixed(3)}** (${set.ratios.map((ratio) => ratio.toFixed(3)).join(', ')}${note})`;
}

function ratioCell(summary: TargetSummary, baseline: string): string {
  if (summary.target === baseline) return 'baseline';
  return perRound({ ratios: summary.ratios, median: summary.medianRatio });
}

/** The results table: one line per (workload, mode, clients, target). */
export function renderTable(summary: readonly GroupSummary[]): string {
  const rows = summary.flatMap((group) =>
    group.targets.map((target) => [
      group.workload, group.mode, group.clients, target.target, fixed(target.medianTps, 0), ratioCell(target, group.baseline),
      fixed(target.medianLatencyMeanMs, 3), fixed(target.medianLatencyP99Ms, 3), fixed(target.medianCpuUsPerTxn, 1),
      fixed(target.medianUserCpuUsPerTxn, 1), fixed(target.medianServerCpuUsPerTxn, 1), fixed(target.medianIdlePercent, 1),
      target.maxRssBytes === null ? '–' : (target.maxRssBytes / 2 ** 20).toFixed(1), `${target.okRuns}/${target.runs}`,
    ]),
  );
  const columns = [
    'workload', 'mode', 'clients:', 'target', 'median tps:', 'tps / baseline: median (per round)', 'latency mean ms:', 'p99 ms:', 'CPU µs/txn:', 'user µs/txn:',
    'servers µs/txn:', 'idle %:', 'RSS MiB (max):', 'ok runs:',
  ];
  return markdownTable(columns, rows);
}

function tpsCell(comparison: ComparisonSummary): string {
  if (comparison.medianRatio === null) return `– (no round with both runs ok, of ${comparison.rounds})`;
  const rounds = comparison.ratios.length < comparison.rounds ? `; ${comparison.ratios.length} of ${comparison.rounds} rounds with both runs ok` : '';
  return perRound({ ratios: comparison.ratios, median: comparison.medianRatio }, rounds);
}

/** The named comparisons: one line per (workload, mode, clients, pair) where both targets ran. */
export function renderComparisons(summary: readonly GroupSummary[]): string {
  const rows = summary.flatMap((group) =>
    group.comparisons.map((comparison) => [
      group.workload, group.mode, group.clients, `${comparison.numerator} / ${comparison.denominator}`, tpsCell(comparison),
      perRound(comparison.cpu), perRound(comparison.userCpu), perRound(comparison.p99), comparison.addedLatency === null ? '' : perRound(comparison.addedLatency), comparison.note,
    ]),
  );
  if (rows.length === 0) return '(no comparison: no pair of compared targets ran in the same group)';
  return markdownTable(['workload', 'mode', 'clients:', 'ratio', 'tps', 'CPU µs/txn', 'user CPU µs/txn', 'p99 latency', 'latency added over direct', 'compares'], rows);
}

/** Each target at its highest client count against the next highest. */
export function renderScaling(scaling: readonly ScalingSummary[]): string {
  if (scaling.length === 0) return '(no target ran at two client counts)';
  const rows = scaling.map((row) => [
    row.workload, row.mode, row.target, `${row.toClients} vs ${row.fromClients}`, perRound({ ratios: row.ratios, median: row.medianRatio }),
    `${row.failedRunsAtTo}/${row.runsAtTo}`, `${row.failedTransactionsAtTo} / ${row.abortedClientsAtTo}`,
  ]);
  const columns = ['workload', 'mode', 'target', 'clients', 'tps ratio: median (per round)', 'failed runs at the higher count:', 'failed txns / aborted clients'];
  return markdownTable(columns, rows);
}

/** Whether ambassador-split's reads reached the replicas. */
export function splitCheckLine(check: NonNullable<BenchReport['splitCheck']>): string {
  const share = check.splitReadTransactions > 0 ? ` (${((100 * check.replicaTransactions) / check.splitReadTransactions).toFixed(0)}%)` : '';
  return `Split check: the replicas ran ${check.replicaTransactions} transactions${share} while ambassador-split processed ` +
    `${check.splitReadTransactions} in split-select-only (health probes count on the replicas' side).`;
}

/** Idle-connection memory per target. */
export function renderMemory(memory: readonly MemoryResult[]): string {
  const mebibytes = (bytes: number | null): string => (bytes === null ? '–' : (bytes / 2 ** 20).toFixed(1));
  const rows = memory.map((row) => [
    row.target, `${row.connected}/${row.clients}`, mebibytes(row.rssBeforeBytes), mebibytes(row.rssAfterBytes),
    row.bytesPerClient === null ? '–' : (row.bytesPerClient / 1024).toFixed(2), fixed(row.connectSeconds, 1), row.failedLogins, row.problem ?? '',
  ]);
  const columns = [
    'target', 'idle clients connected:', 'RSS before MiB:', 'RSS with clients MiB:', 'KiB per idle client:', 'time to connect s:', 'failed logins:', 'problem',
  ];
  return markdownTable(columns, rows);
}

/**
 * A ratio to 3 decimals, or as many more (up to 6) as it takes not to show the threshold itself
 * beside a verdict that says otherwise: 0.89978 against ">= 0.9" is shown 0.8998, not 0.900.
 */
export function ratioBeside(value: number, threshold: string): string {
  const bound = Number(/[\d.]+/.exec(threshold)?.[0]);
  let digits = 3;
  while (digits < 6 && value !== bound && Number(value.toFixed(digits)) === bound) digits++;
  return value.toFixed(digits);
}

/** The verdicts on the targets of issue 9. */
export function renderGoals(goals: readonly GoalVerdict[]): string {
  const shown = (goal: GoalVerdict): string => {
    if (goal.value === null) return '–';
    return goal.goal.startsWith('RSS') ? `${(goal.value / 1024).toFixed(2)} KiB` : ratioBeside(goal.value, goal.threshold);
  };
  const rows = goals.map((goal) => {
    const state = goal.met === null ? 'not measured' : goal.met ? 'met' : '**not met**';
    return [goal.goal, goal.where, shown(goal), goal.threshold, `${state}${goal.detail ? ` (${goal.detail})` : ''}`];
  });
  const met = goals.filter((goal) => goal.met === true).length;
  const measured = goals.filter((goal) => goal.met !== null).length;
  return `${markdownTable(['target', 'measured in', 'median:', 'threshold', 'verdict'], rows)}\n\n` +
    `${met} of ${measured} measured targets met (${goals.length - measured} not measured).`;
}

/** The first `max` lines of a text, as an indented block for a markdown list item. */
function indentedLines(text: string, max: number): string[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const shown = lines.slice(0, max).map((line) => `      ${line}`);
  if (lines.length > max) shown.push(`      … (${lines.length - max} more lines)`);
  return shown;
}

function failedRunLines(row: RunRow): string[] {
  const head = `- ${row.round === 0 ? 'verification' : `round ${row.round}`} ${row.target} ${row.workload} ${row.mode} ${row.clients} clients: ${row.problem}`;
  return row.stderr ? [head, '', '      pgbench stderr:', ...indentedLines(row.stderr, 6), ''] : [head];
}

function loadRange(runs: readonly RunRow[]): string {
  if (runs.length === 0) return '–';
  const loads = runs.map((row) => row.loadAvg1);
  return `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`;
}

function problemSections(report: BenchReport): string[] {
  const out: string[] = [];
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
  const failed = report.runs.filter((row) => !row.ok);
  if (failed.length > 0) {
    out.push(`## Failed runs (${failed.length})`, '');
    for (const row of failed) out.push(...failedRunLines(row));
    out.push('');
  }
  return out;
}

/** The whole markdown report. */
export function renderMarkdown(report: BenchReport): string {
  const { facts, settings } = report;
  const out = [
    '# pg-ambassador bench',
    '',
    `${facts.date} · ${facts.nproc} CPUs (${facts.cpuModel}) · ${facts.memoryGiB.toFixed(1)} GiB · Linux ${facts.kernel} · ` +
      `Node ${facts.node} · PostgreSQL ${facts.postgres} · ${facts.pgbench}${facts.gitCommit ? ` · commit ${facts.gitCommit.slice(0, 12)}` : ''} · ` +
      `load avg at start ${facts.loadAvgAtStart.map((load) => load.toFixed(2)).join(' ')}, after runs ${loadRange(report.runs)}`,
    '',
    `pgbench -s ${settings.scale}, ${settings.threads} threads, ${settings.durationS} s per run, ${settings.repeats} rounds; ` +
      `targets ${settings.targets.join(', ')} alternated within each round and group (in reverse order every other round); baseline: ${settings.baseline}. ` +
      `Wall time ${report.wallTimeS.toFixed(0)} s.`,
    '',
    ...settings.workloads.map(
      (workload) => `- ${workload.name}: ${workload.description} (modes: ${workload.modes.join(', ')}; clients: ${workload.clients.join(', ')})`,
    ),
    ...settings.notes.map((note) => `- ${note}`),
    '',
    '## Targets of issue 9',
    '',
    renderGoals(report.goals),
    '',
    '## Results',
    '',
    renderTable(report.summary),
    '',
    ...(report.splitCheck ? [splitCheckLine(report.splitCheck), ''] : []),
    '## Comparisons',
    '',
    renderComparisons(report.summary),
    '',
    '## Scaling: highest client count against the next',
    '',
    renderScaling(report.scaling),
    '',
  ];
  if (report.memory.length > 0) out.push(`## Idle connections: memory (${settings.memoryClients} clients)`, '', renderMemory(report.memory), '');
  out.push(...problemSections(report));
  return out.join('\n');
}
