// Property test: random mutations of corpus statements (truncation, duplicated, dropped or
// swapped tokens, injected write keywords, joined statements) never throw, and a mutant that
// mentions INSERT/UPDATE/DELETE/MERGE/nextval is a read only when the parser itself accepts it and
// its tree (outside a plain EXPLAIN) holds no write node, nextval call or locking clause.
// Deterministic: a seeded generator, so a failure reproduces; the seed is in the message.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseSync } from 'libpg-query';

import { createClassifier, InMemoryFunctionCatalog } from '../../../src/router/classifier.ts';
import { CORPUS, CORPUS_FUNCTIONS } from './classifier-corpus.ts';

const classifier = await createClassifier({
  functions: new InMemoryFunctionCatalog({ volatile: CORPUS_FUNCTIONS.volatile, readOnly: CORPUS_FUNCTIONS.readOnly }),
  allow: CORPUS_FUNCTIONS.allow,
  deny: CORPUS_FUNCTIONS.deny,
});

const SEEDS = [1, 7, 42, 2024, 31337];
const MUTANTS_PER_SEED = 1500;
const WRITE_WORD = /\b(insert|update|delete|merge|nextval)\b/i;
const WRITE_NODE = /"(InsertStmt|UpdateStmt|DeleteStmt|MergeStmt|LockingClause)"|"funcname":\[(\{"String":\{"sval":"[^"]*"\}\},)?\{"String":\{"sval":"nextval"\}\}\]/;
const INJECTIONS = ['insert', 'INSERT INTO t VALUES (1)', 'update', 'delete', 'DELETE FROM t', "nextval('s')", 'for update', ';', '(', ')', "'", '/*', '--', 'select', 'returning *', ','];
const SOURCES = CORPUS.map((entry) => entry.sql).filter((sql) => sql.length < 2000);

/** mulberry32: small, fast, good enough to drive mutations. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed = (mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed)) ^ mixed;
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

function mutate(random: () => number, sql: string): string {
  const tokens = sql.split(/(\s+|(?=[(),;])|(?<=[(),;]))/).filter((token) => token !== '');
  const at = Math.floor(random() * (tokens.length + 1));
  switch (Math.floor(random() * 6)) {
    case 0: return sql.slice(0, Math.floor(random() * (sql.length + 1)));
    case 1: return [...tokens.slice(0, at), tokens[at] ?? '', ' ', ...tokens.slice(at)].join('');
    case 2: return [...tokens.slice(0, at), ...tokens.slice(at + 1)].join('');
    case 3: return [...tokens.slice(0, at), ' ', pick(random, INJECTIONS), ' ', ...tokens.slice(at)].join('');
    case 4: return `${sql}; ${pick(random, SOURCES)}`;
    default: {
      const other = Math.floor(random() * tokens.length);
      const swapped = [...tokens];
      [swapped[at], swapped[other]] = [swapped[other] ?? '', swapped[at] ?? ''];
      return swapped.join('');
    }
  }
}

/** Independent oracle: is this text a read according to the parser's tree alone? */
function parserSaysNoWrite(sql: string): boolean {
  let stmts: Array<{ stmt?: unknown }>;
  try {
    stmts = parseSync(sql).stmts ?? [];
  } catch {
    return false;
  }
  return stmts.every(({ stmt }) => isPlainExplain(stmt) || !WRITE_NODE.test(JSON.stringify(stmt ?? {})));
}

/** EXPLAIN that does not execute: no ANALYZE option, or ANALYZE set to a false word. */
function isPlainExplain(stmt: unknown): boolean {
  const explain = (stmt as { ExplainStmt?: { options?: Array<{ DefElem?: { defname?: string; arg?: { String?: { sval?: string } } } }> } }).ExplainStmt;
  if (explain === undefined) return false;
  const analyze = (explain.options ?? []).find((option) => option.DefElem?.defname === 'analyze')?.DefElem;
  if (analyze === undefined) return true;
  return ['false', 'off', 'no', '0'].includes(analyze.arg?.String?.sval?.toLowerCase() ?? 'true');
}

for (const seed of SEEDS) {
  test(`mutants never turn a write into a read (seed ${seed})`, () => {
    const random = generator(seed);
    let mutantsWithWriteWords = 0;
    for (let index = 0; index < MUTANTS_PER_SEED; index += 1) {
      let sql = pick(random, SOURCES);
      const rounds = 1 + Math.floor(random() * 3);
      for (let round = 0; round < rounds; round += 1) sql = mutate(random, sql);
      const result = classifier.classify(sql);
      assert.ok(result.route === 'read' || result.route === 'write', `seed ${seed} #${index}: ${sql}`);
      if (!WRITE_WORD.test(sql)) continue;
      mutantsWithWriteWords += 1;
      if (result.route === 'read') {
        assert.ok(parserSaysNoWrite(sql), `seed ${seed} #${index}: read but the parser disagrees: ${JSON.stringify(sql)} (${result.reason})`);
      }
    }
    assert.ok(mutantsWithWriteWords > MUTANTS_PER_SEED / 5, `too few interesting mutants: ${mutantsWithWriteWords}`);
  });
}

test('arbitrary characters never throw and an unparsable text is a write', () => {
  const random = generator(99);
  const alphabet = "abcdeSELCTINRUPDAfromwhere ;()'\"$-*/\\\n\t0123456789,.:=<>!@#%^&_é\u0000";
  for (let index = 0; index < 3000; index += 1) {
    const length = Math.floor(random() * 60);
    let sql = '';
    for (let char = 0; char < length; char += 1) sql += alphabet.charAt(Math.floor(random() * alphabet.length));
    const result = classifier.classify(sql);
    let parses = true;
    try {
      parseSync(sql);
    } catch {
      parses = false;
    }
    if (!parses && sql.trim() !== '') assert.equal(result.route, 'write', JSON.stringify(sql));
  }
});
