// The SVG chart: well-formed XML (checked with a small tag-balance parser, not a snapshot), one
// <rect class="bar"> per bar, bar heights proportional to the values within a panel, the panels
// a run gets, and escaping of names.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chartPanels, niceMax, renderChart, type ChartPanel } from '../../../bench/chart.ts';
import { summarize, type MemoryResult } from '../../../bench/report.ts';
import { row } from './rows.ts';

interface Element {
  name: string;
  attributes: Map<string, string>;
  text: string;
}

/** Parses the tags of an XML document, checking nesting, attribute syntax and entities; returns every element. */
function parseXml(xml: string): Element[] {
  const body = xml.replace(/^<\?xml[^>]*\?>\s*/, '').trim();
  const stack: Element[] = [];
  const elements: Element[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let roots = 0;
  for (const match of body.matchAll(tag)) {
    const [, closing, name, attributeText, selfClosing, text] = match;
    if (text !== undefined) {
      if (stack.length === 0) assert.equal(text.trim(), '', 'text outside the root');
      assert.doesNotMatch(text, /&(?!(amp|lt|gt|quot|apos);)/, `bare & in text: ${text}`);
      if (stack.length > 0) stack[stack.length - 1]!.text += text;
      continue;
    }
    if (closing) {
      const open = stack.pop();
      assert.equal(open?.name, name, `</${name}> closes <${open?.name}>`);
      continue;
    }
    const attributes = new Map<string, string>();
    for (const [, key, value] of attributeText!.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      assert.ok(!attributes.has(key!), `duplicate attribute ${key} on <${name}>`);
      assert.doesNotMatch(value!, /&(?!(amp|lt|gt|quot|apos);)/, `bare & in ${key}`);
      attributes.set(key!, value!);
    }
    const element: Element = { name: name!, attributes, text: '' };
    if (stack.length === 0) roots++;
    elements.push(element);
    if (!selfClosing) stack.push(element);
  }
  const consumed = [...body.matchAll(tag)].reduce((sum, match) => sum + match[0].length, 0);
  assert.equal(consumed, body.length, 'every character belongs to a tag or to text');
  assert.equal(stack.length, 0, `unclosed: ${stack.map((element) => element.name).join(', ')}`);
  assert.equal(roots, 1);
  return elements;
}

/** How a title appears in an attribute. */
function escaped(text: string): string {
  return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;');
}

const PANELS: ChartPanel[] = [
  {
    title: 'tps',
    groups: ['select-only simple ×32', 'select-only prepared ×32', 'tpcb simple ×32'],
    bars: [
      { group: 'select-only simple ×32', target: 'direct', value: 24_000 },
      { group: 'select-only simple ×32', target: 'ambassador-txn', value: 9000 },
      { group: 'select-only simple ×32', target: 'pgbouncer', value: 16_000 },
      { group: 'select-only prepared ×32', target: 'direct', value: 35_000 },
      { group: 'select-only prepared ×32', target: 'pgbouncer-session', value: 16_400 },
      { group: 'tpcb simple ×32', target: 'direct', value: 1200 },
    ],
  },
  {
    title: 'CPU <µs> & per txn',
    groups: ['select-only simple ×32', 'select-only prepared ×32'],
    bars: [
      { group: 'select-only simple ×32', target: 'ambassador-txn', value: 74.6 },
      { group: 'select-only simple ×32', target: 'pgbouncer', value: 21.4 },
      { group: 'select-only prepared ×32', target: 'pgbouncer-session', value: 20.1 },
    ],
  },
];

test('the chart is well-formed XML with one rect per bar, each carrying its panel, group, target and value', () => {
  const svg = renderChart(PANELS);
  const elements = parseXml(svg);
  assert.equal(elements[0]!.name, 'svg');
  assert.equal(elements[0]!.attributes.get('xmlns'), 'http://www.w3.org/2000/svg');
  const bars = elements.filter((element) => element.name === 'rect' && element.attributes.get('class') === 'bar');
  assert.equal(bars.length, 9);
  assert.deepEqual(
    bars.map((bar) => `${bar.attributes.get('data-panel')}|${bar.attributes.get('data-group')}|${bar.attributes.get('data-target')}|${bar.attributes.get('data-value')}`),
    PANELS.flatMap((panel) => panel.bars.map((bar) => `${escaped(panel.title)}|${bar.group}|${bar.target}|${bar.value}`)),
  );
  assert.equal(elements.filter((element) => element.name === 'rect' && element.attributes.get('class') === 'swatch').length, 4, 'one legend entry per target');
  assert.ok(elements.some((element) => element.name === 'text' && element.text === 'CPU &lt;µs&gt; &amp; per txn'));
});

test('within a panel bar heights are proportional to the values and stand on one baseline; the tallest fits the axis', () => {
  const bars = parseXml(renderChart(PANELS)).filter((element) => element.attributes.get('class') === 'bar');
  for (const panel of PANELS) {
    const mine = bars.filter((bar) => bar.attributes.get('data-panel') === escaped(panel.title));
    const perUnit = mine.map((bar) => Number(bar.attributes.get('height')) / Number(bar.attributes.get('data-value')));
    for (const scale of perUnit) assert.ok(Math.abs(scale / perUnit[0]! - 1) < 0.002, `${panel.title}: ${perUnit}`);
    const bottoms = new Set(mine.map((bar) => (Number(bar.attributes.get('y')) + Number(bar.attributes.get('height'))).toFixed(1)));
    assert.equal(bottoms.size, 1);
    const tallest = Math.max(...mine.map((bar) => Number(bar.attributes.get('height'))));
    assert.ok(tallest > 0 && tallest <= 180);
  }
  // Bars of one group sit side by side in target order, without overlapping.
  const simple = bars.filter((bar) => bar.attributes.get('data-panel') === 'tps' && bar.attributes.get('data-group') === 'select-only simple ×32');
  const xs = simple.map((bar) => Number(bar.attributes.get('x')));
  assert.deepEqual([...xs].sort((a, b) => a - b), xs);
  for (let index = 1; index < xs.length; index++) assert.ok(xs[index]! - xs[index - 1]! >= Number(simple[0]!.attributes.get('width')));
});

test('axis maximum: the next 1, 2, 2.5 or 5 x 10^k', () => {
  assert.equal(niceMax(24_000), 25_000);
  assert.equal(niceMax(35_000), 50_000);
  assert.equal(niceMax(74.6), 100);
  assert.equal(niceMax(100), 100);
  assert.equal(niceMax(0.7), 1);
  assert.equal(niceMax(0), 1);
});

test('panels of a run: tps and CPU per group (no bar without a value), memory only when measured', () => {
  const summary = summarize(
    [row(1, 'direct', 1000), row(1, 'ambassador-txn', 500, { cpuUsPerTxn: 70 }), row(1, 'pgbouncer', null), row(1, 'direct', 300, { workload: 'tpcb' })],
    'direct',
  );
  const [tps, cpu, ...rest] = chartPanels(summary, []);
  assert.deepEqual(rest, []);
  assert.deepEqual(tps!.groups, ['select-only simple ×32', 'tpcb simple ×32']);
  assert.deepEqual(tps!.bars.map((bar) => `${bar.group} ${bar.target} ${bar.value}`), [
    'select-only simple ×32 direct 1000', 'select-only simple ×32 ambassador-txn 500', 'tpcb simple ×32 direct 300',
  ]);
  assert.deepEqual(cpu!.bars.map((bar) => `${bar.target} ${bar.value}`), ['ambassador-txn 70']);

  const idle = (target: string, bytesPerClient: number | null): MemoryResult => ({
    target, clients: 10_000, connected: 10_000, failedLogins: 0, errors: [], rssBeforeBytes: 0, rssAfterBytes: 0, bytesPerClient,
    connectSeconds: 1, problem: null, details: null,
  });
  const memory = chartPanels(summary, [idle('ambassador-txn', 12_288), idle('pgbouncer', 1024), idle('broken', null)])[2]!;
  assert.deepEqual(memory.bars, [
    { group: '10000 idle clients', target: 'ambassador-txn', value: 12 },
    { group: '10000 idle clients', target: 'pgbouncer', value: 1 },
  ]);
  parseXml(renderChart(chartPanels(summary, [idle('a"b<c', 2048)])));
});

test('the tag-balance check itself rejects broken XML', () => {
  assert.throws(() => parseXml('<svg><g></svg>'));
  assert.throws(() => parseXml('<svg><rect x="1"></svg>'));
  assert.throws(() => parseXml('<svg><text>a & b</text></svg>'));
  assert.throws(() => parseXml('<svg></svg><svg></svg>'));
});
