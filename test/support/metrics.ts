// Scraping a running ambassador's /metrics over HTTP and reading samples out of the exposition
// text, for tests that assert how counters and gauges move around real traffic.

export type Samples = Map<string, number>;

/** `name{a="1",b="2"}` with the labels in name order, so lookups do not depend on output order. */
function sampleKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((key) => `${key}="${labels[key]}"`);
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}

/** Parses Prometheus text exposition (comments skipped). */
export function parseExposition(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.set(sampleKey(match[1]!, labels), Number(match[3]));
  }
  return samples;
}

export async function scrape(adminPort: number): Promise<Samples> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseExposition(await res.text());
}

/** One sample's value; undefined when the series is absent. */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.get(sampleKey(name, labels));
}

/** The sum of every series of `name` whose labels include `match`. */
export function total(samples: Samples, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of samples) {
    const brace = key.indexOf('{');
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const has = ([label, want]: [string, string]): boolean => key.includes(`{${label}="${want}"`) || key.includes(`,${label}="${want}"`);
    if (Object.entries(match).every(has)) sum += value;
  }
  return sum;
}
