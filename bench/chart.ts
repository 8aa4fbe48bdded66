// bench/results/latest.svg: grouped bar panels drawn by hand (no dependency). Panels: median tps
// and median CPU µs per transaction of the proxy process, one group of bars per (workload, mode,
// clients) and one bar per target; then, when the memory bench ran, RSS per idle client.
// Every bar is a <rect class="bar"> carrying data-panel, data-group, data-target and data-value;
// its height is value / axis maximum x plot height, so heights are proportional to values within
// a panel. Pure: summaries in, SVG text out.

import type { GroupSummary, MemoryResult } from './report.ts';

export interface ChartBar {
  group: string;
  target: string;
  value: number;
}

export interface ChartPanel {
  title: string;
  /** Groups along the x axis, in order; a group without bars keeps its slot. */
  groups: string[];
  bars: ChartBar[];
}

const COLORS: Record<string, string> = {
  direct: '#7f7f7f',
  ambassador: '#9ecae1',
  'ambassador-txn': '#2171b5',
  'ambassador-txn-cached': '#08306b',
  'ambassador-split': '#6a51a3',
  pgbouncer: '#e6550d',
  'pgbouncer-session': '#fdae6b',
};
const SPARE_COLORS = ['#31a354', '#de2d26', '#756bb1', '#636363'];

const PLOT_HEIGHT = 180;
const BAR_WIDTH = 11;
const GROUP_GAP = 14;
const LEFT = 120;
const RIGHT = 20;
const TITLE_SPACE = 28;
const LABEL_SPACE = 120;
const LEGEND_HEIGHT = 26;
const LEGEND_STEP = 150;

export function groupLabel(group: Pick<GroupSummary, 'workload' | 'mode' | 'clients'>): string {
  return `${group.workload} ${group.mode} ×${group.clients}`;
}

/** The panels for a run: tps, CPU per transaction, and (when measured) memory per idle client. */
export function chartPanels(summary: readonly GroupSummary[], memory: readonly MemoryResult[]): ChartPanel[] {
  const groups = summary.map(groupLabel);
  const barsOf = (pick: (target: GroupSummary['targets'][number]) => number | null): ChartBar[] =>
    summary.flatMap((group) =>
      group.targets.flatMap((target) => {
        const value = pick(target);
        return value === null ? [] : [{ group: groupLabel(group), target: target.target, value }];
      }),
    );
  const panels: ChartPanel[] = [
    { title: 'Median tps (higher is better)', groups, bars: barsOf((target) => target.medianTps) },
    { title: 'Median CPU µs per transaction of the proxy process (lower is better)', groups, bars: barsOf((target) => target.medianCpuUsPerTxn) },
  ];
  const idle = memory.filter((result) => result.bytesPerClient !== null);
  if (idle.length > 0) {
    const group = `${idle[0]!.clients} idle clients`;
    panels.push({
      title: 'RSS per idle client connection, KiB (lower is better)',
      groups: [group],
      bars: idle.map((result) => ({ group, target: result.target, value: result.bytesPerClient! / 1024 })),
    });
  }
  return panels;
}

/** The smallest "round" number (1, 2, 2.5 or 5 x 10^k) at or above `max`; 1 for nothing to show. */
export function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function round(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function tickLabel(value: number): string {
  if (value >= 10_000) return `${round(value / 1000)}k`;
  return round(value);
}

interface Layout {
  targets: string[];
  color: (target: string) => string;
}

function renderPanel(panel: ChartPanel, top: number, layout: Layout): string[] {
  const { targets } = layout;
  const groupWidth = targets.length * BAR_WIDTH + GROUP_GAP;
  const axisMax = niceMax(Math.max(0, ...panel.bars.map((bar) => bar.value)));
  const baseline = top + TITLE_SPACE + PLOT_HEIGHT;
  const right = LEFT + panel.groups.length * groupWidth;
  const out = [`<g class="panel" data-title="${escapeXml(panel.title)}">`];
  out.push(`<text class="title" x="${LEFT}" y="${top + 18}" font-size="14" font-weight="bold">${escapeXml(panel.title)}</text>`);
  for (let tick = 0; tick <= 4; tick++) {
    const value = (axisMax * tick) / 4;
    const y = baseline - (PLOT_HEIGHT * tick) / 4;
    out.push(`<line x1="${LEFT}" y1="${round(y)}" x2="${right}" y2="${round(y)}" stroke="${tick === 0 ? '#000' : '#ddd'}"/>`);
    out.push(`<text x="${LEFT - 6}" y="${round(y + 4)}" font-size="10" text-anchor="end">${tickLabel(value)}</text>`);
  }
  panel.groups.forEach((group, index) => {
    const x0 = LEFT + index * groupWidth + GROUP_GAP / 2;
    for (const bar of panel.bars.filter((candidate) => candidate.group === group)) {
      const height = (bar.value / axisMax) * PLOT_HEIGHT;
      const x = x0 + targets.indexOf(bar.target) * BAR_WIDTH;
      out.push(
        `<rect class="bar" x="${round(x)}" y="${round(baseline - height)}" width="${BAR_WIDTH - 1}" height="${round(height)}" ` +
          `fill="${layout.color(bar.target)}" data-panel="${escapeXml(panel.title)}" data-group="${escapeXml(group)}" ` +
          `data-target="${escapeXml(bar.target)}" data-value="${bar.value}"><title>${escapeXml(`${group} · ${bar.target}: ${round(bar.value)}`)}</title></rect>`,
      );
    }
    const labelX = round(x0 + (targets.length * BAR_WIDTH) / 2);
    out.push(
      `<text x="${labelX}" y="${baseline + 10}" font-size="10" text-anchor="end" transform="rotate(-40 ${labelX} ${baseline + 10})">${escapeXml(group)}</text>`,
    );
  });
  out.push('</g>');
  return out;
}

function panelHeight(): number {
  return TITLE_SPACE + PLOT_HEIGHT + LABEL_SPACE;
}

/** The whole SVG document. */
export function renderChart(panels: readonly ChartPanel[]): string {
  const targets = [...new Set(panels.flatMap((panel) => panel.bars.map((bar) => bar.target)))];
  const spare = targets.filter((target) => !(target in COLORS));
  const color = (target: string): string => COLORS[target] ?? SPARE_COLORS[spare.indexOf(target) % SPARE_COLORS.length]!;
  const groupWidth = Math.max(1, targets.length) * BAR_WIDTH + GROUP_GAP;
  const widest = Math.max(1, ...panels.map((panel) => panel.groups.length));
  const width = Math.max(LEFT + widest * groupWidth + RIGHT, LEFT + targets.length * LEGEND_STEP, 640);
  const height = LEGEND_HEIGHT + panels.length * panelHeight();
  const layout: Layout = { targets, color };
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`,
    '<g class="legend">',
  ];
  targets.forEach((target, index) => {
    const x = LEFT + index * LEGEND_STEP;
    out.push(`<rect class="swatch" x="${x}" y="8" width="12" height="12" fill="${color(target)}"/>`);
    out.push(`<text x="${x + 16}" y="18" font-size="12">${escapeXml(target)}</text>`);
  });
  out.push('</g>');
  panels.forEach((panel, index) => out.push(...renderPanel(panel, LEGEND_HEIGHT + index * panelHeight(), layout)));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
