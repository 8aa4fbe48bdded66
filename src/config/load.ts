// Loading: YAML text -> interpolated tree -> layered over the environment, under the flags ->
// validated by the schema -> deep-frozen Config. Precedence: defaults < environment < file < flags
// (DESIGN.md: "the file wins where both set a key, flags win over both").
// Every failure is a ConfigError that names where the bad value came from: `file:line` and the
// key path for file values (lines found through the YAML document's node ranges), the variable
// for environment values, "set by a flag" for flags. YAML syntax errors name their line too.

import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import YAML, { LineCounter, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import { ConfigError } from '../errors.ts';
import { readEnvironment, type EnvironmentLayer } from './env.ts';
import { InterpolationError, interpolateTree, type Environment, type KeyPath } from './interpolate.ts';
import { isSecretKey } from './redact.ts';
import { ConfigSchema, type Config, type ConfigInput, type DeepPartial } from './schema.ts';
import { describeValue } from './values.ts';

export interface LoadOptions {
  /** Path of the YAML file; without one the config comes from the environment and flags alone. */
  readonly file?: string;
  /** Variables for `${VAR}` interpolation and the environment layer; defaults to process.env. */
  readonly env?: Environment;
  /** Highest-precedence values (command-line flags), in config-file form. */
  readonly flags?: DeepPartial<ConfigInput>;
}

/** A parsed YAML file: its plain tree and a way back from a key path to a line. */
interface YamlSource {
  readonly file: string;
  readonly tree: Record<string, unknown>;
  readonly lineOf: (path: KeyPath) => number | undefined;
}

/** `upstream.hosts[0].port` */
export function formatKeyPath(path: KeyPath): string {
  return path.map((key, index) => (typeof key === 'number' ? `[${key}]` : index === 0 ? key : `.${key}`)).join('');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The line of the deepest node along `path` that the document has (1-based). */
function lineAlong(doc: Document, counter: LineCounter, path: KeyPath): number | undefined {
  const lineAt = (node: Node | null | undefined) => (node?.range ? counter.linePos(node.range[0]).line : undefined);
  let node: unknown = doc.contents;
  let line = lineAt(doc.contents);
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => String(isScalar(item.key) ? item.key.value : item.key) === String(key));
      if (!pair) break;
      line = lineAt(pair.key as Node) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number' && node.items[key] !== undefined) {
      node = node.items[key];
      line = lineAt(node as Node) ?? line;
    } else {
      break;
    }
  }
  return line;
}

/** Map values that are null (`listen:` with nothing under it) count as not set. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) if (item !== null) out[key] = dropNulls(item);
  return out;
}

function readYaml(text: string, file: string): YamlSource {
  const counter = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: counter, prettyErrors: false });
  const [syntaxError] = doc.errors;
  if (syntaxError) {
    const { line, col } = counter.linePos(syntaxError.pos[0]);
    throw new ConfigError(`YAML syntax error (column ${col}): ${syntaxError.message}`, { file, line });
  }
  let tree: unknown;
  try {
    tree = dropNulls(doc.toJS());
  } catch (err) {
    throw new ConfigError(`cannot read YAML: ${err instanceof Error ? err.message : String(err)}`, { file });
  }
  if (tree === null || tree === undefined) tree = {};
  if (!isPlainObject(tree)) {
    throw new ConfigError(`expected a mapping of sections (listen, upstream, pool, ...) at the top, got ${describeValue(tree)}`, {
      file,
      line: lineAlong(doc, counter, []),
    });
  }
  return { file, tree, lineOf: (path) => lineAlong(doc, counter, path) };
}

/** Deep merge for layering: objects merge key by key, anything else (lists too) replaces. */
export function mergeLayers(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  // A different variant of a discriminated union (credentials) replaces the whole object.
  if ('type' in base && 'type' in over && base.type !== over.type) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = mergeLayers(base[key], value);
  return out;
}

function hasPath(tree: unknown, path: KeyPath): boolean {
  let node = tree;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return false;
    node = (node as Record<string | number, unknown>)[key];
  }
  return node !== undefined;
}

const isPrefix = (prefix: KeyPath, path: KeyPath) => prefix.length <= path.length && prefix.every((key, i) => path[i] === key);

// ---- schema issues -> ConfigError ---------------------------------------------------------------

interface Problem {
  readonly path: KeyPath;
  readonly message: string;
}

const TYPE_NAMES: Readonly<Record<string, string>> = { object: 'a mapping', array: 'a list', string: 'a string' };

