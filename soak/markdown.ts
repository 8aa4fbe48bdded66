// The markdown report of a soak run (results/latest.md): the verdict and why, totals per kind,
// the ambassador's resources at start, after warm-up, at the end and after the clients closed,
// the growth checks, the replica restarts, the errors, and one table row per 30 s. Pure: a
// SoakReport in, text out.

import { markdownTable } from '../bench/markdown.ts';
import { WORK_KINDS } from './kinds.ts';
import { windowTotals } from './op-window.ts';
import type { SoakReport, TableRow } from './report.ts';
import type { ResourceSample } from './sampler.ts';
import { TOLERANCE, WARMUP_FRACTION, type GrowthCheck } from './verdict.ts';

const MIB = 2 ** 20;

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined ? '–' : value.toFixed(digits);
}

function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? '–' : (bytes / MIB).toFixed(1);
}

function count(value: number): string {
  return value.toLocaleString('en-US');
}

function renderTotals(report: SoakReport): string {
  const seconds = report.settings.durationS;
  const rows = WORK_KINDS.map((kind) => {
    const total = report.totals[kind];
    return [kind, report.settings.workers[kind], count(total.ops), fixed(total.ops / seconds, 1), count(total.expectedErrors), count(total.unexpectedErrors),
      fixed(total.p50Ms, 1), fixed(total.p99Ms, 1), fixed(total.maxMs, 0)];
  });
  const all = windowTotals(report.totals);
  rows.push(['**all**', report.settings.clients, count(all.ops), fixed(all.ops / seconds, 1), count(all.expectedErrors), count(all.unexpectedErrors), '', '', '']);
  return markdownTable(['kind', 'clients:', 'ops:', 'ops/s:', 'expected errors:', 'unexpected errors:', 'p50 ms:', 'p99 ms:', 'max ms:'], rows);
}

function resourceCells(sample: Pick<ResourceSample, 'rssBytes' | 'fds' | 'activeHandles' | 'sockets' | 'gauges'> | null): string[] {
  if (sample === null) return ['–', '–', '–', '–', '–', '–', '–'];
  return [mib(sample.rssBytes), String(sample.fds), String(sample.sockets.clientTcp), String(sample.sockets.otherTcp), fixed(sample.activeHandles, 0),
    mib(sample.gauges?.heapUsedBytes), sample.gauges ? `${sample.gauges.clientConnections} / ${sample.gauges.serverConnections}` : '–'];
}

function renderResources(report: SoakReport): string {
  const { growth, samples, atStart, afterLoad } = report;
  const last = samples[samples.length - 1] ?? null;
  const windowCells = (window: typeof growth.afterWarmup): string[] =>
    window === null ? resourceCells(null) : [mib(window.rssBytes), fixed(window.fds, 1), '', '', fixed(window.activeHandles, 1), '', ''];
  const rows = [
    ['start (t = 0, no client yet)', ...resourceCells(atStart)],
    [`after warm-up: median ${growth.afterWarmup ? `${growth.afterWarmup.fromS.toFixed(0)}-${growth.afterWarmup.toS.toFixed(0)} s` : '–'}`, ...windowCells(growth.afterWarmup)],
    [`last third: median ${growth.last ? `${growth.last.fromS.toFixed(0)}-${growth.last.toS.toFixed(0)} s` : '–'}`, ...windowCells(growth.last)],
    [`end of load (${last ? last.tS.toFixed(0) : '–'} s)`, ...resourceCells(last)],
    [`${afterLoad.afterS.toFixed(0)} s after every client closed`, ...resourceCells(afterLoad.sample)],
  ];
  return markdownTable(['when', 'RSS MiB:', 'fds:', 'client sockets:', 'other sockets:', 'Node handles:', 'heap MiB:', 'clients / servers (its gauges):'], rows);
}

function renderCheck(check: GrowthCheck): string[] {
  const show = (value: number): string => (check.metric === 'rss' ? `${mib(value)} MiB` : value.toFixed(1));
  const rule = check.metric === 'rss' ? `+${TOLERANCE.rssRelative * 100}%` : `+${check.metric === 'fds' ? TOLERANCE.fdsAbsolute : TOLERANCE.handlesAbsolute}`;
  return [check.metric, show(check.afterWarmup), show(check.last), `${show(check.limit)} (${rule})`, check.ok ? 'ok' : '**grew**'];
}

function renderRow(row: TableRow): string[] {
  const all = windowTotals(row.kinds);
  return [
    `${row.fromS.toFixed(0)}-${row.toS.toFixed(0)}`,
    count(all.ops),
    `${all.expectedErrors} / ${all.unexpectedErrors}`,
    ...WORK_KINDS.map((kind) => fixed(row.kinds[kind].p99Ms, 0)),
    mib(row.rssBytes),
    String(row.fds),
    `${row.clientTcp} / ${row.otherTcp}`,
    fixed(row.activeHandles, 0),
    mib(row.heapUsedBytes),
    fixed(row.cpuPercent, 0),
  ];
}

function renderRestarts(report: SoakReport): string {
  if (report.restarts.length === 0) return 'No replica restart ran.';
  return report.restarts
    .map((event) => `- ${event.replica}: stopped (fast shutdown) at ${event.stopS.toFixed(1)} s, ` +
      (event.backS !== null ? `accepting logins again at ${event.backS.toFixed(1)} s` : `start failed: ${event.error?.split('\n')[0]}`))
    .join('\n');
}

