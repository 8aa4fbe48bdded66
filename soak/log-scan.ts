// What the ambassador logged at warn or above during the whole run. Its supervisor keeps only the
// last 64 KiB of output (bench/child.ts), which at info level (a line per login and logout) is
// under a minute of a soak, so the tail is scanned at every sample and each line counted once:
// lines are told apart by their time (pino's "time", ISO text or epoch ms), and at the newest
// time already seen, by their text. Pure; unit-tested.

export interface LogLine {
  level: string;
  msg: string;
  count: number;
  /** The first such line, cut to 400 characters: its fields say why. */
  example: string;
}

const PINO_LEVELS: Readonly<Record<number, string>> = { 40: 'warn', 50: 'error', 60: 'fatal' };
const LABELS: readonly string[] = Object.values(PINO_LEVELS);

interface Entry {
  level?: unknown;
  time?: unknown;
  msg?: unknown;
}

function timeOf(entry: Entry): number | null {
  if (typeof entry.time === 'number') return entry.time;
  if (typeof entry.time === 'string') {
    const ms = Date.parse(entry.time);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

/** warn, error or fatal for a pino level given as a number or as its label; null below warn. */
function levelOf(entry: Entry): string | null {
  if (typeof entry.level === 'number') return PINO_LEVELS[entry.level] ?? null;
  return typeof entry.level === 'string' && LABELS.includes(entry.level) ? entry.level : null;
}

export class WarningScanner {
  readonly #counts = new Map<string, LogLine>();
  #newestMs = -Infinity;
  /** Lines seen at #newestMs (several may share a millisecond). */
  #atNewest = new Set<string>();

  /** Counts the lines of `output` not counted before. */
  scan(output: string): void {
    let newestMs = this.#newestMs;
    let atNewest = new Set(this.#atNewest);
    for (const line of output.split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: Entry;
      try {
        entry = JSON.parse(line) as Entry;
      } catch {
        continue; // the first line of the kept tail may be cut
      }
      const ms = timeOf(entry);
      if (ms === null || ms < this.#newestMs || (ms === this.#newestMs && this.#atNewest.has(line))) continue;
      if (ms > newestMs) {
        newestMs = ms;
        atNewest = new Set();
      }
      if (ms === newestMs) atNewest.add(line);
      this.#count(entry, line);
    }
    this.#newestMs = newestMs;
    this.#atNewest = atNewest;
  }

  #count(entry: Entry, line: string): void {
    const level = levelOf(entry);
    if (level === null) return;
    const msg = String(entry.msg ?? '');
    const key = `${level} ${msg}`;
    const found = this.#counts.get(key);
    if (found) found.count++;
    else this.#counts.set(key, { level, msg, count: 1, example: line.slice(0, 400) });
  }

  /** Grouped by level and message, most frequent first. */
  lines(): LogLine[] {
    return [...this.#counts.values()].sort((a, b) => b.count - a.count);
  }
}
