// Client connections of the soak's workers, through the ambassador: pg clients (simple protocol, or
// named prepared statements) and postgres.js (prepared statements), each behind one small Session
// interface so a kind of work does not care which driver it runs on. Every pg client gets an
// error listener (a socket destroyed on purpose must not crash the soak) and a connect timeout;
// close() ends politely and destroys the socket if that does not finish in time.

import pg from 'pg';
import postgres from 'postgres';

import type { Endpoint } from '../bench/pgbench.ts';
import { StrayServerError, WrongAnswer } from './errors.ts';

export type Param = number | string;

/** Runs a statement with $n placeholders; resolves with its rows. */
export interface Querier {
  query(name: string, text: string, params: readonly Param[]): Promise<Array<Record<string, unknown>>>;
}

export interface Session extends Querier {
  close(): Promise<void>;
}

export type SessionOpener = (endpoint: Endpoint, applicationName: string) => Promise<Session>;

const CONNECT_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * `text` with every $n replaced by params[n-1] as a SQL literal: integers as they are, strings
 * quoted with '' doubled. For the simple protocol, which takes no parameters.
 */
export function renderLiterals(text: string, params: readonly Param[]): string {
  return text.replace(/\$(\d+)/g, (_, digits: string) => {
    const value = params[Number(digits) - 1];
    if (value === undefined) throw new Error(`no parameter $${digits} for ${text}`);
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new Error(`only integer literals are rendered, got ${value}`);
      return String(value);
    }
    return `'${value.replaceAll("'", "''")}'`;
  });
}

/** Server errors that reached a client while no query ran (pg emits them as 'error' events). */
const strayErrors = new WeakMap<pg.Client, Error>();

/**
 * A pg client, not connected yet. Its 'error' events are kept, not thrown: a socket error also
 * fails the query running (the awaited call reports it); a server error with no query running
 * (it has a severity) is remembered, and pgQuery names it when the client's next query fails.
 */
export function newPgClient(endpoint: Endpoint, applicationName: string): pg.Client {
  const client = new pg.Client({ ...endpoint, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: applicationName });
  client.on('error', (error: Error & { severity?: string }) => {
    if (error.severity !== undefined && !strayErrors.has(client)) strayErrors.set(client, error);
  });
  return client;
}

/** client.query, but a failure after a stray server error throws StrayServerError naming it. */
export async function pgQuery(client: pg.Client, query: string | pg.QueryConfig): Promise<pg.QueryResult> {
  try {
    return await client.query(query);
  } catch (error) {
    const stray = strayErrors.get(client);
    throw stray === undefined ? error : new StrayServerError(stray);
  }
}

/** Destroys the client's socket at once, whatever it is doing (login, query, result). */
export function destroySocket(client: pg.Client): void {
  client.connection.stream.destroy();
}

/** Ends the client; destroys its socket when ending takes longer than 5 s or fails. */
export async function closePgClient(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      destroySocket(client);
      resolve();
    }, CLOSE_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.end().catch(() => destroySocket(client)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function connectPg(endpoint: Endpoint, applicationName: string): Promise<pg.Client> {
  const client = newPgClient(endpoint, applicationName);
  try {
    await client.connect();
  } catch (error) {
    destroySocket(client);
    throw error;
  }
  return client;
}

/** pg, simple protocol: parameters rendered as literals into one Query message. */
export const openSimple: SessionOpener = async (endpoint, applicationName) => {
  const client = await connectPg(endpoint, applicationName);
  return {
    query: async (_name, text, params) => {
      const sql = renderLiterals(text, params);
      // pg answers an array when one Query produced several results: never right for one statement.
      const result = (await pgQuery(client, sql)) as pg.QueryResult | pg.QueryResult[];
      if (Array.isArray(result)) {
        const shapes = result.map((one) => `${one.command} ${one.rowCount} [${one.fields.map((field) => field.name).join(',')}]`);
        throw new WrongAnswer(`one Query returned ${result.length} results (${shapes.join('; ')}) for: ${sql}`);
      }
      return result.rows as Array<Record<string, unknown>>;
    },
    close: () => closePgClient(client),
  };
};

/** pg, named prepared statements: Parse once per connection under `name`, then Bind/Execute. */
export const openNamed: SessionOpener = async (endpoint, applicationName) => {
  const client = await connectPg(endpoint, applicationName);
  return {
    query: async (name, text, params) => (await pgQuery(client, { name, text, values: [...params] })).rows as Array<Record<string, unknown>>,
    close: () => closePgClient(client),
  };
};

/** postgres.js, one connection, every statement prepared (named) by the driver. */
export const openPostgresJs: SessionOpener = async (endpoint, applicationName) => {
  const sql = postgres({
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    database: endpoint.database,
    max: 1,
    prepare: true,
    connect_timeout: CONNECT_TIMEOUT_MS / 1000,
    idle_timeout: 0,
    connection: { application_name: applicationName },
    onnotice: () => {},
  });
  try {
    await sql`SELECT 1`;
  } catch (error) {
    await sql.end({ timeout: 0 });
    throw error;
  }
  return {
    query: async (_name, text, params) => [...(await sql.unsafe(text, [...params], { prepare: true }))] as Array<Record<string, unknown>>,
    close: () => sql.end({ timeout: CLOSE_TIMEOUT_MS / 1000 }),
  };
};

/** A pg client opened on first use; close() ends it (never throwing) and the next use opens another. */
export class LazyPgClient {
  #client: pg.Client | null = null;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly applicationName: string,
  ) {}

  async get(): Promise<pg.Client> {
    this.#client ??= await connectPg(this.endpoint, this.applicationName);
    return this.#client;
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    if (client) await closePgClient(client).catch(() => {});
  }
}
