// The short and prepared kinds: the statement mix of item-ops.ts on one session of a driver (pg
// simple protocol, pg named prepared statements, postgres.js), which is closed and opened again
// every 150-450 steps so sessions come and go (login, prepared statements made again on the new
// session) as they do in an application with a pool that recycles connections.

import type { Endpoint } from '../bench/pgbench.ts';
import { openNamed, openPostgresJs, openSimple, type Session, type SessionOpener } from './connect.ts';
import { ItemOps } from './item-ops.ts';
import type { WorkKind } from './kinds.ts';
import type { Work } from './worker.ts';

const OPENERS = { short: openSimple, 'prepared-pg': openNamed, 'prepared-postgresjs': openPostgresJs } as const satisfies Partial<Record<WorkKind, SessionOpener>>;
export type ItemKind = keyof typeof OPENERS;

export class ItemsWork implements Work {
  readonly kind: ItemKind;
  readonly #endpoint: Endpoint;
  readonly #name: string;
  readonly #random: () => number;
  readonly #ops: ItemOps;
  #session: Session | null = null;
  #stepsLeft = 0;

  constructor(kind: ItemKind, index: number, endpoint: Endpoint, random: () => number) {
    this.kind = kind;
    this.#endpoint = endpoint;
    this.#name = `${kind}-${index}`;
    this.#random = random;
    this.#ops = new ItemOps(this.#name, random);
  }

  async step(): Promise<void> {
    if (this.#session !== null && this.#stepsLeft <= 0) await this.close();
    if (this.#session === null) {
      this.#session = await OPENERS[this.kind](this.#endpoint, `soak-${this.#name}`);
      this.#stepsLeft = 150 + Math.floor(this.#random() * 300);
    }
    this.#stepsLeft--;
    await this.#ops.step(this.#session);
  }

  async reset(): Promise<void> {
    this.#ops.forget();
    await this.close();
  }

  async close(): Promise<void> {
    const session = this.#session;
    this.#session = null;
    await session?.close().catch(() => {});
  }

  pauseMs(): number {
    return 2 + this.#random() * 8;
  }
}
