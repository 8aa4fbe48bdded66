// The long-txn kind: transactions that hold a server connection for 0.2-1 s (pg, simple protocol).
//   write (70%): BEGIN; INSERT a row; pg_sleep; UPDATE it; read it back inside the transaction;
//     then COMMIT (60%) or ROLLBACK (40%); afterwards the primary must have the row exactly when
//     it was committed. Rows of transactions that will roll back carry UNCOMMITTED_PREFIX, so the
//     end of the run also finds any that committed after all.
//   read-only (30%): BEGIN READ ONLY (runs on a replica); a sum over soak_fixed; pg_sleep; the sum
//     again; COMMIT.
// pg_sleep is VOLATILE, so outside a read-only transaction the ambassador sends it to the primary.

import type pg from 'pg';

import type { Endpoint } from '../bench/pgbench.ts';
import { LazyPgClient, pgQuery } from './connect.ts';
import { expectEqual, onlyRow } from './errors.ts';
import { FIXED_ROWS, fixedSum, ON_PRIMARY, UNCOMMITTED_PREFIX } from './schema.ts';
import type { Work } from './worker.ts';

export class LongTxnWork implements Work {
  readonly kind = 'long-txn';
  readonly #name: string;
  readonly #random: () => number;
  readonly #pg: LazyPgClient;
  #seq = 0;

  constructor(index: number, endpoint: Endpoint, random: () => number) {
    this.#name = `long-txn-${index}`;
    this.#random = random;
    this.#pg = new LazyPgClient(endpoint, `soak-${this.#name}`);
  }

  async step(): Promise<void> {
    const client = await this.#pg.get();
    if (this.#random() < 0.7) await this.#write(client);
    else await this.#readOnly(client);
  }

  #sleepSeconds(): string {
    return (0.2 + this.#random() * 0.8).toFixed(3);
  }

  async #write(client: pg.Client): Promise<void> {
    const seq = ++this.#seq;
    const commit = this.#random() < 0.6;
    const payload = `${commit ? '' : UNCOMMITTED_PREFIX}${this.#name}-${seq}`;
    await pgQuery(client, 'BEGIN');
    const inserted = onlyRow((await pgQuery(client, `INSERT INTO soak_items (worker, seq, payload) VALUES ('${this.#name}', ${seq}, '${payload}') RETURNING id`)).rows, 'txn insert');
    const id = inserted.id as number;
    await pgQuery(client, `SELECT pg_sleep(${this.#sleepSeconds()})`);
    const updated = onlyRow((await pgQuery(client, `UPDATE soak_items SET updated = updated + 1 WHERE id = ${id} RETURNING updated`)).rows, 'txn update');
    expectEqual(updated.updated, 1, 'txn update: updated');
    const seen = onlyRow((await pgQuery(client, `SELECT count(*)::int AS n FROM soak_items WHERE payload = '${payload}'`)).rows, 'txn read');
    expectEqual(seen.n, 1, 'txn read: own row inside the transaction');
    await pgQuery(client, commit ? 'COMMIT' : 'ROLLBACK');
    const after = onlyRow((await pgQuery(client, `${ON_PRIMARY}SELECT count(*)::int AS n FROM soak_items WHERE payload = '${payload}'`)).rows, 'after txn');
    expectEqual(after.n, commit ? 1 : 0, `row of a transaction ended by ${commit ? 'COMMIT' : 'ROLLBACK'}`);
    if (commit) await pgQuery(client, `DELETE FROM soak_items WHERE id = ${id}`);
  }

  async #readOnly(client: pg.Client): Promise<void> {
    const limit = 1 + Math.floor(this.#random() * FIXED_ROWS);
    const sum = `SELECT sum(v)::int AS total FROM soak_fixed WHERE k <= ${limit}`;
    await pgQuery(client, 'BEGIN READ ONLY');
    expectEqual(onlyRow((await pgQuery(client, sum)).rows, 'read-only txn').total, fixedSum(limit), 'read-only txn: sum before sleeping');
    await pgQuery(client, `SELECT pg_sleep(${this.#sleepSeconds()})`);
    expectEqual(onlyRow((await pgQuery(client, sum)).rows, 'read-only txn').total, fixedSum(limit), 'read-only txn: sum after sleeping');
    await pgQuery(client, 'COMMIT');
  }

  reset(): Promise<void> {
    return this.#pg.close();
  }

  close(): Promise<void> {
    return this.#pg.close();
  }

  pauseMs(): number {
    return 10 + this.#random() * 40;
  }
}
