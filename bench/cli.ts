// The bench's command line and the work it implies: which workloads run at which client counts,
// and in each (workload, clients, mode) group which targets run back to back. By default pgbouncer
// (transaction pooling, 1.18) runs without -M prepared and pgbouncer-session stands in for it
// there; ambassador-split runs only the split workloads. Pure; unit-tested.

import path from 'node:path';
import { parseArgs } from 'node:util';

import { positiveInt } from './options.ts';
import { pgbenchDurationS, QUERY_MODES, WORKLOADS, type QueryMode, type Workload } from './pgbench.ts';
import { OTHER_BUILD, otherBuildTarget, ROOT, TARGETS, type TargetSpec } from './targets.ts';

/** The memory bench: idle clients against these targets (transaction pooling), when selected. */
export const MEMORY_TARGETS = ['ambassador-txn', 'pgbouncer'] as const;
export const MEMORY = 'memory';
const WORKLOAD_NAMES = [...WORKLOADS.map((workload) => workload.name), MEMORY];

export const DEFAULTS = { durationS: 10, quickDurationS: 3, repeats: 3, memoryClients: 10_000 };

export const USAGE = `usage: npm run bench -- [--duration S | --quick] [--repeat N] [--clients N,...] [--threads N] [--scale N]
                        [--pool-size N] [--workloads ${WORKLOAD_NAMES.join(',')}] [--memory] [--memory-clients N]
                        [--targets ${TARGETS.map((t) => t.name).join(',')}]
                        [--modes ${QUERY_MODES.join(',')}] [--against REF] [--node-options=OPTS] [--out DIR]

  --duration S     seconds per measured run (default ${DEFAULTS.durationS})
  --quick          ${DEFAULTS.quickDurationS} s runs instead of ${DEFAULTS.durationS} s (--duration wins)
  --repeat N       rounds (default ${DEFAULTS.repeats}); a round runs every group once, its targets back to back,
                   in reverse order every other round; runs at C clients get floor(C/100) s more for
                   connecting (pgbench's -T includes it, tps not)
  --clients LIST   client counts for every workload; default: select-only 1,32,256, the others 32
  --workloads LIST default: all of them, memory last
                     select-only        pgbench -S, -M simple|extended|prepared
                     tpcb               pgbench's TPC-B-like script, -M simple|prepared
                     split-select-only  pgbench -S through ambassador-split (primary + 2 replicas), partners
                                        direct, pgbouncer, pgbouncer-session on the primary
                     split-tpcb         the TPC-B-like script the same way
                     memory             ${DEFAULTS.memoryClients} idle scram-sha-256 clients held open against
                                        ${MEMORY_TARGETS.join(' and ')}: RSS per idle client, time to connect
  --memory         only the memory bench (same as --workloads memory)
  --memory-clients N  idle clients of the memory bench (default ${DEFAULTS.memoryClients})
  --threads N      pgbench -j (default 2; never more than the clients)
  --scale N        pgbench -i -s (default 10)
  --pool-size N    server connections of the transaction-pooling targets, per host (default 20); session-pooling
                   targets get max(N, highest client count)
  --targets LIST   default: all, each in its default modes (pgbouncer: simple, extended; pgbouncer-session:
                   prepared); a target named here runs in every selected mode it supports; ambassador-split
                   runs only the split workloads, ambassador and ambassador-txn only the others, node-pipe
                   (a bare Node.js byte pipe) and node-pool (a minimal pooler on Node, simple and extended)
                   only select-only, and ambassador-txn-cached (pool.cacheUnnamedStatements) select-only, by default -M extended only
  --against REF    also run ambassador-txn built from git commit REF (as ${OTHER_BUILD}, next to
                   ambassador-txn wherever it runs) and report ambassador-txn / ${OTHER_BUILD} per round: the
                   way to measure a change on a machine whose speed drifts; e.g.
                   --against HEAD~1 --targets ambassador-txn --workloads select-only --clients 32
  --node-options=OPTS  more options for node (space-separated; with "=", as they begin with "-"): the
                   ambassador targets get them after the image's, node-pipe and node-pool alone; e.g.
                   --node-options=--perf-basic-prof for JavaScript functions' names in \`perf record -p <pid>\`
  --out DIR        where latest.json, latest.md and latest.svg go (default bench/results)

  Wall time on 2 CPUs: the default run ~44 min (77 runs a round x 3 rounds of 10 s, 41 verification runs,
  2 x ${DEFAULTS.memoryClients} idle logins); --quick ~17 min. The estimate for the options given is logged at
  start.`;

