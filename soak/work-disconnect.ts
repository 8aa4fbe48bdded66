// The disconnect kind: a pg client that destroys its own socket at a random moment, then a new one.
//   login        during connect() (startup, SCRAM exchange), 0-20 ms after it starts
//   query        5-400 ms into a statement: pg_sleep (primary), a 5M-row count (a replica), or
//                pg_sleep through the extended protocol
//   transaction  after BEGIN and an INSERT, idle in the transaction or 5-300 ms into a pg_sleep
//                in it; the row is UNCOMMITTED_PREFIX'd, and a checker session of this worker
//                must not find it on the primary afterwards (the end of the run counts them too)
//   result       20-600 ms into a 50 MiB result (a replica), mid-stream
// Each step resolves with the number of errors the destroyed client saw (expected; 0 when the
// statement finished before the socket was destroyed, whose answer is then checked).

import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Endpoint } from '../bench/pgbench.ts';
import { connectPg, destroySocket, LazyPgClient, newPgClient, pgQuery } from './connect.ts';
import { expectEqual, OperationTimeout, onlyRow } from './errors.ts';
import { bigResultQuery, checkBigResult } from './work-big-result.ts';
import { ON_PRIMARY, UNCOMMITTED_PREFIX } from './schema.ts';
import type { Work } from './worker.ts';

export const DISCONNECT_MODES = ['login', 'query', 'transaction', 'result'] as const;
export type DisconnectMode = (typeof DISCONNECT_MODES)[number];

/** How long a destroyed client may take to report it. */
const SETTLE_TIMEOUT_MS = 15_000;
const COUNT_ROWS = 5_000_000;

/** 1 if the promise rejects (the client saw the disconnect), 0 if it resolves first (then `check` runs). */
async function settled<T>(promise: Promise<T>, check: (value: T) => void = () => {}): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OperationTimeout(`a destroyed client did not settle within ${SETTLE_TIMEOUT_MS / 1000} s`)), SETTLE_TIMEOUT_MS);
  });
  try {
    const value = await Promise.race([promise, timeout]);
    check(value);
    return 0;
  } catch (error) {
    if (error instanceof OperationTimeout) throw error;
    return 1;
  } finally {
    clearTimeout(timer);
  }
}

export class DisconnectWork implements Work {
  readonly kind = 'disconnect';
  readonly #endpoint: Endpoint;
  readonly #name: string;
  readonly #random: () => number;
  readonly #checker: LazyPgClient;
  #seq = 0;

  constructor(index: number, endpoint: Endpoint, random: () => number) {
    this.#endpoint = endpoint;
    this.#name = `disconnect-${index}`;
    this.#random = random;
    this.#checker = new LazyPgClient(endpoint, `soak-${this.#name}-checker`);
  }

  #between(fromMs: number, toMs: number): number {
    return fromMs + this.#random() * (toMs - fromMs);
  }

  step(): Promise<number> {
    const mode = DISCONNECT_MODES[Math.floor(this.#random() * DISCONNECT_MODES.length)]!;
    if (mode === 'login') return this.#login();
    if (mode === 'query') return this.#query();
    if (mode === 'transaction') return this.#transaction();
    return this.#result();
  }

  async #login(): Promise<number> {
    const client = newPgClient(this.#endpoint, `soak-${this.#name}`);
    const connecting = client.connect();
    connecting.catch(() => {}); // awaited below, after the destroy
    await sleep(this.#between(0, 20));
    destroySocket(client);
    return settled(connecting);
  }

  /** Runs `run` on a new client and destroys its socket after `afterMs`. */
  async #cut<T>(afterMs: number, run: (client: pg.Client) => Promise<T>, check?: (value: T) => void): Promise<number> {
    const client = await connectPg(this.#endpoint, `soak-${this.#name}`);
    const running = run(client);
    running.catch(() => {}); // awaited below, after the destroy
    await sleep(afterMs);
    destroySocket(client);
    return settled(running, check);
  }

  #query(): Promise<number> {
    const pick = this.#random();
    const afterMs = this.#between(5, 400);
    if (pick < 0.4) return this.#cut(afterMs, (client) => pgQuery(client, 'SELECT pg_sleep(0.5)'));
    if (pick < 0.7) return this.#cut(afterMs, (client) => pgQuery(client, { text: 'SELECT pg_sleep($1::float8)', values: [0.5] }));
    return this.#cut(
      afterMs,
      (client) => pgQuery(client, `SELECT count(*)::int AS n FROM generate_series(1, ${COUNT_ROWS})`),
      (result) => expectEqual(onlyRow(result.rows, 'count').n, COUNT_ROWS, 'count before the disconnect'),
    );
  }

  async #transaction(): Promise<number> {
    const seq = ++this.#seq;
    const payload = `${UNCOMMITTED_PREFIX}${this.#name}-${seq}`;
    const begin = async (client: pg.Client): Promise<void> => {
      await pgQuery(client, 'BEGIN');
      await pgQuery(client, `INSERT INTO soak_items (worker, seq, payload) VALUES ('${this.#name}', ${seq}, '${payload}')`);
    };
    let expected = 0;
    if (this.#random() < 0.5) {
      // Idle in the transaction: nothing is running when the socket goes, so the client sees no error.
      const client = await connectPg(this.#endpoint, `soak-${this.#name}`);
      await begin(client);
      destroySocket(client);
    } else {
      expected = await this.#cut(this.#between(5, 300), async (client) => {
        await begin(client);
        await pgQuery(client, 'SELECT pg_sleep(1)');
      });
    }
    const { rows } = await pgQuery(await this.#checker.get(), `${ON_PRIMARY}SELECT count(*)::int AS n FROM soak_items WHERE payload = '${payload}'`);
    expectEqual(onlyRow(rows, 'uncommitted row').n, 0, 'rows of a transaction cut by a disconnect');
    return expected;
  }

  #result(): Promise<number> {
    return this.#cut(
      this.#between(20, 600),
      (client) => pgQuery(client, bigResultQuery(this.#random() < 0.5)),
      (result) => checkBigResult(result.rows as Array<Record<string, unknown>>, this.#random),
    );
  }

  reset(): Promise<void> {
    return this.#checker.close();
  }

  close(): Promise<void> {
    return this.#checker.close();
  }

  pauseMs(): number {
    return this.#between(20, 100);
  }
}
