// The soak's command line. Pure; unit-tested.

import path from 'node:path';
import { parseArgs } from 'node:util';

import { assignWorkers, KIND_DESCRIPTIONS, MIN_CLIENTS, WORK_KINDS, type WorkKind } from './kinds.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');

export const DEFAULTS = { minutes: 10, clients: 12, replicas: 2, sampleSeconds: 5, poolSize: 20 };

export const USAGE = `usage: npm run soak -- [--minutes N] [--clients N] [--seed S] [--replicas 1|2] [--out DIR]

  --minutes N   how long the mixed load runs (default ${DEFAULTS.minutes}; fractions allowed, e.g. 0.5)
  --clients N   concurrent clients, shared out over the kinds of work (default ${DEFAULTS.clients}, at least ${MIN_CLIENTS}):
${WORK_KINDS.map((kind) => `                  ${kind.padEnd(20)} ${KIND_DESCRIPTIONS[kind]}`).join('\n')}
  --seed S      seed of every random choice (default: from the clock; printed and reported)
  --replicas N  streaming replicas behind the ambassador (default ${DEFAULTS.replicas}); each is restarted once during the run,
                one at ~50% and (with 2) the other at ~65%, so reads must move to the other hosts
  --out DIR     where latest.json, latest.md and <timestamp>.json go (default soak/results)

  Every ${DEFAULTS.sampleSeconds} s: the ambassador's RSS, open fds, TCP sockets, CPU, Node handles and heap (from /metrics), and
  per kind the operations, errors (expected: caused on purpose; unexpected: everything else, wrong answers
  included) and p50/p99 latency. Exit code 1 when the verdict fails (growth past the tolerance after warm-up,
  any unexpected error, clients left open after the load); latency is reported, not judged.`;

export interface SoakOptions {
  minutes: number;
  clients: number;
  workers: Record<WorkKind, number>;
  seed: number;
  replicas: number;
  outDir: string;
  sampleSeconds: number;
  poolSize: number;
}

function positiveNumber(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) throw new Error(`--${name} expects a positive number, got ${JSON.stringify(text)}`);
  return value;
}

function integer(name: string, text: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`--${name} expects an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** Options from argv (without node and the script); null for --help. Throws on bad input. */
export function parseSoakArgs(argv: string[], now: () => number = Date.now): SoakOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' }, clients: { type: 'string' }, seed: { type: 'string' }, replicas: { type: 'string' },
      out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return null;
  const clients = integer('clients', values.clients, DEFAULTS.clients, MIN_CLIENTS);
  return {
    minutes: positiveNumber('minutes', values.minutes, DEFAULTS.minutes),
    clients,
    workers: assignWorkers(clients),
    seed: integer('seed', values.seed, now() % 2 ** 31, 0, 2 ** 32 - 1),
    replicas: integer('replicas', values.replicas, DEFAULTS.replicas, 1, 2),
    outDir: values.out === undefined ? path.join(ROOT, 'soak', 'results') : path.resolve(values.out),
    sampleSeconds: DEFAULTS.sampleSeconds,
    poolSize: DEFAULTS.poolSize,
  };
}