export interface BenchOptions {
  durationS: number;
  repeats: number;
  /** --clients when given (every workload runs at these counts), else null (each workload's defaults). */
  clients: number[] | null;
  threads: number;
  scale: number;
  poolSize: number;
  targets: TargetSpec[];
  /** Whether --targets was given (then targets run in every supported mode, not their default ones). */
  explicitTargets: boolean;
  modes: QueryMode[];
  /** The pgbench workloads selected, in run order. */
  workloads: Workload[];
  memory: boolean;
  memoryClients: number;
  /** --against: the git ref ambassador-txn-old is built from, or null. */
  against: string | null;
  /** --node-options: more options for the node of the targets the bench starts on Node. */
  nodeOptions: string[];
  outDir: string;
}

/** One group of a round: these targets run back to back at the same workload, client count and mode. */
export interface RunGroup {
  workload: Workload;
  clients: number;
  mode: QueryMode;
  targets: TargetSpec[];
}

function positiveIntList(name: string, text: string | undefined): number[] | null {
  if (text === undefined) return null;
  const values = text.split(',').map((item) => positiveInt(name, item.trim(), 0));
  return [...new Set(values)];
}

function pick<T>(name: string, text: string | undefined, all: readonly T[], key: (item: T) => string): T[] {
  if (text === undefined) return [...all];
  const picked: T[] = [];
  for (const wanted of text.split(',').map((item) => item.trim())) {
    const found = all.find((item) => key(item) === wanted);
    if (found === undefined) throw new Error(`--${name}: unknown ${JSON.stringify(wanted)}; expected some of ${all.map(key).join(', ')}`);
    if (!picked.includes(found)) picked.push(found);
  }
  return picked;
}

/** The query modes `target` runs in, in the order of `options.modes`. */
export function targetModes(target: TargetSpec, options: Pick<BenchOptions, 'explicitTargets' | 'modes'>): QueryMode[] {
  const allowed = options.explicitTargets ? target.supportedModes : target.defaultModes;
  return options.modes.filter((mode) => allowed.includes(mode));
}

/** The client counts `workload` runs at. */
export function clientsOf(workload: Workload, options: Pick<BenchOptions, 'clients'>): readonly number[] {
  return options.clients ?? workload.defaultClients;
}

/** Every group of one round, in run order: workload, then client count, then mode; groups without targets are left out. */
export function runGroups(options: Omit<BenchOptions, 'durationS' | 'repeats'>): RunGroup[] {
  const groups: RunGroup[] = [];
  for (const workload of options.workloads) {
    for (const clients of clientsOf(workload, options)) {
      for (const mode of workload.modes.filter((m) => options.modes.includes(m))) {
        const targets = options.targets.filter(
          (target) =>
            target.workloadKinds.includes(workload.kind) &&
            (target.onlyWorkloads?.includes(workload.name) ?? true) &&
            targetModes(target, options).includes(mode),
        );
        if (targets.length > 0) groups.push({ workload, clients, mode, targets });
      }
    }
  }
  return groups;
}

/** The targets of the memory bench among those selected. */
export function memoryTargets(options: Pick<BenchOptions, 'memory' | 'targets'>): TargetSpec[] {
  if (!options.memory) return [];
  return options.targets.filter((target) => (MEMORY_TARGETS as readonly string[]).includes(target.name));
}

/**
 * Seconds the bench will take, roughly: pgbench's -T of every measured and verification run (a
 * run's own overhead is ~0.1 s: -T includes connecting), a fixed setup, and the memory bench's
 * logins (pgbouncer derives a SCRAM verifier per login: ~300 logins/s against the ambassador's
 * ~1200). Calibrated on a --quick run on 2 CPUs: 13.0 min estimated, 12.4 min measured.
 */
export function estimateSeconds(options: BenchOptions, perRunOverheadS = 0.1, setupS = 30, memoryLoginsPerS = 400): number {
  const groups = runGroups(options);
  const measured = groups.reduce((sum, group) => sum + group.targets.length * (pgbenchDurationS(options.durationS, group.clients) + perRunOverheadS), 0);
  const verified = new Map<string, number>();
  for (const group of groups) {
    for (const target of group.targets) {
      const key = `${target.name} ${group.workload.name} ${group.mode}`;
      verified.set(key, Math.max(verified.get(key) ?? 0, pgbenchDurationS(1, group.clients) + perRunOverheadS));
    }
  }
  const verification = [...verified.values()].reduce((sum, seconds) => sum + seconds, 0);
  const memory = memoryTargets(options).length * (options.memoryClients / memoryLoginsPerS + 10);
  return setupS + options.repeats * measured + verification + memory;
}

