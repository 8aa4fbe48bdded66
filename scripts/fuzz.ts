// The long fuzz budget behind `npm run fuzz`: every property of test/support/fuzz-*.ts (the
// ones `npm test` runs a few hundred times) for minutes, with a fresh seed.
//
//   npm run fuzz                                 5 minutes over every property, random seed
//   npm run fuzz -- --minutes 30 --seed 42       longer, reproducible
//   npm run fuzz -- --only framer                only properties whose "target/name" contains this
//   npm run fuzz -- --only framer/split-invariance --seed S --size medium --path P
//                                                replays the failure a previous run printed
//   npm run fuzz -- --list                       prints the properties and their short-budget runs
//
// Each property gets an equal share of the time, half with fast-check's small sizes and half
// with medium ones. Prints per-property run counts and every counterexample; exits 1 on failure.

import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import fc from 'fast-check';

import { propertySeed, type FuzzProperty } from '../test/support/fuzz.ts';
import { loadFuzzProperties } from '../test/support/fuzz-properties.ts';

type Size = 'small' | 'medium';
const SIZES: readonly Size[] = ['small', 'medium'];

interface Options {
  minutes: number;
  seed: number;
  only: string | undefined;
  size: Size | undefined;
  path: string | undefined;
  list: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string', default: '5' },
      seed: { type: 'string' },
      only: { type: 'string' },
      size: { type: 'string' },
      path: { type: 'string' },
      list: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got "${values.minutes}"`);
  const seed = values.seed === undefined ? randomInt(0x7fffffff) : Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${values.seed}"`);
  if (values.size !== undefined && !SIZES.includes(values.size as Size)) throw new Error(`--size must be small or medium, got "${values.size}"`);
  if (values.path !== undefined && (values.only === undefined || values.size === undefined)) throw new Error('--path replays one property: give --only and --size too');
  return { minutes, seed, only: values.only, size: values.size as Size | undefined, path: values.path, list: values.list };
}

const label = (property: FuzzProperty): string => `${property.target}/${property.name}`;

interface Outcome {
  runs: number;
  skips: number;
  failure: string | null;
}

function runFor(property: FuzzProperty, base: number, size: Size, milliseconds: number, path: string | undefined): Outcome {
  const seed = propertySeed(base, property) + SIZES.indexOf(size);
  fc.configureGlobal({ baseSize: size });
  const details = fc.check(property.property, {
    seed,
    ...(path === undefined
      ? { numRuns: Number.MAX_SAFE_INTEGER, plugins: [fc.interruptAfterTimeLimit(milliseconds)] }
      : { path, numRuns: 1 }),
  });
  if (!details.failed) return { runs: details.numRuns, skips: details.numSkips, failure: null };
  const replay = `npm run fuzz -- --only ${label(property)} --seed ${base} --size ${size} --path ${JSON.stringify(details.counterexamplePath ?? '')}`;
  const error = details.errorInstance instanceof Error ? (details.errorInstance.stack ?? details.errorInstance.message) : String(details.errorInstance);
  return { runs: details.numRuns, skips: details.numSkips, failure: `${fc.defaultReportMessage(details)}\nerror: ${error}\nreplay: ${replay}` };
}

async function main(): Promise<number> {
  const opts = options(process.argv.slice(2));
  const all = await loadFuzzProperties();
  const selected = all.filter((property) => opts.only === undefined || label(property).includes(opts.only));
  if (opts.list) {
    for (const property of all) process.stdout.write(`${label(property)}  (short budget: ${property.runs} runs)\n`);
    return 0;
  }
  if (selected.length === 0) {
    process.stderr.write(`fuzz: no property matches "${opts.only}"; --list shows them\n`);
    return 1;
  }
  const sizes = opts.size === undefined ? SIZES : [opts.size];
  const share = (opts.minutes * 60_000) / (selected.length * sizes.length);
  process.stdout.write(`fuzz: ${selected.length} properties, ${opts.minutes} min, seed ${opts.seed} (${Math.round(share / 100) / 10} s per property and size)\n`);
  const startedAt = Date.now();
  let failures = 0;
  let total = 0;
  for (const property of selected) {
    const counts: string[] = [];
    let runs = 0;
    for (const size of sizes) {
      const outcome = runFor(property, opts.seed, size, share, opts.path);
      runs += outcome.runs;
      counts.push(`${size} ${outcome.runs}${outcome.skips > 0 ? ` (${outcome.skips} skipped)` : ''}`);
      if (outcome.failure !== null) {
        failures++;
        process.stdout.write(`\nFAIL ${label(property)} (${size})\n${outcome.failure}\n\n`);
      }
    }
    total += runs;
    process.stdout.write(`${label(property).padEnd(72)} ${String(runs).padStart(9)} runs  [${counts.join(', ')}]\n`);
  }
  const seconds = Math.round((Date.now() - startedAt) / 1000);
  process.stdout.write(`fuzz: ${total} runs in ${seconds} s, ${failures === 0 ? 'no failure' : `${failures} failure(s)`} (seed ${opts.seed})\n`);
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fuzz: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
