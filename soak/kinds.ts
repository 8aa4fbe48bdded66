// The kinds of work the soak runs, and how many concurrent workers (clients) each gets. A kind is
// also the label of its counters and latencies in every interval of the report. Pure; unit-tested.

export const WORK_KINDS = ['short', 'prepared-pg', 'prepared-postgresjs', 'long-txn', 'big-result', 'disconnect'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

/** One line per kind, for --help and the report's notes. */
export const KIND_DESCRIPTIONS: Readonly<Record<WorkKind, string>> = {
  short: 'pg, simple protocol: SELECT arithmetic and a sum over a fixed table (replicas), INSERT/UPDATE/DELETE ... RETURNING (primary)',
  'prepared-pg': 'pg, named prepared statements (extended protocol): the same checks with $n parameters',
  'prepared-postgresjs': 'postgres.js (prepares every statement by default): the same checks',
  'long-txn': 'pg: BEGIN [READ ONLY]; statements; pg_sleep(0.2..1); more statements; COMMIT or ROLLBACK; the outcome checked on the primary',
  'big-result': 'pg: 50 rows of 1 MiB (50 MiB) read fully and checked for size, simple or extended protocol (replicas)',
  disconnect: 'pg: socket destroyed at a random time mid-login, mid-query, mid-transaction or mid-result; no row of an unfinished transaction may appear',
};

/** Workers per kind for the default 12 clients; other counts are shared out in these proportions. */
const WEIGHTS: Readonly<Record<WorkKind, number>> = {
  short: 3,
  'prepared-pg': 2,
  'prepared-postgresjs': 2,
  'long-txn': 2,
  'big-result': 1,
  disconnect: 2,
};

export const MIN_CLIENTS = WORK_KINDS.length;

/**
 * Workers per kind for `clients` clients: one of each kind, the rest by WEIGHTS (largest
 * remainder, ties in WORK_KINDS order). The counts add up to `clients`.
 */
export function assignWorkers(clients: number): Record<WorkKind, number> {
  if (!Number.isInteger(clients) || clients < MIN_CLIENTS) throw new Error(`at least ${MIN_CLIENTS} clients are needed (one per kind), got ${clients}`);
  const totalWeight = WORK_KINDS.reduce((sum, kind) => sum + WEIGHTS[kind], 0);
  const spare = clients - MIN_CLIENTS;
  const extra = WORK_KINDS.map((kind) => (spare * WEIGHTS[kind]) / totalWeight);
  const counts = extra.map((share) => 1 + Math.floor(share));
  let left = clients - counts.reduce((sum, count) => sum + count, 0);
  const byRemainder = WORK_KINDS.map((_, index) => index).sort((a, b) => (extra[b]! % 1) - (extra[a]! % 1) || a - b);
  for (const index of byRemainder) {
    if (left === 0) break;
    counts[index]!++;
    left--;
  }
  return Object.fromEntries(WORK_KINDS.map((kind, index) => [kind, counts[index]!])) as Record<WorkKind, number>;
}
