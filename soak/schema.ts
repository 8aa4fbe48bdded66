// The soak's tables, made on the primary directly (as the app user, who then owns them) before the
// ambassador starts, and replayed by the replicas before the load begins:
//   soak_fixed (k, v = k) for k in 1..FIXED_ROWS: never written during the run, so a read on any
//     host has one right answer (count k, sum k(k+1)/2), whatever a replica's lag;
//   soak_items: rows the workers insert, update and delete and check through RETURNING on the
//     primary. A row inserted by a transaction that must never commit (one that will be rolled
//     back, or cut by a disconnect) has a payload starting with UNCOMMITTED_PREFIX; the end of the
//     run counts them: any is a transaction the ambassador let commit, or left open on a server.

import type { Endpoint } from '../bench/pgbench.ts';
import { closePgClient, connectPg } from './connect.ts';

export const FIXED_ROWS = 1000;
export const UNCOMMITTED_PREFIX = 'uncommitted-';

/** A leading hint that sends a read to the primary (README: Read/write splitting, Hints). */
export const ON_PRIMARY = '/* ambassador:route=primary */ ';

/** sum(v) of soak_fixed for k <= limit. */
export function fixedSum(limit: number): number {
  return (limit * (limit + 1)) / 2;
}

const SETUP = `
DROP TABLE IF EXISTS soak_items, soak_fixed;
CREATE TABLE soak_fixed (k int PRIMARY KEY, v int NOT NULL);
INSERT INTO soak_fixed SELECT k, k FROM generate_series(1, ${FIXED_ROWS}) k;
CREATE TABLE soak_items (
  id serial PRIMARY KEY,
  worker text NOT NULL,
  seq int NOT NULL,
  payload text NOT NULL,
  updated int NOT NULL DEFAULT 0
);
CREATE INDEX soak_items_payload ON soak_items (payload);
ANALYZE soak_fixed;`;

export async function createTables(primary: Endpoint): Promise<void> {
  const client = await connectPg(primary, 'soak-setup');
  try {
    await client.query(SETUP);
  } finally {
    await closePgClient(client);
  }
}

/** Rows of transactions that must never have committed, counted on the primary directly. */
export async function countUncommittedRows(primary: Endpoint): Promise<number> {
  const client = await connectPg(primary, 'soak-check');
  try {
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM soak_items WHERE payload LIKE '${UNCOMMITTED_PREFIX}%'`);
    return rows[0]!.n;
  } finally {
    await closePgClient(client);
  }
}
