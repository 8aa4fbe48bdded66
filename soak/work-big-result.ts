// The big-result kind: 50 rows of 1 MiB each (50 MiB) read fully through the ambassador (pg; a
// read, so a replica serves it), half in the simple protocol, half in the extended one. Row g is
// made of the letter chr(97 + g % 26), so a row out of order, cut short or mixed with another
// client's bytes is a wrong answer; every row's length and its first, last and one random
// character are checked. A pause of 0.5-2 s follows, so the 2 CPUs are not spent on this alone.

import type { Endpoint } from '../bench/pgbench.ts';
import { LazyPgClient, pgQuery } from './connect.ts';
import { expectEqual, WrongAnswer } from './errors.ts';
import type { Work } from './worker.ts';

export const BIG_ROWS = 50;
export const BIG_ROW_BYTES = 1024 * 1024;

/** The statement: simple protocol with literals, or extended with parameters. */
export function bigResultQuery(extended: boolean): { text: string; values?: number[] } {
  return extended
    ? { text: 'SELECT g, repeat(chr(97 + g % 26), $1::int) AS chunk FROM generate_series(1, $2::int) g ORDER BY g', values: [BIG_ROW_BYTES, BIG_ROWS] }
    : { text: `SELECT g, repeat(chr(97 + g % 26), ${BIG_ROW_BYTES}) AS chunk FROM generate_series(1, ${BIG_ROWS}) g ORDER BY g` };
}

/** Throws WrongAnswer unless `rows` is the whole result of bigResultQuery. */
export function checkBigResult(rows: ReadonlyArray<Record<string, unknown>> | undefined, random: () => number): void {
  if (!Array.isArray(rows)) throw new WrongAnswer('big result: expected one result with rows, got several results');
  expectEqual(rows.length, BIG_ROWS, 'big result: rows');
  rows.forEach((row, index) => {
    const g = index + 1;
    expectEqual(row.g, g, `big result row ${g}: g`);
    const chunk = row.chunk;
    if (typeof chunk !== 'string') throw new WrongAnswer(`big result row ${g}: chunk is ${typeof chunk}`);
    expectEqual(chunk.length, BIG_ROW_BYTES, `big result row ${g}: length`);
    const letter = String.fromCharCode(97 + (g % 26));
    const at = Math.floor(random() * BIG_ROW_BYTES);
    for (const position of [0, at, BIG_ROW_BYTES - 1]) expectEqual(chunk[position], letter, `big result row ${g}: character ${position}`);
  });
}

export class BigResultWork implements Work {
  readonly kind = 'big-result';
  readonly #name: string;
  readonly #random: () => number;
  readonly #pg: LazyPgClient;

  constructor(index: number, endpoint: Endpoint, random: () => number) {
    this.#name = `big-result-${index}`;
    this.#random = random;
    this.#pg = new LazyPgClient(endpoint, `soak-${this.#name}`);
  }

  async step(): Promise<void> {
    const { rows } = await pgQuery(await this.#pg.get(), bigResultQuery(this.#random() < 0.5));
    checkBigResult(rows as Array<Record<string, unknown>>, this.#random);
  }

  reset(): Promise<void> {
    return this.#pg.close();
  }

  close(): Promise<void> {
    return this.#pg.close();
  }

  pauseMs(): number {
    return 500 + this.#random() * 1500;
  }
}
