// The bench's command line (pure: parsed from argv, unit-tested) and which query modes each
// selected target runs in.

import { parseArgs } from 'node:util';

import { QUERY_MODES, type QueryMode } from './pgbench.ts';
import { TARGETS, type TargetSpec } from './targets.ts';

export const USAGE = `usage: npm run bench -- [--duration S | --quick] [--repeat N] [--clients N] [--threads N] [--scale N] [--pool-size N]
                        [--targets ${TARGETS.map((t) => t.name).join(',')}] [--modes ${QUERY_MODES.join(',')}]

  --quick       5 s runs instead of 15 s (--duration wins)
  --repeat N    rounds (default 3); every round runs every target back to back per mode
  --pool-size N server connections of the transaction-pooling targets (default 20); session-pooling
                targets get max(N, clients)
  --targets     default: all, each in its default modes (pgbouncer: simple, extended;
                pgbouncer-session: prepared); a target named here runs in every selected mode it supports`;

export interface BenchOptions {
  durationS: number;
  repeats: number;
  clients: number;
  threads: number;
  scale: number;
  poolSize: number;
  targets: TargetSpec[];
  /** Whether --targets was given (then targets run in every supported mode, not their default ones). */
  explicitTargets: boolean;
  modes: QueryMode[];
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} expects a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

function pick<T>(name: string, text: string | undefined, all: readonly T[], key: (item: T) => string): T[] {
  if (text === undefined) return [...all];
  const picked: T[] = [];
  for (const wanted of text.split(',').map((item) => item.trim())) {
    const found = all.find((item) => key(item) === wanted);
    if (!found) throw new Error(`--${name}: unknown ${JSON.stringify(wanted)}; expected some of ${all.map(key).join(', ')}`);
    if (!picked.includes(found)) picked.push(found);
  }
  return picked;
}

/** The query modes `target` runs in, in the order of `options.modes`. */
export function targetModes(target: TargetSpec, options: Pick<BenchOptions, 'explicitTargets' | 'modes'>): QueryMode[] {
  const allowed = options.explicitTargets ? target.supportedModes : target.defaultModes;
  return options.modes.filter((mode) => allowed.includes(mode));
}

/** Options from argv (without node and the script); null for --help. Throws on bad input. */
export function parseCli(argv: string[], targets: readonly TargetSpec[] = TARGETS): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' }, quick: { type: 'boolean' }, repeat: { type: 'string' }, clients: { type: 'string' },
      threads: { type: 'string' }, scale: { type: 'string' }, 'pool-size': { type: 'string' }, targets: { type: 'string' },
      modes: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return null;
  const options: BenchOptions = {
    durationS: positiveInt('duration', values.duration, values.quick ? 5 : 15),
    repeats: positiveInt('repeat', values.repeat, 3),
    clients: positiveInt('clients', values.clients, 32),
    threads: positiveInt('threads', values.threads, 2),
    scale: positiveInt('scale', values.scale, 10),
    poolSize: positiveInt('pool-size', values['pool-size'], 20),
    // In the order given (the first is the baseline); by default the table's order, direct first.
    targets: pick('targets', values.targets, targets, (target) => target.name),
    explicitTargets: values.targets !== undefined,
    modes: pick('modes', values.modes, QUERY_MODES, (mode) => mode),
  };
  for (const target of options.targets) {
    if (targetModes(target, options).length === 0) {
      throw new Error(
        `--targets: ${target.name} runs in none of the selected modes (${options.modes.join(', ')}); it supports ${target.supportedModes.join(', ')}`,
      );
    }
  }
  return options;
}
