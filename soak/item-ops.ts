// The short-statement mix shared by the short and prepared kinds: each step runs one statement and
// checks its answer.
//   add     SELECT $1::int + $2::int, $3::text        a read (a replica): the sum and the tag
//   fixed   count and sum over soak_fixed (k <= $1)     a read (a replica): the known count and sum
//   insert  INSERT ... RETURNING                        a write: the row comes back as sent
//   update  UPDATE ... RETURNING updated                a write: one more than this worker last saw
//   delete  DELETE ... RETURNING id                     a write: the oldest row this worker keeps
// The worker keeps its last KEEP_ROWS rows and their update counts; after a failed step it forgets
// them (whether a lost write ran is unknown) and they stay in the table. Statement names are fixed,
// so every client prepares the same texts (the ambassador shares them between server connections).

import type { Querier } from './connect.ts';
import { expectEqual, onlyRow } from './errors.ts';
import { FIXED_ROWS, fixedSum } from './schema.ts';

const KEEP_ROWS = 40;

export const STATEMENTS = {
  add: { name: 'soak-add', text: 'SELECT $1::int + $2::int AS sum, $3::text AS tag' },
  fixed: { name: 'soak-fixed', text: 'SELECT count(*)::int AS n, sum(v)::int AS total FROM soak_fixed WHERE k <= $1::int' },
  insert: { name: 'soak-insert', text: 'INSERT INTO soak_items (worker, seq, payload) VALUES ($1::text, $2::int, $3::text) RETURNING id, seq, payload' },
  update: { name: 'soak-update', text: 'UPDATE soak_items SET updated = updated + 1 WHERE id = $1::int RETURNING updated' },
  delete: { name: 'soak-delete', text: 'DELETE FROM soak_items WHERE id = $1::int RETURNING id' },
} as const;

export class ItemOps {
  readonly #tag: string;
  readonly #random: () => number;
  /** id -> times this worker updated it, oldest first. */
  readonly #rows = new Map<number, number>();
  #seq = 0;

  constructor(tag: string, random: () => number) {
    this.#tag = tag;
    this.#random = random;
  }

  /** One statement, checked; throws WrongAnswer on a wrong answer. */
  async step(db: Querier): Promise<void> {
    if (this.#rows.size > KEEP_ROWS) return this.#delete(db);
    const pick = this.#random();
    if (pick < 0.25) return this.#add(db);
    if (pick < 0.45) return this.#fixed(db);
    if (pick < 0.7 || this.#rows.size === 0) return this.#insert(db);
    return this.#update(db);
  }

  /** After a failed step: whether its write ran is unknown, so stop tracking every row. */
  forget(): void {
    this.#rows.clear();
  }

  async #add(db: Querier): Promise<void> {
    const a = Math.floor(this.#random() * 1e6);
    const b = Math.floor(this.#random() * 1e6);
    const row = onlyRow(await db.query(STATEMENTS.add.name, STATEMENTS.add.text, [a, b, this.#tag]), 'add');
    expectEqual(row.sum, a + b, 'add: sum');
    expectEqual(row.tag, this.#tag, 'add: tag');
  }

  async #fixed(db: Querier): Promise<void> {
    const limit = 1 + Math.floor(this.#random() * FIXED_ROWS);
    const row = onlyRow(await db.query(STATEMENTS.fixed.name, STATEMENTS.fixed.text, [limit]), 'fixed');
    expectEqual(row.n, limit, `fixed(k <= ${limit}): count`);
    expectEqual(row.total, fixedSum(limit), `fixed(k <= ${limit}): sum`);
  }

  async #insert(db: Querier): Promise<void> {
    const seq = ++this.#seq;
    const payload = `${this.#tag}-${seq}`;
    const row = onlyRow(await db.query(STATEMENTS.insert.name, STATEMENTS.insert.text, [this.#tag, seq, payload]), 'insert');
    expectEqual(row.seq, seq, 'insert: seq');
    expectEqual(row.payload, payload, 'insert: payload');
    if (typeof row.id !== 'number') expectEqual(typeof row.id, 'number', 'insert: id');
    this.#rows.set(row.id as number, 0);
  }

  async #update(db: Querier): Promise<void> {
    const ids = [...this.#rows.keys()];
    const id = ids[Math.floor(this.#random() * ids.length)]!;
    const row = onlyRow(await db.query(STATEMENTS.update.name, STATEMENTS.update.text, [id]), `update id ${id}`);
    const expected = this.#rows.get(id)! + 1;
    expectEqual(row.updated, expected, `update id ${id}: updated`);
    this.#rows.set(id, expected);
  }

  async #delete(db: Querier): Promise<void> {
    const [id] = this.#rows.keys();
    const row = onlyRow(await db.query(STATEMENTS.delete.name, STATEMENTS.delete.text, [id!]), `delete id ${id}`);
    expectEqual(row.id, id, 'delete: id');
    this.#rows.delete(id!);
  }
}