function describeInput(path: KeyPath, input: unknown): string {
  const last = path[path.length - 1];
  if (typeof last === 'string' && isSecretKey(last) && typeof input !== 'object') return `a ${typeof input}`;
  return describeValue(input);
}

/** Turns one zod issue into problems with plain-language messages (unknown keys: one each). */
function problemsOf(issue: z.core.$ZodIssue): Problem[] {
  const path = issue.path.filter((key): key is string | number => typeof key !== 'symbol');
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: [...path, key], message: 'unknown key' }));
    case 'invalid_type':
      if (issue.input === undefined) return [{ path, message: 'required, but not set' }];
      return [{ path, message: `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describeInput(path, issue.input)}` }];
    case 'invalid_union': {
      const options = ('options' in issue ? (issue.options ?? []) : []).map(String).join(' | ');
      if (!issue.discriminator) return [{ path, message: issue.message }];
      // zod reports the whole object as input; the rejected value is its discriminator.
      const value = isPlainObject(issue.input) ? issue.input[issue.discriminator] : issue.input;
      if (value === undefined) return [{ path, message: `required, one of ${options}` }];
      return [{ path, message: `expected one of ${options}, got ${describeValue(value)}` }];
    }
    default:
      return [{ path, message: issue.message }];
  }
}

interface Origins {
  readonly source: YamlSource | undefined;
  readonly env: EnvironmentLayer;
  readonly flags: unknown;
}

/** Where the value at `path` came from, as ConfigError options plus a message suffix. */
function locate(path: KeyPath, origins: Origins): { file?: string; line?: number; keyPath: string; suffix: string } {
  const keyPath = formatKeyPath(path);
  const { source } = origins;
  if (hasPath(origins.flags, path)) return { keyPath, suffix: ' (set by a flag)' };
  if (source && hasPath(source.tree, path)) return { file: source.file, line: source.lineOf(path), keyPath, suffix: '' };
  const fromEnv = origins.env.sources.find((entry) => isPrefix(entry.path, path) || isPrefix(path, entry.path));
  if (fromEnv) return { keyPath, suffix: ` (from environment ${fromEnv.variable})` };
  if (source) return { file: source.file, line: source.lineOf(path), keyPath, suffix: '' };
  return { keyPath, suffix: '' };
}

/** One ConfigError for all issues: the first (by line) leads, the others follow on their own lines. */
function toConfigError(issues: readonly z.core.$ZodIssue[], origins: Origins): ConfigError {
  const located = issues
    .flatMap(problemsOf)
    .map((problem) => ({ problem, where: locate(problem.path, origins) }))
    .sort((a, b) => (a.where.line ?? Infinity) - (b.where.line ?? Infinity));
  const [first, ...rest] = located;
  if (!first) return new ConfigError('invalid config');
  const others = rest.map(({ problem, where }) => `\n  also ${new ConfigError(problem.message + where.suffix, where).message}`);
  return new ConfigError(first.problem.message + first.where.suffix + others.join(''), first.where);
}

// ---- public entry points ------------------------------------------------------------------------

/** Object.freeze all the way down; returns its argument. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

function interpolated(source: YamlSource, env: Environment): Record<string, unknown> {
  try {
    return interpolateTree(source.tree, env) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof InterpolationError)) throw err;
    throw new ConfigError(err.message, { file: source.file, line: source.lineOf(err.path), keyPath: formatKeyPath(err.path) });
  }
}

function buildConfig(source: YamlSource | undefined, opts: LoadOptions): Config {
  const env = opts.env ?? process.env;
  const envLayer = readEnvironment(env);
  const fileLayer = source ? interpolated(source, env) : {};
  const merged = mergeLayers(mergeLayers(envLayer.input, fileLayer), opts.flags);
  const result = ConfigSchema.safeParse(merged, { reportInput: true });
  if (!result.success) throw toConfigError(result.error.issues, { source, env: envLayer, flags: opts.flags });
  return deepFreeze(result.data) as Config;
}

/**
 * Builds the config from YAML text (`opts.file` only labels errors; default `<config>`), the
 * environment and flags. Throws ConfigError naming file:line and the key path.
 */
export function parseConfigText(text: string, opts: LoadOptions = {}): Config {
  return buildConfig(readYaml(text, opts.file ?? '<config>'), opts);
}

/** Reads `opts.file` (if given) and builds the config as parseConfigText does. Synchronous. */
export function loadConfig(opts: LoadOptions = {}): Config {
  if (opts.file === undefined) return buildConfig(undefined, opts);
  let text: string;
  try {
    text = readFileSync(opts.file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file: ${err instanceof Error ? err.message : String(err)}`, { file: opts.file });
  }
  return parseConfigText(text, opts);
}