function renderErrors(report: SoakReport): string {
  if (report.errors.length === 0) return 'No errors.';
  const rows = report.errors.slice(0, 25).map((entry) => [entry.outcome, entry.kind, `\`${entry.key.replaceAll('|', '\\|').replaceAll('`', "'")}\``, count(entry.count),
    `${entry.firstS.toFixed(0)}-${entry.lastS.toFixed(0)}`]);
  const more = report.errors.length > 25 ? `\n\n(${report.errors.length - 25} more in latest.json)` : '';
  const examples = report.errors
    .filter((entry) => entry.example !== null)
    .slice(0, 5)
    .map((entry) => `First ${entry.kind} \`${entry.key.split(':')[0]}\` at ${entry.firstS.toFixed(1)} s:\n\n\`\`\`\n${entry.example}\n\`\`\``);
  return [
    `Errors seen by the workers, grouped (the disconnect kind's own disconnects are not listed: they end as the kind expects, counted as expected errors above).\n\n${
      markdownTable(['outcome', 'kind', 'error', 'count:', 'seconds'], rows)}${more}`,
    ...examples,
  ].join('\n\n');
}

function renderLog(report: SoakReport): string {
  if (report.ambassadorLog.length === 0) return 'Nothing at warn or above during the run.';
  const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('`', "'");
  return markdownTable(['level', 'message', 'count:', 'first line'], report.ambassadorLog.slice(0, 20).map((line) => [line.level, cell(line.msg), count(line.count), `\`${cell(line.example)}\``]));
}

export function renderMarkdown(report: SoakReport): string {
  const { facts, settings, verdict, growth } = report;
  const workers = WORK_KINDS.map((kind) => `${settings.workers[kind]} ${kind}`).join(', ');
  const lines = [
    `# Soak run: ${verdict.ok ? 'PASS' : 'FAIL'}`,
    '',
    `${facts.date}: ${settings.minutes} min of mixed load through the ambassador (${settings.ambassador}); ${settings.clients} clients (${workers}); ` +
      `seed ${settings.seed}; ${settings.replicas} streaming replica(s). ${facts.nproc} × ${facts.cpuModel}, Node ${facts.node}, PostgreSQL ${facts.postgres}, ` +
      `load average ${facts.loadAvgAtStart.map((load) => load.toFixed(2)).join(' ')} at start, ${facts.loadAvgAtEnd.map((load) => load.toFixed(2)).join(' ')} at the end` +
      `${facts.gitCommit ? `; commit ${facts.gitCommit.slice(0, 12)}` : ''}. Wall time ${(report.wallTimeS / 60).toFixed(1)} min.`,
    '',
    verdict.ok ? '**Verdict: pass.** No growth beyond the tolerance after warm-up, no unexpected error, no client socket left, no uncommitted row.' : '**Verdict: fail.**',
    ...verdict.reasons.map((reason) => `- ${reason}`),
    '',
    '## Operations',
    '',
    renderTotals(report),
    '',
    `Latency: per completed operation, as the client measured it (the long-txn and big-result kinds sleep and move 50 MiB on purpose; the disconnect kind's includes its logins). ` +
      `Reads on the replicas during the load: ${report.replicaTransactions === null ? 'not measured' : `${count(report.replicaTransactions)} transactions`}. ` +
      `Rows of transactions that never committed, at the end: ${report.uncommittedRowsFound ?? 'not checked'}.`,
    '',
    '## Resources of the ambassador process',
    '',
    renderResources(report),
    '',
    `Warm-up: the first ${WARMUP_FRACTION * 100}% of the run (${growth.warmupEndS.toFixed(0)} s). Growth compares the median of the first third of the later samples with the median of the last third:`,
    '',
    growth.checks.length > 0 ? markdownTable(['metric', 'after warm-up', 'last third', 'limit', 'result'], growth.checks.map(renderCheck)) : (growth.problem ?? ''),
    '',
    'fds: every descriptor of the process; client sockets: its TCP sockets on the listen port; other sockets: its other TCP sockets (server connections, health probes, ' +
      'the /metrics scrape); Node handles and heap: nodejs_active_handles_total and nodejs_heap_size_used_bytes from its /metrics.',
    '',
    '## Replica restarts',
    '',
    renderRestarts(report),
    '',
    '## Errors',
    '',
    renderErrors(report),
    '',
    '## What the ambassador logged at warn or above',
    '',
    renderLog(report),
    '',
    `## Every ${settings.rowSeconds} s`,
    '',
    `ops: completed in the row; errors: expected / unexpected; p99 in ms per kind; resources at the row's last sample; CPU: mean % of one core.`,
    '',
    markdownTable(
      ['seconds', 'ops:', 'errors:', ...WORK_KINDS.map((kind) => `${kind} p99:`), 'RSS MiB:', 'fds:', 'sockets client / other:', 'handles:', 'heap MiB:', 'CPU %:'],
      report.rows.map(renderRow),
    ),
    '',
    '## Settings',
    '',
    ...WORK_KINDS.map((kind) => `- **${kind}** (${settings.workers[kind]}): ${settings.kinds[kind]}`),
    ...settings.notes.map((note) => `- ${note}`),
    '',
  ];
  return lines.join('\n');
}