/** Options from argv (without node and the script); null for --help. Throws on bad input. */
export function parseCli(argv: string[], targets: readonly TargetSpec[] = TARGETS): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' }, quick: { type: 'boolean' }, repeat: { type: 'string' }, clients: { type: 'string' },
      threads: { type: 'string' }, scale: { type: 'string' }, 'pool-size': { type: 'string' }, targets: { type: 'string' },
      modes: { type: 'string' }, workloads: { type: 'string' }, memory: { type: 'boolean' }, 'memory-clients': { type: 'string' },
      against: { type: 'string' }, 'node-options': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return null;
  if (values.memory && values.workloads !== undefined) throw new Error('--memory is --workloads memory: give one of them');
  const workloadNames = values.memory ? [MEMORY] : pick('workloads', values.workloads, WORKLOAD_NAMES, (name) => name);
  if (values.against !== undefined && values.against.trim() === '') throw new Error('--against: give a git ref (a commit, branch or tag)');
  const other = values.against === undefined ? null : otherBuildTarget(values.against);
  const nodeOptions = values['node-options']?.split(/\s+/).filter((option) => option !== '') ?? [];
  if (values['node-options'] !== undefined && (nodeOptions.length === 0 || !nodeOptions.every((option) => option.startsWith('-')))) {
    throw new Error(`--node-options: give node's options, each beginning with "-", got ${JSON.stringify(values['node-options'])}`);
  }
  const options: BenchOptions = {
    durationS: positiveInt('duration', values.duration, values.quick ? DEFAULTS.quickDurationS : DEFAULTS.durationS),
    repeats: positiveInt('repeat', values.repeat, DEFAULTS.repeats),
    clients: positiveIntList('clients', values.clients),
    threads: positiveInt('threads', values.threads, 2),
    scale: positiveInt('scale', values.scale, 10),
    poolSize: positiveInt('pool-size', values['pool-size'], 20),
    // In the order given (the first is the baseline); by default the table's order, direct first.
    targets: besideAmbassadorTxn(pick('targets', values.targets, other ? [...targets, other] : targets, (target) => target.name), other),
    explicitTargets: values.targets !== undefined,
    modes: pick('modes', values.modes, QUERY_MODES, (mode) => mode),
    workloads: WORKLOADS.filter((workload) => workloadNames.includes(workload.name)),
    memory: workloadNames.includes(MEMORY),
    memoryClients: positiveInt('memory-clients', values['memory-clients'], DEFAULTS.memoryClients),
    against: values.against ?? null,
    nodeOptions,
    outDir: values.out === undefined ? path.join(ROOT, 'bench', 'results') : path.resolve(values.out),
  };
  checkTargets(options);
  return options;
}

/** The selection with `other` (--against's build) right after ambassador-txn, named in --targets or not. */
function besideAmbassadorTxn(selected: TargetSpec[], other: TargetSpec | null): TargetSpec[] {
  if (other === null) return selected;
  const rest = selected.filter((target) => target !== other);
  const at = rest.findIndex((target) => target.name === 'ambassador-txn');
  return at < 0 ? rest : [...rest.slice(0, at + 1), other, ...rest.slice(at + 1)];
}

/** Every target named in --targets must have work; so must the selection as a whole. */
function checkTargets(options: BenchOptions): void {
  if (options.against !== null) {
    if (!options.targets.some((target) => target.name === 'ambassador-txn')) {
      throw new Error(`--against compares ambassador-txn with ${OTHER_BUILD}: select ambassador-txn too (--targets ambassador-txn,...)`);
    }
  }
  const groups = runGroups(options);
  const memory = memoryTargets(options);
  if (options.explicitTargets) {
    for (const target of options.targets) {
      if (groups.some((group) => group.targets.includes(target)) || memory.includes(target)) continue;
      throw new Error(
        `--targets: ${target.name} has nothing to run: it runs ${target.workloadKinds.join(' and ')} workloads in ${target.supportedModes.join(', ')}; ` +
          `selected: workloads ${[...options.workloads.map((w) => w.name), ...(options.memory ? [MEMORY] : [])].join(', ')}, modes ${options.modes.join(', ')}`,
      );
    }
  }
  if (groups.length === 0 && memory.length === 0) throw new Error('nothing to run: no selected target runs any selected workload and mode');
}
