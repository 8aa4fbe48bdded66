// What the contention batteries share (txn-pooling-contention, txn-pooling-statements-churn,
// routing-contention): a seeded generator for each client, a capped list of what went wrong, and
// raw protocol messages with a short summary of each answer for exact comparison.

import { Buffer } from 'node:buffer';
import { encodeTarget, FrontendType } from '../../src/protocol/frontend.ts';
import { frameMessage } from '../../src/protocol/writer.ts';
import { seededRandom } from './random.ts';
import type { WireMessage } from './raw-client.ts';

/** Each client's own reproducible generator, from the run's seed, a scenario name and the client's id. */
export function clientRandoms(seed: number): (scenario: string, id: number) => () => number {
  return (scenario, id) => {
    let h = seed >>> 0;
    for (const ch of `${scenario}/${id}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    return seededRandom(h);
  };
}

/** What went wrong, for one assertion at the end (capped: one broken path can fail thousands of answers). */
export class Findings {
  private readonly list: string[] = [];
  private more = 0;

  /** `replay`: how to run the same mix again, named first in the report (the seed and its variable). */
  constructor(private readonly replay: string) {}

  add(who: string, what: string): void {
    if (this.list.length < 40) this.list.push(`${who}: ${what}`);
    else this.more++;
  }

  get count(): number {
    return this.list.length + this.more;
  }

  report(): string {
    return `${this.replay}, ${this.count} findings:\n${this.list.join('\n')}${this.more > 0 ? `\n... and ${this.more} more` : ''}`;
  }
}

/** A driver's error code (SQLSTATE, or its own word for a closed connection), else its message. */
export const codeOf = (err: unknown): string => String((err as { code?: unknown }).code ?? (err as Error).message);
export const describeError = (err: unknown): string => `${codeOf(err)} ${(err as Error).message}`;

/** A Bind of `statement` to the unnamed portal, text parameters, text results. */
export function bind(statement: string, params: readonly string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`\0${statement}\0`), Buffer.from([0, 0]), Buffer.alloc(2)];
  parts[2]!.writeInt16BE(params.length);
  for (const p of params) {
    const value = Buffer.from(p);
    const len = Buffer.alloc(4);
    len.writeInt32BE(value.length);
    parts.push(len, value);
  }
  parts.push(Buffer.from([0, 0]));
  return frameMessage(FrontendType.Bind, Buffer.concat(parts));
}

export const EXECUTE = frameMessage(FrontendType.Execute, Buffer.from([0, 0, 0, 0, 0]));
export const FLUSH = frameMessage(FrontendType.Flush, Buffer.alloc(0));
export const DESCRIBE_PORTAL = encodeTarget(FrontendType.Describe, 'P', '');
/** A Parse's parameter types: none declared. */
export const NO_TYPES = Buffer.from([0, 0]);

/**
 * A message as a short string for exact comparison: the type letter; RowDescription with its
 * column names, DataRow with its values, CommandComplete with its tag, an error with severity
 * and SQLSTATE, ReadyForQuery with the transaction status.
 */
export function summary(m: WireMessage): string {
  const p = m.payload;
  switch (m.type) {
    case 'E':
    case 'N':
      return `${m.type}(${m.error!.severity} ${m.error!.code})`;
    case 'Z':
      return `Z(${p.toString('latin1')})`;
    case 'C':
      return `C(${p.toString('utf8', 0, p.length - 1)})`;
    case 'T':
      return `T(${columnNames(m).join(',')})`;
    case 'D':
      return `D(${rowValues(m).join('|')})`;
    default:
      return m.type;
  }
}

/** A RowDescription's column names. */
export function columnNames(m: WireMessage): string[] {
  const p = m.payload;
  const names: string[] = [];
  let at = 2;
  for (let i = 0; i < p.readInt16BE(0); i++) {
    const end = p.indexOf(0, at);
    names.push(p.toString('utf8', at, end));
    at = end + 1 + 18;
  }
  return names;
}

/** A DataRow's values as text ('NULL' for null). */
export function rowValues(m: WireMessage): string[] {
  const p = m.payload;
  const values: string[] = [];
  let at = 2;
  for (let i = 0; i < p.readInt16BE(0); i++) {
    const len = p.readInt32BE(at);
    at += 4;
    values.push(len < 0 ? 'NULL' : p.toString('utf8', at, at + len));
    at += Math.max(len, 0);
  }
  return values;
}

/** `work`, or an error naming `what` after `ms`; what `work` does after that is ignored (it may reject once its client is closed). */
export function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
